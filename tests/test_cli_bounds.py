"""`fanin stream` bounded by what it is given (issue 19, classes 4-7): URL lists read
within limits, the open-files limit checked up front, and a stop signal while the reader is
not reading ends the output on a whole line with a summary that counts what was written.
Real processes, real pipes, real signals, servers on 127.0.0.1."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pytest

from fanin.cli.url_lists import MAX_URL_BYTES

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and text.count("\n") == 1, text[:2000]
    return text.strip()


def run_measured(args: list[str], **kwargs) -> tuple[int, bytes, bytes, int]:
    """(exit status, stdout, stderr, peak RSS in KiB) of one `fanin` process."""
    proc = subprocess.Popen([*FANIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT,
                            **kwargs)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),
               threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(60)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out[0], err[0], usage.ru_maxrss


# --------------------------------------------------------------------------- 19.5 URL lists
def test_a_url_file_of_nul_bytes_is_one_short_line_in_little_memory(tmp_path, fresh_server):
    listing = tmp_path / "urls.txt"
    listing.write_bytes(b"\0" * (32 * 1024 * 1024))
    code, out, err, peak_kib = run_measured(["stream", f"@{listing}"])
    line = one_line(err)
    assert code == 2 and out == b""
    assert line.startswith(f"fanin: error: {listing}:1: line longer than 8,192 bytes (starts '\\x00")
    assert len(line) < 300 + len(str(listing))
    assert peak_kib < 150 * 1024, f"peak {peak_kib} KiB"
    assert fresh_server.stats.total_requests == 0


def test_a_16_mib_url_line_is_refused_with_file_line_before_anything_is_sent(tmp_path, fresh_server):
    listing = tmp_path / "urls.txt"
    good = fresh_server.url("/stream?count=1")
    listing.write_text(f"# feeds\n{good}\n{good}?pad={'a' * (16 * 1024 * 1024)}\n")
    code, out, err, _ = run_measured(["stream", f"@{listing}"])
    line = one_line(err)
    assert code == 2 and out == b""
    assert line.startswith(f"fanin: error: {listing}:3: line longer than 8,192 bytes (starts {good[:20]!r}"[:-1])
    assert len(line) < 300 + len(str(listing))
    assert fresh_server.stats.total_requests == 0


def test_url_list_lines_are_judged_one_by_one(tmp_path, sse_server):
    listing = tmp_path / "urls.txt"
    url = sse_server.url("/stream?count=1")
    listing.write_bytes(f"{url}\n".encode() + b"http://127.0.0.1/\xff\xfe\n")
    code, _, err, _ = run_measured(["stream", f"@{listing}"])
    assert code == 2 and f"{listing}:2: not UTF-8 text" in one_line(err)
    listing.write_bytes(f"{url}\n\n{url}&x=\0\n".encode())
    code, _, err, _ = run_measured(["stream", f"@{listing}"])
    assert code == 2 and f"{listing}:3: NUL byte in the line" in one_line(err)
    longest = url + "&p=" + "a" * (MAX_URL_BYTES - len(url) - 3)
    listing.write_text(longest + "\n")
    code, out, err, _ = run_measured(["stream", f"@{listing}", "--format", "ndjson"])
    assert code == 0, err  # exactly at the limit is fine
    assert orjson.loads(out.splitlines()[-1])["total_events"] == 1


def test_a_long_url_argument_and_stdin_list_are_bounded_too(sse_server):
    url = sse_server.url("/stream?count=1&p=") + "a" * MAX_URL_BYTES
    code, _, err, _ = run_measured(["stream", url])
    line = one_line(err)
    assert code == 2 and line.startswith("fanin: error: URL argument 1: URL of ") and len(line) < 300
    proc = subprocess.run([*FANIN, "stream", "@-"], input=url.encode() + b"\n", capture_output=True, env=ENV,
                          cwd=ROOT, timeout=60)
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and line.startswith("fanin: error: stdin:1: line longer than") and len(line) < 300


# --------------------------------------------------------------------------- 19.6 fd limit
def _limit_files(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_too_few_open_files_for_every_source_is_one_line_and_exit_2(sse_server):
    urls = [sse_server.url(f"/stream?count=1&n={i}") for i in range(200)]
    proc = subprocess.run([*FANIN, "stream", *urls], capture_output=True, env=ENV, cwd=ROOT, timeout=60,
                          preexec_fn=_limit_files(64, 64))
    line = one_line(proc.stderr)
    assert proc.returncode == 2 and proc.stdout == b""
    assert line == ("fanin: error: 200 sources need about 232 open files, but the limit is 64 (hard limit 64): "
                    "raise it (ulimit -n 232) or give at most 32 URLs per command")


def test_the_most_sources_the_error_names_do_run(sse_server):
    urls = [sse_server.url(f"/stream?count=1&n={i}") for i in range(32)]
    proc = subprocess.run([*FANIN, "stream", *urls, "--format", "ndjson"], capture_output=True, env=ENV, cwd=ROOT,
                          timeout=60, preexec_fn=_limit_files(64, 64))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert orjson.loads(proc.stdout.splitlines()[-1])["total_events"] == 32


def test_a_low_soft_limit_is_raised_and_every_source_runs(sse_server):
    urls = [sse_server.url(f"/stream?count=1&n={i}") for i in range(200)]
    proc = subprocess.run([*FANIN, "stream", *urls, "--format", "ndjson"], capture_output=True, env=ENV, cwd=ROOT,
                          timeout=120, preexec_fn=_limit_files(64, 4096))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout.splitlines()[-1])
    assert summary["total_events"] == 200 and summary["status"] == "completed"
    assert b"Too many open files" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- 19.7 blocked reader
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                   (signal.SIGINT, 130, "interrupted")])
@pytest.mark.parametrize("fmt", ["ndjson", "text"])
def test_a_signal_while_the_reader_does_not_read_ends_on_a_whole_line(sse_server, sig, code, word, fmt):
    """stdout is a pipe nobody reads (so the writer blocks with a batch half out), then the
    signal, then the pipe is drained: every line whole, numbers contiguous, and the summary
    counts exactly what was printed."""
    url = sse_server.url(f"/stream?count=0&size=100&tag=blocked-{fmt}-{code}")
    proc = subprocess.Popen([*FANIN, "stream", url, "--format", fmt], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the writer is blocked on the full pipe
        time.sleep(0.2)
        with open(f"/proc/{proc.pid}/wchan") as f:
            if "pipe" in f.read():
                break
    proc.send_signal(sig)
    time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert err.decode().splitlines()[-1] == f"fanin: {word}"
    assert out.endswith(b"\n")
    assert len(out) > 65536  # more than the pipe holds: the writer was blocked when the signal came
    if fmt == "ndjson":
        lines = [orjson.loads(line) for line in out.splitlines()]  # a torn line would not parse
        events = [r for r in lines if r["type"] == "event"]
        assert [e["event_number"] for e in events] == list(range(1, len(events) + 1))
        summary = lines[-1]
        assert summary["type"] == "summary" and summary["stopped_by"] == "interrupt"
        assert summary["total_events"] == len(events)
    else:
        data = out.decode().splitlines()
        assert [int(line.split()[0]) for line in data] == list(range(1, len(data) + 1))
        assert all(len(line) == 100 for line in data)
        assert f": {len(data)} events from 1 source in " in err.decode()  # the summary counts what was printed


def test_stop_signals_let_a_runner_stop_itself_and_report_the_signal(tmp_path):
    """How `fanin load` uses the shared handling: on_stop asks its runner to stop, the run
    returns its result as usual, and the signal gives the exit status."""
    script = tmp_path / "runner.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        from fanin.cli import runloop

        stop = asyncio.Event()
        signals = runloop.StopSignals(on_stop=stop.set)

        async def runner():
            print("ready", flush=True)
            await asyncio.wait_for(stop.wait(), 30)
            return {"stopped_by": "interrupt"}

        result = runloop.run(runner(), signals=signals)
        print(result["stopped_by"], signals.received, flush=True)
        sys.exit(signals.exit_status)
    """))
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=ENV, cwd=ROOT, text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == code and out == f"interrupt {int(sig)}\n"


def test_a_non_blocking_stdout_loses_nothing(sse_server):
    """A pipe left non-blocking by whoever started us (some shells and runtimes do): a full
    pipe is waited for, not a silent loss of the rest of the run."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = subprocess.Popen([*FANIN, "stream", sse_server.url("/stream?count=20000&size=100&tag=nonblock"),
                             "--format", "ndjson"], stdout=write_end, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    os.close(write_end)
    time.sleep(1)  # let the pipe fill while nobody reads
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(1 << 16):
            chunks.append(chunk)
    _, err = proc.communicate(timeout=60)
    lines = b"".join(chunks).splitlines()
    assert proc.returncode == 0 and err == b""
    assert len(lines) == 20001 and orjson.loads(lines[-1])["total_events"] == 20000


def test_a_long_url_is_never_echoed_whole_into_an_error_line(sse_server):
    url = sse_server.url("/stream?status=404&pad=") + "p" * 4000
    code, out, err, _ = run_measured(["stream", url, "--format", "ndjson", "--retries", "0"])
    line = one_line(err)
    assert code == 1 and line.startswith("fanin: source 0 failed: HTTP 404")
    assert len(line) < 500 and "…" in line
    records = [orjson.loads(x) for x in out.splitlines()]
    assert records[-1]["sources"][0]["url"] == url  # ndjson keeps its fields whole
    bad = "http://127.0.0.1:1:2/x?" + "q" * 5000  # refused by the engine's URL check: a usage error
    code, _, err, _ = run_measured(["stream", bad])
    line = one_line(err)
    assert code == 2 and line.startswith("fanin: error: ") and len(line) < 500
