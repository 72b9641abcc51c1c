"""Locust + fanin against `fanin load` and a plain Locust streaming user: client CPU per
event and the highest event rate, in 1 and 2 client processes.

    .venv/bin/python benchmarks/locust_bench.py [--runs 3] [--users 8] [--short 4] [--long 12]

Every client reads the same endless streams (`/stream?count=0&size=32`, sent as fast as
the server can) from one `fanin serve` process, so the client is the bottleneck. Each tool
runs as whole processes twice, for `--short` and `--long` seconds; the figures are the
differences (events and CPU of the longer run minus the shorter), so start-up, imports and
shutdown cancel out. CPU is user + system time of the client and all its processes
(getrusage of waited-for children). Tools are interleaved and rotated from round to round.

  fanin load         `fanin load URL -c USERS --workers P`
  locust + fanin     SSEUser with self.sse.hold(URL) (metrics only), `--processes P` when P > 1
  plain locust       FastHttpUser, stream=True, a small SSE line reader that fires one
                     events.request per event (the gap), as streaming locustfiles do. Its
                     greenlets never yield on a fast stream, so Locust's -t cannot fire (the
                     starvation fanin's bridge prevents): each user stops itself when the
                     run time is up

Writes benchmarks/results/locust_bench.json and prints the table for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, fanin_command, machine, server_process

PATH = "/stream?count=0&size=32"

FANIN_LOCUSTFILE = f"""
from locust import constant, task
from fanin.locust import SSEUser


class Holder(SSEUser):
    wait_time = constant(0)

    @task
    def hold(self):
        self.sse.hold("{PATH}", name="fast")
"""

PLAIN_LOCUSTFILE = f"""
import os
import time

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

# Locust's -t cannot fire while these greenlets read a fast stream (they never yield), so
# each user stops itself when the run time is up; the hub is then free and -t fires.
STOP_AT = time.monotonic() + float(os.environ["PLAIN_SECONDS"])


class PlainReader(FastHttpUser):
    wait_time = constant(0)

    @task
    def read(self):
        fire = self.environment.events.request.fire
        response = self.client.get("{PATH}", stream=True, name="fast [connect]")
        rest = b""
        last = time.perf_counter()
        has_data = False
        for chunk in response.iter_content(chunk_size=65536, decode_content=False):
            if time.monotonic() > STOP_AT:
                raise StopUser()
            lines = (rest + chunk).split(b"\\n")
            rest = lines.pop()
            for line in lines:
                if line.startswith(b"data:"):
                    has_data = True
                elif not line.rstrip(b"\\r") and has_data:  # a blank line ends an event
                    now = time.perf_counter()
                    fire(request_type="SSE", name="fast [gap]", response_time=(now - last) * 1000,
                         response_length=0, exception=None, context={{}})
                    last = now
                    has_data = False
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tool(tool: str, base: str, users: int, processes: int, seconds: int, workdir: Path) -> tuple[int, float]:
    """(events, client CPU seconds) of one whole run."""
    out = workdir / f"{tool}-{processes}-{seconds}.json"
    if tool == "fanin load":
        cmd = [*fanin_command(), "load", base + PATH, "-c", str(users), "-d", f"{seconds}s",
               "--workers", str(processes), "--no-progress", "--json", str(out)]
    else:
        script = workdir / ("fanin_locustfile.py" if tool == "locust + fanin" else "plain_locustfile.py")
        cmd = [sys.executable, "-m", "locust", "-f", str(script), "--headless", "-u", str(users), "-r", "1000",
               "-t", f"{seconds}s", "-H", base, "--only-summary", "--json-file", str(out.with_suffix(""))]
        if processes > 1:
            cmd += ["--processes", str(processes)]
    before = children_cpu()
    subprocess.run(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 120,
                   env=dict(os.environ, NO_PROXY="*", PLAIN_SECONDS=str(seconds)))
    cpu = children_cpu() - before
    data = json.loads(out.read_text())
    if tool == "fanin load":
        events = data["events"]["total"]
    else:  # Locust's entries: the gap entry has one sample per event after each stream's first
        entries = {e["name"]: e for e in data}
        events = entries["fast [gap]"]["num_requests"] + entries["fast [connect]"]["num_requests"]
    return events, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=8, help="streams held at once (Locust users, fanin load -c)")
    parser.add_argument("--short", type=int, default=4, help="seconds of the shorter run")
    parser.add_argument("--long", type=int, default=12, help="seconds of the longer run")
    parser.add_argument("--processes", default="1,2", help="client process counts to measure")
    args = parser.parse_args()
    tools = ["fanin load", "locust + fanin", "plain locust"]
    counts = [int(p) for p in args.processes.split(",")]
    results: dict[str, list[dict]] = {f"{tool}|{p}": [] for tool in tools for p in counts}
    with tempfile.TemporaryDirectory() as tmp, server_process() as (base, _server):
        workdir = Path(tmp)
        (workdir / "fanin_locustfile.py").write_text(FANIN_LOCUSTFILE)
        (workdir / "plain_locustfile.py").write_text(PLAIN_LOCUSTFILE)
        for run in range(args.runs):
            order = tools[run % len(tools):] + tools[:run % len(tools)]
            for processes in counts:
                for tool in order:
                    short = run_tool(tool, base, args.users, processes, args.short, workdir)
                    long = run_tool(tool, base, args.users, processes, args.long, workdir)
                    events = long[0] - short[0]
                    cpu = long[1] - short[1]
                    row = {"run": run + 1, "events": events, "cpu_s": round(cpu, 3),
                           "events_per_s": round(events / (args.long - args.short)),
                           "cpu_us_per_event": round(cpu / events * 1e6, 3) if events > 0 else None}
                    results[f"{tool}|{processes}"].append(row)
                    print(f"run {run + 1} {tool:15} x{processes}: {row['events_per_s']:>10,} events/s "
                          f"{row['cpu_us_per_event']} us CPU/event", flush=True)
    lines = ["| client | processes | events/s (range of runs) | CPU per event (range) |", "|---|---|---|---|"]
    for key, rows in results.items():
        tool, processes = key.split("|")
        rates = [r["events_per_s"] for r in rows]
        cpus = [r["cpu_us_per_event"] for r in rows if r["cpu_us_per_event"] is not None]
        lines.append(f"| {tool} | {processes} | {min(rates):,} - {max(rates):,} | "
                     f"{min(cpus):.2f} - {max(cpus):.2f} µs |")
    summary = {}
    for processes in counts:
        load_cpu = statistics.median(r["cpu_us_per_event"] for r in results[f"fanin load|{processes}"])
        fanin_cpu = statistics.median(r["cpu_us_per_event"] for r in results[f"locust + fanin|{processes}"])
        fanin_rate = statistics.median(r["events_per_s"] for r in results[f"locust + fanin|{processes}"])
        plain_rate = statistics.median(r["events_per_s"] for r in results[f"plain locust|{processes}"])
        summary[processes] = {"cpu_ratio_to_fanin_load": round(fanin_cpu / load_cpu, 2),
                              "rate_ratio_to_plain_locust": round(fanin_rate / plain_rate, 2)}
        lines.append(f"\nmedians, {processes} process(es): locust + fanin uses "
                     f"{summary[processes]['cpu_ratio_to_fanin_load']}x the CPU per event of fanin load, and reads "
                     f"{summary[processes]['rate_ratio_to_plain_locust']}x the events/s of plain locust")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), "settings": vars(args), "path": PATH, "runs": results, "summary": summary,
                "table": table, "when": time.strftime("%Y-%m-%d")}
    (RESULTS / "locust_bench.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {(RESULTS / 'locust_bench.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
