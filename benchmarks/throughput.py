"""Throughput: one stream of 300,000 events of 64 bytes from the built-in server (in its own
process) to NDJSON on stdout (/dev/null), done by `fanin stream` and by small scripts using
the peers, plus a raw byte copy as the floor. Whole processes (start-up included), runs
interleaved (the order rotates each round), medians of --runs rounds, ratios to fanin.

    .venv/bin/python benchmarks/throughput.py [--events 300000] [--size 64] [--runs 5]

Before timing, every tool does a short checked run (the right number of NDJSON lines, the
same fields), so a fast wrong answer cannot win. Writes benchmarks/results/throughput.json and
throughput.png; runs benchmarks/parser_bench.py (the parsers alone) when it exists."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PEERS, PYTHON, RESULTS, ROOT, fanin_command, machine, median, print_table, save_json, server_process  # noqa: E402

FIELDS = {"type", "event_number", "source", "url", "event_type", "data", "event_id", "timestamp"}


def tools(url: str, events: int) -> dict[str, list[str]]:
    peer = lambda name: [PYTHON, str(PEERS / name), url, str(events)]  # noqa: E731
    return {
        "fanin stream": [*fanin_command(), "stream", url, "--format", "ndjson"],
        "httpx-sse": peer("httpx_sse_peer.py"),
        "launchdarkly-eventsource": peer("ld_eventsource_peer.py"),
        "sseclient-py": peer("sseclient_py_peer.py"),
        "aiohttp-sse-client": peer("aiohttp_sse_client_peer.py"),
        "raw byte copy (floor)": [PYTHON, str(PEERS / "raw_copy.py"), url],
    }


def stream_url(base: str, events: int, size: int) -> str:
    return f"{base}/stream?count={events}&size={size}&rate=0"


def check(name: str, cmd: list[str], events: int) -> None:
    """A short run whose output is read back: right count, fanin's event shape, ids in order."""
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    if name.startswith("raw"):
        return
    lines = [orjson.loads(line) for line in proc.stdout.splitlines()]
    got = [x for x in lines if x.get("type") == "event"]
    if len(got) != events or set(got[0]) != FIELDS or [x["event_number"] for x in got] != list(range(1, events + 1)):
        raise SystemExit(f"{name}: expected {events} events in fanin's shape, got {len(got)}")


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one whole process writing to /dev/null."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def parser_alone() -> str | None:
    script = Path(__file__).resolve().parent / "parser_bench.py"
    if not script.exists():
        return None
    proc = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, timeout=900)
    return proc.stdout if proc.returncode == 0 else f"parser_bench.py failed: {proc.stderr.strip()[-300:]}"


def chart(rows: list[dict], events: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["tool"] for r in rows][::-1]
    rates = [r["events_per_s"] / 1000 for r in rows][::-1]
    colors = ["#2a7ae2" if n == "fanin stream" else "#9aa5b1" for n in names]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(names, rates, color=colors)
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:,.0f}k", va="center", fontsize=9)
    ax.set_xlabel("events/s (thousands), whole process, median")
    ax.set_title(f"One SSE stream of {events:,} x 64-byte events to NDJSON")
    ax.set_xlim(0, max(rates) * 1.18)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-parser", action="store_true", help="skip the parser-alone benchmark")
    opts = ap.parse_args()

    with server_process() as (base, _):
        for name, cmd in tools(stream_url(base, 2000, opts.size), 2000).items():
            check(name, cmd, 2000)
        commands = tools(stream_url(base, opts.events, opts.size), opts.events)
        names = list(commands)
        walls: dict[str, list[float]] = {n: [] for n in names}
        cpus: dict[str, list[float]] = {n: [] for n in names}
        for run in range(opts.runs):
            order = names[run % len(names):] + names[: run % len(names)]  # interleaved, rotating
            for name in order:
                wall, cpu = timed(commands[name])
                walls[name].append(wall)
                cpus[name].append(cpu)
            print(f"round {run + 1}/{opts.runs}: " + ", ".join(f"{n} {walls[n][-1]:.2f}s" for n in names), file=sys.stderr)

    fanin_time = median(walls["fanin stream"])
    rows = []
    for name in names:
        wall = median(walls[name])
        rows.append({
            "tool": name,
            "median_s": round(wall, 3),
            "runs_s": [round(w, 3) for w in walls[name]],
            "cpu_s": round(median(cpus[name]), 3),
            "events_per_s": round(opts.events / wall),
            "fanin_speedup": round(wall / fanin_time, 2),  # how many times faster fanin is
        })
    print(f"\n{opts.events:,} events of {opts.size} bytes, one stream, median of {opts.runs} interleaved runs\n")
    print_table(
        ["tool", "median s", "events/s", "client CPU s", "fanin is x faster"],
        [[r["tool"], f"{r['median_s']:.2f}", f"{r['events_per_s']:,}", f"{r['cpu_s']:.2f}",
          "-" if r["tool"] == "fanin stream" else f"{r['fanin_speedup']:.2f}x"] for r in rows],
    )
    parser = None if opts.no_parser else parser_alone()
    if parser:
        print("\nParser alone (benchmarks/parser_bench.py):\n" + parser)
    payload = {
        "benchmark": "throughput",
        "command": "python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
        "events": opts.events,
        "size": opts.size,
        "runs": opts.runs,
        "machine": machine(),
        "results": rows,
        "parser_alone": parser,
    }
    path = save_json("throughput", payload)
    chart(rows, opts.events, RESULTS / "throughput.png")
    print(f"\nwrote {path.relative_to(ROOT)} and {(RESULTS / 'throughput.png').relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
