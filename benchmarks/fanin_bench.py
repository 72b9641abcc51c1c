"""Fan-in: 100 streams of 3,000 events of 64 bytes (with ids) merged into one NDJSON stream
(event_number across sources, source index, url), by `fanin stream @urls.txt` and by what a
user would write instead: asyncio.gather over httpx-sse, a thread per stream with
launchdarkly-eventsource, asyncio.gather over aiohttp-sse-client, and a raw byte copy of
the same bodies (the floor). The server (prebuilt_server.py, its own process) builds each
body once and writes it in 64 KiB chunks, so the client is what is measured. Whole
processes, stdout to /dev/null, rounds interleaved (the starting tool rotates), medians.

    .venv/bin/python benchmarks/fanin_bench.py [--streams 100] [--events 3000] [--runs 3]

Before timing, each tool reads 10 streams of 200 events and its output is checked (the
right count, fanin's fields, event_number 1..N, every source complete). Writes
benchmarks/results/fanin_bench.json and fanin_bench.png."""

from __future__ import annotations

import argparse
import collections
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (PEERS, PYTHON, RESULTS, fanin_command, listening_process, machine, median,  # noqa: E402
                    print_table, save_json)
from throughput import timed  # noqa: E402

HERE = Path(__file__).resolve().parent
FIELDS = {"type", "event_number", "source", "url", "event_type", "data", "event_id", "timestamp"}
FANIN = "fanin stream"
RAW = "raw byte copy (floor)"


@contextlib.contextmanager
def prebuilt_server():
    with listening_process(lambda port: [PYTHON, str(HERE / "prebuilt_server.py"), str(port)]) as (base, _proc):
        yield base


def url_file(directory: Path, base: str, streams: int, events: int) -> Path:
    path = directory / f"urls-{streams}x{events}.txt"
    path.write_text("".join(f"{base}/s/{k}?events={events}&size=64\n" for k in range(streams)))
    return path


def tools(urls: Path, events: int) -> dict[str, list[str]]:
    peer = lambda name: [PYTHON, str(PEERS / name), str(urls), str(events)]  # noqa: E731
    return {
        FANIN: [*fanin_command(), "stream", f"@{urls}", "--format", "ndjson"],
        "httpx-sse (asyncio.gather)": peer("fanin_httpx_sse.py"),
        "launchdarkly-eventsource (thread per stream)": peer("fanin_ld_eventsource.py"),
        "aiohttp-sse-client (asyncio.gather)": peer("fanin_aiohttp_sse_client.py"),
        RAW: peer("fanin_raw_copy.py"),
    }


def check(name: str, cmd: list[str], streams: int, events: int) -> None:
    proc = subprocess.run(cmd, capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    if name == RAW:
        return
    got = [x for x in map(orjson.loads, proc.stdout.splitlines()) if x.get("type") == "event"]
    per_source = collections.Counter(x["source"] for x in got)
    if (len(got) != streams * events or set(got[0]) != FIELDS
            or [x["event_number"] for x in got] != list(range(1, len(got) + 1))
            or sorted(per_source.values()) != [events] * streams):
        raise SystemExit(f"{name}: expected {streams} x {events} events in fanin's shape, got {len(got)}")


def chart(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["tool"] for r in rows][::-1]
    rates = [r["events_per_s"] / 1000 for r in rows][::-1]
    colors = ["#2a7ae2" if n == FANIN else "#9aa5b1" for n in names]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.barh(names, rates, color=colors)
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:,.0f}k", va="center", fontsize=9)
    ax.set_xlabel("events/s (thousands), whole process, median")
    ax.set_title(title)
    ax.set_xlim(0, max(rates) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    total = opts.streams * opts.events

    with tempfile.TemporaryDirectory() as tmp, prebuilt_server() as base:
        for name, cmd in tools(url_file(Path(tmp), base, 10, 200), 200).items():
            check(name, cmd, 10, 200)
        commands = tools(url_file(Path(tmp), base, opts.streams, opts.events), opts.events)
        names = list(commands)
        walls: dict[str, list[float]] = {n: [] for n in names}
        cpus: dict[str, list[float]] = {n: [] for n in names}
        for run in range(opts.runs):
            order = names[run % len(names):] + names[: run % len(names)]
            for name in order:
                wall, cpu = timed(commands[name])
                walls[name].append(wall)
                cpus[name].append(cpu)
            print(f"round {run + 1}/{opts.runs}: " + ", ".join(f"{n} {walls[n][-1]:.2f}s" for n in names),
                  file=sys.stderr)

    fanin_wall = median(walls[FANIN])
    rows = []
    for name in names:
        wall = median(walls[name])
        rows.append({
            "tool": name,
            "median_s": round(wall, 3),
            "runs_s": [round(w, 3) for w in walls[name]],
            "cpu_s": round(median(cpus[name]), 3),
            "events_per_s": round(total / wall),
            "fanin_speedup": round(wall / fanin_wall, 2),
        })
    peers = [r for r in rows if r["tool"] not in (FANIN, RAW)]
    best = min(peers, key=lambda r: r["median_s"])
    httpx = next(r for r in rows if r["tool"].startswith("httpx"))
    per_run = [{
        "vs_httpx_sse": round(walls[httpx["tool"]][i] / walls[FANIN][i], 2),
        "vs_best_peer": round(min(walls[p["tool"]][i] for p in peers) / walls[FANIN][i], 2),
        "of_raw": round(walls[RAW][i] / walls[FANIN][i], 2),
    } for i in range(opts.runs)]
    print(f"\n{opts.streams} streams x {opts.events:,} events of 64 bytes, median of {opts.runs} interleaved runs\n")
    print_table(
        ["tool", "median s", "events/s", "client CPU s", "fanin is x faster"],
        [[r["tool"], f"{r['median_s']:.2f}", f"{r['events_per_s']:,}", f"{r['cpu_s']:.2f}",
          "-" if r["tool"] == FANIN else f"{r['fanin_speedup']:.2f}x"] for r in rows],
    )
    print("\nper run: " + "; ".join(
        f"run {i + 1}: {r['vs_httpx_sse']}x httpx-sse, {r['vs_best_peer']}x best peer, {r['of_raw']} of raw"
        for i, r in enumerate(per_run)))
    print(f"best peer: {best['tool']}")
    payload = {
        "benchmark": "fanin",
        "command": "python benchmarks/fanin_bench.py " + " ".join(sys.argv[1:]),
        "streams": opts.streams, "events_per_stream": opts.events, "size": 64, "runs": opts.runs,
        "machine": machine(), "results": rows, "per_run": per_run,
    }
    path = save_json("fanin_bench", payload)
    chart(rows, f"Fan-in of {opts.streams} SSE streams x {opts.events:,} events to one NDJSON stream",
          RESULTS / "fanin_bench.png")
    print(f"\nwrote {path.relative_to(HERE.parent)} and {(RESULTS / 'fanin_bench.png').relative_to(HERE.parent)}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
