"""fanin.locust under real Locust, headless, against the built-in server on loopback: one
process, `--processes 2`, and a master with two workers as separate processes. Each run
must stop on time and leave no process or open stream behind; Locust's entries, fanin's
exact report and the server's own counters must agree; thresholds set the exit status;
and `-t` must fire on time while a user consumes a stream as fast as the server sends."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from hdrh.histogram import HdrHistogram

from fanin.measure.metrics import new_histogram
from fanin.server.app import ServerThread

# Never `import locust` here: it monkey-patches the whole test process with gevent. Locust
# runs in its own processes; requirements-dev.txt installs it.
assert importlib.util.find_spec("locust") is not None, "locust is missing: make test installs requirements-dev.txt"

PER_STREAM = 25  # events per held stream; the user then opens the next one
LOCUSTFILE = f"""
from locust import constant, task
from fanin.locust import SSEUser


class Holder(SSEUser):
    wait_time = constant(0)

    @task
    def hold(self):
        self.sse.hold("/stream?count={PER_STREAM}&rate=50&ts=1", name="held", latency_field="ts")
"""

FAST_LOCUSTFILE = """
import json

from locust import constant, task
from fanin.locust import SSEUser


class Reader(SSEUser):
    wait_time = constant(0)

    @task
    def read(self):
        seen = 0
        with self.sse.stream("/stream?count=0&ts=1", name="fast") as events:
            for event in events:  # parsing each event is slower than the server sends them
                seen += json.loads(event.data)["seq"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def locust(tmp_path: Path, text: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "locustfile.py"
    script.write_text(text)
    env = dict(os.environ, NO_PROXY="*", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "locust", "-f", str(script), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("locust did not stop on time:\n" + out[-3000:]) from None
    return proc.returncode, out, time.monotonic() - started


def assert_nothing_left(tmp_path: Path, server: ServerThread) -> None:
    """No process of this run is alive, and the server has no stream open."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]
        if not left and server.stats.snapshot()["open_streams"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"left behind: processes {left}, open streams {server.stats.snapshot()['open_streams']}")


def locust_entries(path: Path) -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(path.read_text())}


def check_counts(report: dict, entries: dict[str, dict], server: ServerThread, users: int) -> None:
    """The same run seen three ways: the server's counters, Locust's entries, fanin's report."""
    opened = server.stats.snapshot()["streams_started"]
    events = report["events"]["total"]
    conns = report["connections"]
    assert conns["opened"] == opened >= users
    assert entries["held [connect]"]["num_requests"] == opened
    assert entries["held [first event]"]["num_requests"] == opened
    completed = entries["held [stream]"]["num_requests"]  # connections that ended before the stop
    assert conns["streams_completed"] == completed >= users
    assert PER_STREAM * completed <= events <= PER_STREAM * opened
    assert entries["held [latency]"]["num_requests"] == events == report["latency_ms"]["latency"]["count"]
    assert entries["held [gap]"]["num_requests"] == events - opened == report["latency_ms"]["gap"]["count"]
    assert all(e["num_failures"] == 0 for e in entries.values())
    assert report["errors"]["total"] == 0


def check_merge(report: dict, workers: int) -> None:
    """The master's exact percentiles are those of the workers' histograms added up."""
    assert len(report["workers"]) == workers
    assert all(w["events"] > 0 for w in report["workers"].values())
    assert sum(w["events"] for w in report["workers"].values()) == report["events"]["total"]
    for measure in ("ttfe", "gap", "latency"):
        total: HdrHistogram = new_histogram()
        for worker in report["workers"].values():
            total.decode_and_add(worker["snapshot"]["held"]["hist"][measure])
        merged = report["latency_ms"][measure]
        assert total.get_total_count() == merged["count"]
        for p in (50, 90, 99):
            assert merged[f"p{p}"] == pytest.approx(total.get_value_at_percentile(p) / 1000, abs=0.0015)


def test_one_process_counts_agree_and_a_passing_threshold_exits_0(tmp_path):
    with ServerThread() as server:
        proc = locust(tmp_path, LOCUSTFILE, "--headless", "-u", "4", "-r", "100", "-t", "3s", "-H", server.url(""),
                      "--only-summary", "--json-file", "locust", "--sse-json", "sse.json",
                      "--sse-threshold", "p99_ttfe<5s", "--sse-threshold", "events>10")
        code, out, seconds = finish(proc, 60)
        assert code == 0, out[-3000:]
        assert seconds < 3 + 15  # -t 3s, plus start-up and a generous margin
        assert "Unclosed" not in out and "Traceback" not in out, out[-3000:]
        assert "fanin.locust exact SSE figures" in out and "ok   p99_ttfe<5s" in out
        report = json.loads((tmp_path / "sse.json").read_text())
        check_counts(report, locust_entries(tmp_path / "locust.json"), server, users=4)
        assert_nothing_left(tmp_path, server)


def test_processes_2_merge_exactly_and_a_breached_threshold_exits_1(tmp_path):
    with ServerThread() as server:
        proc = locust(tmp_path, LOCUSTFILE, "--headless", "--processes", "2", "-u", "4", "-r", "100", "-t", "3s",
                      "-H", server.url(""), "--only-summary", "--json-file", "locust", "--sse-json", "sse.json",
                      "--sse-html", "sse.html",
                      "--sse-threshold", "p50_gap<1ms")  # the server paces events 20 ms apart: a breach
        code, out, seconds = finish(proc, 60)
        assert code == 1, out[-3000:]
        assert "FAIL p50_gap<1ms" in out
        report = json.loads((tmp_path / "sse.json").read_text())
        assert report["thresholds"][0]["ok"] is False
        check_counts(report, locust_entries(tmp_path / "locust.json"), server, users=4)
        check_merge(report, workers=2)
        # The merged report as a page: charts over time from both workers' timelines.
        page = (tmp_path / "sse.html").read_text()
        for title in ("Open streams", "Events per second", "Gap between events", "End-to-end event latency"):
            assert f'data-title="{title}"' in page
        assert "<script" not in page and "src=" not in page and "href=" not in page
        assert report["timeline"] and max(r["active"] for r in report["timeline"]) == 4  # samples: once a fold (1 s)
        assert_nothing_left(tmp_path, server)


def test_master_and_two_worker_processes(tmp_path):
    port = free_port()
    with ServerThread() as server:
        master = locust(tmp_path, LOCUSTFILE, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                        str(port), "--expect-workers", "2", "--headless", "-u", "4", "-r", "100", "-t", "3s",
                        "-H", server.url(""), "--only-summary", "--json-file", "locust", "--sse-json", "sse.json")
        workers = [locust(tmp_path, LOCUSTFILE, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
                   for _ in range(2)]
        try:
            code, out, _ = finish(master, 90)
            assert code == 0, out[-3000:]
            for worker in workers:
                worker_code, worker_out, _ = finish(worker, 30)  # they quit with the master
                assert worker_code == 0, worker_out[-3000:]
        finally:
            for proc in (master, *workers):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        report = json.loads((tmp_path / "sse.json").read_text())
        check_counts(report, locust_entries(tmp_path / "locust.json"), server, users=4)
        check_merge(report, workers=2)
        assert_nothing_left(tmp_path, server)


def test_run_time_fires_on_time_while_a_user_reads_a_fast_stream(tmp_path):
    """The reading greenlet never finds its queue empty; the bridge must still give the
    hub its turns, or Locust's -t timer, heartbeats and shutdown wait for it."""
    with ServerThread() as server:
        proc = locust(tmp_path, FAST_LOCUSTFILE, "--headless", "-u", "1", "-r", "10", "-t", "3s",
                      "-H", server.url(""), "--only-summary", "--json-file", "locust")
        code, out, seconds = finish(proc, 30)  # without the hub's turns it never stopped
        assert code == 0, out[-3000:]
        assert seconds < 3 + 10, out[-3000:]
        entries = locust_entries(tmp_path / "locust.json")
        assert entries["fast [gap]"]["num_requests"] > 10_000  # it really was reading fast
        assert_nothing_left(tmp_path, server)


def test_a_bad_threshold_is_one_line_and_exit_2(tmp_path):
    proc = locust(tmp_path, LOCUSTFILE, "--headless", "-t", "1s", "--sse-threshold", "p99_nonsense<1ms")
    code, out, _ = finish(proc, 60)
    assert code == 2
    assert "unknown metric 'p99_nonsense'" in out and "Traceback" not in out


IMPORT_SCRIPT = r"""
import json, os
tasks = lambda: len(os.listdir("/proc/self/task"))
import locust  # patches the process with gevent, as the locust command does
before = tasks()
import fanin.locust
import fanin.embed.bridge as bridge
print(json.dumps({"threads_added": tasks() - before, "bridge_started": bridge._bridge is not None}))
"""


def test_importing_fanin_locust_starts_nothing():
    """Locust's --processes forks after importing the locustfile: no thread may exist yet."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, NO_PROXY="*"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"threads_added": 0, "bridge_started": False}
