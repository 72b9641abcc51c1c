"""The gevent bridge's cost: events/s handed from the engine's loop thread to a greenlet,
and the latency the hand-off adds. Runs with gevent patched exactly as under Dify
(`import dify_plugin` when installed, else the same `monkey.patch_all(sys=True)`).

    .venv/bin/python benchmarks/bridge_bench.py [--events N] [--samples N] [--consumers N]

Measures
  handoff/item     one item per event (like FanIn.stream()), one greenlet consuming
  handoff/batch    lists of 64 events (like FanIn.stream_batches(), what the tools use)
  handoff/8 greenlets  8 greenlets consuming at once (the loop thread is shared)
  latency          a stamped item every 1 ms; receive time minus stamp (p50/p99/max)
  engine e2e       FanIn over 3 x N events from the built-in server (another process),
                   through the bridge into a greenlet
Writes benchmarks/results/bridge_bench.json.
"""

from __future__ import annotations

try:  # patch first, as the plugin runtime does
    import dify_plugin  # noqa: F401
    PATCHED_BY = "dify_plugin"
except ImportError:  # pragma: no cover - dify_plugin is in requirements.txt
    from gevent import monkey

    monkey.patch_all(sys=True)
    PATCHED_BY = "gevent.monkey.patch_all"

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanin.embed.bridge import get_bridge, gevent_active  # noqa: E402
from fanin.events import SourceError  # noqa: E402
from fanin.merge import FanIn  # noqa: E402
from fanin.stream import Request  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bridge_bench.json"


async def items(n: int):
    for i in range(n):
        yield i
        if i % 4096 == 0:
            await asyncio.sleep(0)


async def batches(n: int, size: int):
    batch = list(range(size))
    for _ in range(n // size):
        yield batch
        await asyncio.sleep(0)


def handoff_rate(n: int, consumers: int, batch: int | None) -> float:
    """Events per second received by `consumers` greenlets together."""
    counts = [0] * consumers

    def consume(k: int) -> None:
        if batch:
            for b in get_bridge().iterate(lambda: batches(n, batch)):
                counts[k] += len(b)
        else:
            for _ in get_bridge().iterate(lambda: items(n)):
                counts[k] += 1

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(consume, k) for k in range(consumers)])
    elapsed = time.perf_counter() - started
    assert sum(counts) == n * consumers or (batch and sum(counts) == (n // batch) * batch * consumers)
    return sum(counts) / elapsed


def latency_us(samples: int, interval: float) -> dict[str, float]:
    async def stamped():
        for _ in range(samples):
            await asyncio.sleep(interval)
            yield time.perf_counter_ns()

    delays = sorted((time.perf_counter_ns() - stamp) / 1000 for stamp in get_bridge().iterate(stamped))

    def pct(p: float) -> float:
        return round(delays[min(len(delays) - 1, int(p / 100 * len(delays)))], 1)

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": round(delays[-1], 1), "samples": samples}


def free_port() -> int:
    original = socket.socket
    with original() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_e2e(events_per_source: int) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fanin.cli.main import main; "
         f"sys.exit(main(['serve', '--port', '{port}', '--quiet']))"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1).read()
                break
            except OSError:
                gevent.sleep(0.05)
        urls = [f"http://127.0.0.1:{port}/stream?count={events_per_source}&tag=b{i}" for i in range(3)]
        fan = FanIn([Request(url=u) for u in urls])
        started = time.perf_counter()
        received = sum(len(item) for chunk in get_bridge().iterate(fan.stream_batches) for item in chunk
                       if not isinstance(item, SourceError))
        elapsed = time.perf_counter() - started
        return {"events": received, "seconds": round(elapsed, 3), "events_per_s": round(received / elapsed),
                "status": fan.summary.status}
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per hand-off run")
    parser.add_argument("--samples", type=int, default=2000, help="latency samples")
    parser.add_argument("--consumers", type=int, default=8, help="greenlets in the shared run")
    parser.add_argument("--engine-events", type=int, default=50_000, help="events per source, engine run")
    args = parser.parse_args()
    assert gevent_active(), "gevent is not patched; the benchmark would not measure the Dify case"

    get_bridge()  # start the loop thread outside the timings
    handoff_rate(2000, 1, None)  # warm-up
    results = {
        "patched_by": PATCHED_BY,
        "python": platform.python_version(),
        "gevent": gevent.__version__,
        "cpu_count": os.cpu_count(),
        "handoff_item_events_per_s": round(handoff_rate(args.events, 1, None)),
        "handoff_batch64_events_per_s": round(handoff_rate(args.events * 5, 1, 64)),
        "handoff_item_8_greenlets_events_per_s": round(handoff_rate(args.events // args.consumers, args.consumers,
                                                                    None)),
        "latency_us_idle": latency_us(args.samples, 0.001),
    }
    # latency while 8 other greenlets push items through the same loop thread
    background = [gevent.spawn(handoff_rate, args.events // 4, 1, None) for _ in range(args.consumers)]
    gevent.sleep(0.01)
    results["latency_us_under_load"] = latency_us(args.samples // 2, 0.001)
    gevent.joinall(background)
    results["engine_e2e"] = engine_e2e(args.engine_events)

    rows = [
        ("hand-off, one item per event", f"{results['handoff_item_events_per_s']:,} events/s"),
        ("hand-off, batches of 64", f"{results['handoff_batch64_events_per_s']:,} events/s"),
        (f"hand-off, {args.consumers} greenlets at once", f"{results['handoff_item_8_greenlets_events_per_s']:,} events/s"),
        ("added latency, idle (p50 / p99)",
         f"{results['latency_us_idle']['p50']} / {results['latency_us_idle']['p99']} us"),
        ("added latency, under load (p50 / p99)",
         f"{results['latency_us_under_load']['p50']} / {results['latency_us_under_load']['p99']} us"),
        ("engine -> bridge -> greenlet (3 sources)",
         f"{results['engine_e2e']['events_per_s']:,} events/s ({results['engine_e2e']['events']:,} events,"
         f" {results['engine_e2e']['status']})"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"fanin.embed.bridge under gevent ({PATCHED_BY}), Python {results['python']}, gevent {results['gevent']}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
