"""Never a traceback, and signals end cleanly (issue 8, class 7): real `fanin stream`
processes writing to a full disk, to a closed stdout and into a pipe that closes, and stopped
by SIGTERM or SIGINT mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and text.count("\n") == 1, text
    return text.strip()


def test_a_full_disk_ends_with_one_line_and_exit_1(sse_server):
    with open("/dev/full", "wb") as full:
        result = subprocess.run([*FANIN, "stream", sse_server.url("/stream?count=2000&size=200")],
                                stdout=full, stderr=subprocess.PIPE, timeout=60, env=ENV, cwd=ROOT)
    assert result.returncode == 1
    assert one_line(result.stderr) == "fanin: error: cannot write the output: No space left on device"


def test_a_load_report_to_a_full_disk_ends_with_one_line_and_exit_1(sse_server):
    with open("/dev/full", "wb") as full:
        result = subprocess.run([*FANIN, "load", sse_server.url("/stream?count=5"), "-c", "1", "-d", "0.3s",
                                 "--json", "-", "--no-progress"],
                                stdout=full, stderr=subprocess.PIPE, timeout=60, env=ENV, cwd=ROOT)
    assert result.returncode == 1
    assert one_line(result.stderr) == "fanin: error: No space left on device"


def test_a_closed_stdout_ends_with_one_line_and_exit_1(sse_server):
    command = " ".join([*FANIN, "stream", f"'{sse_server.url('/stream?count=5')}'"])
    result = subprocess.run(["sh", "-c", f"exec {command} >&-"], stderr=subprocess.PIPE, timeout=60, env=ENV,
                            cwd=ROOT)
    assert result.returncode == 1
    assert one_line(result.stderr) == "fanin: error: cannot write the output: standard output is closed"


def test_a_reader_that_goes_away_ends_quietly(sse_server):
    """`| head`: the usual Unix behaviour, no error, nothing on stderr."""
    proc = subprocess.Popen([*FANIN, "stream", sse_server.url("/stream?count=200000&size=100")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b""


@pytest.mark.parametrize(("sig", "code", "line"), [(signal.SIGTERM, 143, "fanin: terminated"),
                                                   (signal.SIGINT, 130, "fanin: interrupted")])
def test_a_signal_ends_the_run_with_its_summary(sse_server, sig, code, line):
    proc = subprocess.Popen([*FANIN, "stream", sse_server.url("/stream?count=100000&rate=20"),
                             sse_server.url("/stream?count=100000&rate=20"), "--format", "ndjson"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    first = orjson.loads(proc.stdout.readline())  # the run is live
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    assert first["type"] == "event"
    assert proc.returncode == code
    assert one_line(err) == line
    summary = orjson.loads(rest.splitlines()[-1])
    assert summary["type"] == "summary" and summary["stopped_by"] == "interrupt"
    assert "stopped by interrupt" in summary["summary"]
    assert [s["status"] for s in summary["sources"]] == ["stopped", "stopped"]
