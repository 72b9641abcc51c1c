"""`fanin load` as a user meets it (issue 15): real `fanin` processes against servers on
127.0.0.1, for what only a real process shows: exit statuses, signals, output paths checked
before the load, an early end when nothing can open, the error lines, the body rule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from fanin.errors import FailureKind
from fanin.load.kinds import LoadFailure
from loopback_apps import serve

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
CHAT = "/v1/chat/completions"
OPENAI = ["--mode", "requests", "--json-body", '{"stream": true}', "--extract", "choices.0.delta.content",
          "--stop-on", "[DONE]"]


def fanin(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([*FANIN, *args], capture_output=True, timeout=timeout, env=ENV, cwd=ROOT)


def wait_for_requests(server, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.stats.total_requests < at_least:
        assert time.monotonic() < deadline, "the load never reached the server"
        time.sleep(0.05)


# --------------------------------------------------------------------------- interrupted
@pytest.mark.parametrize("mode", ["streams", "requests"])
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_does_not_pass_and_still_reports(fresh_server, tmp_path, mode, workers, sig, code):
    path = tmp_path / "report.json"
    target = (fresh_server.url(f"{CHAT}?ttft_ms=5&itl_ms=20&max_tokens=5") if mode == "requests"
              else fresh_server.url("/stream?count=0&rate=20"))
    extra = OPENAI if mode == "requests" else []
    proc = subprocess.Popen([*FANIN, "load", target, "-c", "2", "-d", "60s", "--workers", workers, *extra,
                             "--json", str(path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    try:
        wait_for_requests(fresh_server, 6 if mode == "requests" else 2)  # (request mode: some have ended)
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err.decode()
    report = orjson.loads(path.read_bytes())
    assert report["stopped_by"] == "interrupt" and report["signal"] == sig.name
    assert report["passed"] is False
    assert report["elapsed_s"] < 30  # cut short, and what ran is measured
    assert report["events"]["total"] > 0
    assert "fanin load:" in out.decode()  # the table is still written
    assert f"fanin: interrupted by {sig.name}" in err.decode() and "Traceback" not in err.decode()


# --------------------------------------------------------------------------- output paths
@pytest.mark.parametrize("flags", [
    ["--json", "/nonexistent-dir/report.json"],
    ["--json", "."],
    ["--mode", "requests", "--sweep", "concurrency=1,2", "--chart", "/nonexistent-dir/chart.png"],
    ["--mode", "requests", "--sweep", "concurrency=1,2", "--json", "/nonexistent-dir/sweep.json"],
])
def test_an_output_path_that_cannot_be_written_stops_before_any_load(fresh_server, flags):
    result = fanin("load", fresh_server.url("/stream?count=0&rate=20"), "-d", "30s", *flags)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("fanin: error: cannot write ") and err.count("\n") == 1, err
    assert fresh_server.stats.total_requests == 0


# --------------------------------------------------------------------------- cannot open
@pytest.mark.parametrize("extra", [[], ["--workers", "2"], ["--mode", "requests"]])
def test_a_url_that_cannot_open_fails_fast(unused_port, tmp_path, extra):
    path = tmp_path / "report.json"
    result = fanin("load", f"http://127.0.0.1:{unused_port}/stream", "-c", "2", "-d", "60s", *extra,
                   *(["--retries", "0"] if "requests" not in extra else []), "--json", str(path))
    assert result.returncode == 1
    err = result.stderr.decode()
    report = orjson.loads(path.read_bytes())
    assert report["stopped_by"] == "all_failed" and report["passed"] is False
    assert report["elapsed_s"] < 30, report["elapsed_s"]  # not the 60 s asked for
    assert set(report["errors"]["by_kind"]) == {"refused"}
    assert "gave up after" in err and "every attempt failed before a stream opened" in err
    assert "Traceback" not in err


def test_a_4xx_url_fails_fast_but_an_overloaded_server_is_measured(fresh_server, tmp_path):
    path = tmp_path / "report.json"
    result = fanin("load", fresh_server.url("/stream?status=404"), "-c", "2", "-d", "60s", "--json", str(path))
    report = orjson.loads(path.read_bytes())
    assert result.returncode == 1 and report["stopped_by"] == "all_failed"
    assert report["errors"]["by_kind"] == {"http_4xx": report["errors"]["total"]}
    # 503s in request mode are what a load test measures: the run goes on to its -n.
    result = fanin("load", fresh_server.url(f"{CHAT}?error_rate=1&error_status=503"), "-c", "2", "-n", "8",
                   *OPENAI, "--json", str(path))
    report = orjson.loads(path.read_bytes())
    assert report["stopped_by"] is None and report["requests"]["failed"] == 8


# --------------------------------------------------------------------------- body rule
def test_a_body_without_method_is_a_post_in_both_modes(tmp_path):
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if request.method != "POST":
            return web.Response(status=405)
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n')
        return response

    app = web.Application()
    app.router.add_route("*", "/sse", handler)
    with serve(app) as port:
        url = f"http://127.0.0.1:{port}/sse"
        streams = fanin("load", url, "-c", "1", "-d", "0.5s", "--body", "x", "--reconnect", "never",
                        "--json", str(tmp_path / "s.json"))
        requests = fanin("load", url, "-c", "1", "-n", "2", *OPENAI, "--json", str(tmp_path / "r.json"))
        explicit = fanin("load", url, "-c", "1", "-n", "1", *OPENAI, "-X", "PUT", "--json", str(tmp_path / "p.json"))
    assert streams.returncode == 0, streams.stderr.decode()
    assert requests.returncode == 0, requests.stderr.decode()
    assert orjson.loads((tmp_path / "s.json").read_bytes())["settings"]["method"] == "POST"
    assert explicit.returncode == 1 and "PUT" in seen  # -X wins (and this server answers 405)
    assert seen.count("POST") >= 3 and "GET" not in seen


# --------------------------------------------------------------------------- error lines
def test_error_lines_have_one_prefix_units_and_plurals(sse_server, tmp_path):
    result = fanin("load", sse_server.url("/stream?count=0&rate=10"), "-c", "1", "-d", "0.6s",
                   "--threshold", "events_per_s>100000", "--threshold", "p99_ttfe<0.001ms",
                   "--threshold", "error_rate>50%", "--no-progress")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1
    assert "fanin load:" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("fanin: error: threshold breached: ") for line in lines), err
    assert any(line.endswith(" events/s)") for line in lines), err
    assert any(line.startswith("fanin: error: threshold breached: p99_ttfe<0.001ms (actual ")
               and line.endswith(" ms)") for line in lines), err
    assert any("error_rate>50% (actual 0%)" in line for line in lines), err
    assert "1 process," in out and "process(es)" not in out
    # the unknown-metric line names statistics and metrics apart
    bad = fanin("load", sse_server.url("/stream"), "--threshold", "p99_nothing<1")
    line = bad.stderr.decode()
    assert bad.returncode == 2 and line.count("\n") == 1
    assert "statistics p50, p90, p95, p99, max, mean and metrics connect, ttfe" in line


def test_request_mode_one_user_reads_as_one_user(sse_server, tmp_path):
    result = fanin("load", sse_server.url(f"{CHAT}?ttft_ms=5&itl_ms=5&max_tokens=3"), "-c", "1", "-n", "2",
                   *OPENAI, "--no-progress")
    assert result.returncode == 0, result.stderr.decode()
    assert "(1 user)" in result.stdout.decode() and "1 users" not in result.stdout.decode()


# --------------------------------------------------------------------------- failure kinds
def test_every_counted_kind_is_the_engines_or_a_load_kind(fresh_server, tmp_path):
    path = tmp_path / "report.json"
    urls = [fresh_server.url(f"{CHAT}?error_rate=1&error_status=503"), fresh_server.url("/stream?count=3"),
            fresh_server.url("/stream?status=404")]
    fanin("load", *urls, "-c", "3", "-n", "9", "--mode", "requests", "--json-body", "{}",
          "--extract", "choices.0.delta.content", "--json", str(path))
    kinds = orjson.loads(path.read_bytes())["errors"]["by_kind"]
    assert set(kinds) == {"http_5xx", "http_4xx", "no_tokens"}
    known = {k.value for k in FailureKind} | {k.value for k in LoadFailure}
    assert set(kinds) <= known


# --------------------------------------------------------------------------- terminal width
def run_in_pty(args: list[str], columns: int, timeout: float = 60) -> tuple[int, str]:
    """Run `fanin` with a pseudo-terminal of `columns` columns as stdout and stderr."""
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([*FANIN, *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                            env=dict(ENV, COLUMNS=str(columns), TERM="xterm"))
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        proc.kill()
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    # every cursor move and redraw becomes a line break: what remains is what was drawn
    text = re.sub(r"\x1b\[[0-9;?]*[mhl]", "", text)  # styles, cursor shown/hidden
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", text)  # cursor moves, erases


def test_an_80_column_terminal_shows_every_header_whole(sse_server):
    code, screen = run_in_pty(["load", sse_server.url("/stream?count=0&rate=20"), "-c", "3", "-d", "2.5s"],
                              columns=80)
    assert code == 0, screen
    lines = [line for line in screen.split("\n") if line.strip()]
    assert "…" not in screen  # no header or value cut short
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.strip().startswith("elapsed"))
    for name in ("elapsed", "active", "events/s", "p99 ttfe", "errors"):
        assert name in header
    assert any(line.strip().startswith("fanin load: ") for line in lines)


def test_piped_output_is_plain_and_unpadded(sse_server):
    result = fanin("load", sse_server.url("/stream?count=0&rate=20"), "-c", "2", "-d", "1s", "--warmup", "0.5s")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "\x1b[" not in out
    assert all(line == line.rstrip() for line in out.splitlines())
    assert max(len(line) for line in out.splitlines()) <= 100
    assert out.startswith("fanin load: ")
    assert " ".join(out.split()).count("measured after a 0.5 s warm-up") == 1


# --------------------------------------------------------------------------- sweeps
def sweep(server, tmp_path, *extra: str, loads: str = "1,2,4,8") -> tuple[subprocess.CompletedProcess, dict]:
    url = server.url(f"{CHAT}?ttft_ms=10&itl_ms=5&max_tokens=4&max_concurrency=2")
    path = tmp_path / "sweep.json"
    result = subprocess.run([*FANIN, "load", "--mode", "requests", url, *OPENAI[2:], "--sweep",
                             f"concurrency={loads}", "-d", "0.5s", "--json", str(path), *extra],
                            capture_output=True, timeout=120, env=dict(ENV, COLUMNS="80"), cwd=tmp_path)
    return result, orjson.loads(path.read_bytes())


def test_a_sweep_says_where_it_wrote_and_its_chart_reads_in_ms(sse_server, tmp_path):
    pytest.importorskip("matplotlib")  # (an extra: without it the sweep says so, tested elsewhere)
    from fanin.load.chart import sweep_figure

    result, doc = sweep(sse_server, tmp_path, "--slo", "ttft<40ms", "--slo", "e2e<200ms")
    err, out = result.stderr.decode(), result.stdout.decode()
    assert f"fanin: chart written to {tmp_path / 'sweep.png'}" in err
    assert f"fanin: report written to {tmp_path / 'sweep.json'}" in err
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    figure = sweep_figure(doc)
    top, bottom = figure.axes
    figure.canvas.draw()
    labels = [t.get_text() for t in top.get_yticklabels() if t.get_text()]
    assert labels and all(label.endswith((" ms", " s")) for label in labels), labels  # not 10^2
    assert not top.texts  # the SLOs are named in the legend, never written over the lines
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert "SLO ttft<40ms" in legend and "SLO e2e<200ms" in legend
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["1", "2", "4", "8"]
    assert any("goodput" in line.get_label() for line in bottom.get_lines())


def test_a_sweep_without_slo_plots_no_goodput_and_integer_ticks(sse_server, tmp_path):
    pytest.importorskip("matplotlib")
    from fanin.load.chart import sweep_figure

    _, doc = sweep(sse_server, tmp_path, loads="1,2,3")
    figure = sweep_figure(doc)
    bottom = figure.axes[1]
    figure.canvas.draw()
    assert [t.get_text() for t in bottom.get_xticklabels() if t.get_text()] == ["1", "2", "3"]
    assert not any("goodput" in line.get_label() for line in bottom.get_lines())


def test_nothing_is_written_into_the_repository_unless_asked(sse_server, tmp_path):
    before = sorted((ROOT / "benchmarks" / "results").iterdir()) if (ROOT / "benchmarks" / "results").exists() \
        else []
    result, doc = sweep(sse_server, tmp_path, loads="1")
    assert result.returncode == 0
    assert doc["chart"] == "sweep.png" and (tmp_path / "sweep.png").exists()
    after = sorted((ROOT / "benchmarks" / "results").iterdir()) if (ROOT / "benchmarks" / "results").exists() \
        else []
    assert before == after
