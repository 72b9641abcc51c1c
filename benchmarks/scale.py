"""Scale: fan-in of 1, 10, 100, 1,000 and 10,000 streams through the engine's FanIn, from the
built-in server in another process (a fresh one per size). The offered load is the same for
every size (--offered events/s in all, split evenly over the streams, so 10,000 streams send
1 event/s each). For each size: time until every stream is open, merged events/s delivered
to the consumer, RSS per stream, and added latency (the server's `ts` stamp in the event ->
the consumer receiving it from the merged queue) p50/p99.

    .venv/bin/python benchmarks/scale.py [--max-streams 10000] [--seconds 10] [--offered 10000]

Each size runs in its own process (clean RSS). Writes benchmarks/results/scale.json and scale.png.

C100K: `--load 100000` instead holds that many streams with `fanin load` itself: one
`fanin serve` process per loopback address (127.0.0.1, .2, ...), each holding at most
--per-server streams, and `fanin load --workers K` with one worker per server (slot i goes to
worker i mod K and URL i mod K, so each worker talks to one server address and has that
address's whole ephemeral port range). Reports the client's RSS per stream (from the JSON
report), each server's RSS growth per stream (psutil), open streams, events/s and the
client's loop lag p99 after the warm-up, and when every stream was open (from the report's
per-second timeline). Writes benchmarks/results/scale_load.json (each run appended to its
`runs`, so three runs stay side by side).

    .venv/bin/python benchmarks/scale.py --load 100000 [--per-server 16667] [--seconds 30]
        [--open-timeout 60] [--http-client lean|aiohttp]"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import PYTHON, RESULTS, ROOT, machine, print_table, save_json, server_process  # noqa: E402

from fanin.cli import runloop  # noqa: E402

SIZES = (1, 10, 100, 1000, 10000)


# --------------------------------------------------------------------------- child: one size
async def measure(n: int, url: str, seconds: float, open_timeout: float) -> dict:
    import psutil

    from fanin.measure.metrics import Recorder
    from fanin.merge import FanIn
    from fanin.stream import Request, StreamConfig, StreamObserver

    class OpenCounter(StreamObserver):
        def __init__(self) -> None:
            self.opened = 0
            self.all_open = asyncio.Event()

        def on_connect(self, source: int, connect_ns: int) -> None:
            self.opened += 1
            if self.opened >= n:
                self.all_open.set()

    proc = psutil.Process(os.getpid())
    observer = OpenCounter()
    fan = FanIn([Request(url=url) for _ in range(n)], StreamConfig(connect_timeout=120), observer=observer)
    latency = Recorder()
    counted = {"events": 0, "measuring": False}
    rss_base = proc.memory_info().rss

    async def consume() -> None:
        loads, pending, now_ns = orjson.loads, latency.pending, time.time_ns
        async with contextlib.aclosing(fan.stream()) as items:
            async for item in items:
                if counted["measuring"] and getattr(item, "data", None) is not None:
                    counted["events"] += 1
                    pending.append((now_ns() - int(loads(item.data)["ts"] * 1e9)) // 1000)

    start = time.monotonic()
    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(observer.all_open.wait(), open_timeout)
    except TimeoutError:
        pass
    open_s = time.monotonic() - start
    # Let the events owed to early streams while later ones were opening drain first.
    await asyncio.sleep(max(2.0, open_s))
    rss_open = proc.memory_info().rss
    counted["measuring"] = True
    window_start = time.monotonic()
    await asyncio.sleep(seconds)
    counted["measuring"] = False
    window = time.monotonic() - window_start
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    lat = latency.summary_ms()
    return {
        "streams": n,
        "opened": observer.opened,
        "open_s": round(open_s, 3),
        "events_per_s": round(counted["events"] / window, 1),
        "rss_per_stream_kib": round((rss_open - rss_base) / n / 1024, 1),
        "rss_mib": round(rss_open / 2**20, 1),
        "latency_p50_ms": lat["p50"],
        "latency_p99_ms": lat["p99"],
        "latency_count": lat["count"],
    }


def child_main(opts: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = runloop.run(measure(opts.child, opts.url, opts.seconds, opts.open_timeout), streams=opts.child)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


# --------------------------------------------------------------------------- parent
def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["streams"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(sizes, [r["open_s"] for r in rows], "o-")
    axes[0].set_title("time until all open (s)")
    axes[1].plot(sizes, [r["rss_per_stream_kib"] for r in rows], "o-", color="#d9822b")
    axes[1].set_title("RSS per stream (KiB)")
    axes[2].plot(sizes, [r["latency_p50_ms"] for r in rows], "o-", label="p50")
    axes[2].plot(sizes, [r["latency_p99_ms"] for r in rows], "o-", label="p99")
    axes[2].set_title("added latency (ms)")
    axes[2].legend()
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("streams")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def load_main(opts: argparse.Namespace) -> int:
    """C100K: `fanin load` over several single-address servers (see the module docstring)."""
    import psutil

    from common import fanin_command

    total = opts.load
    servers = -(-total // opts.per_server)
    fanin = fanin_command()
    procs, urls = [], []
    port = 18900
    rate = opts.offered / total
    try:
        for i in range(servers):
            host = f"127.0.0.{i + 1}"
            procs.append(subprocess.Popen([*fanin, "serve", "--host", host, "--port", str(port), "--quiet"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT))
            urls.append(f"http://{host}:{port}/stream?count=0&rate={rate:g}&ts=1&size=64")
        time.sleep(3)
        base = [psutil.Process(p.pid).memory_info().rss for p in procs]
        report_path = RESULTS / "tmp" / "scale_load_report.json"
        report_path.parent.mkdir(parents=True, exist_ok=True)
        warmup = opts.open_timeout
        cmd = [*fanin, "load", *urls, "-c", str(total), "--workers", str(servers), "--warmup", f"{warmup:g}s",
               "-d", f"{warmup + opts.seconds:g}s", "--timeout", f"{warmup:g}s", "--latency-field", "ts", "--no-progress", "--json", str(report_path),
               "--http-client", opts.http_client]
        held: list[int] = []

        def server_rss() -> None:
            held[:] = [psutil.Process(p.pid).memory_info().rss for p in procs]

        client = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        deadline = time.monotonic() + warmup + opts.seconds + 300
        while client.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            if time.monotonic() > deadline - 300 - opts.seconds / 2:  # mid-window: every stream open
                server_rss()
        _, err = client.communicate(timeout=600)
        report = orjson.loads(report_path.read_bytes())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    active = report["connections"]["active_at_end"]
    all_open = next((r["t_s"] for r in report["timeline"] if r["active"] >= total), None)
    row = {
        "http_client": opts.http_client,
        "open_timeout_s": opts.open_timeout,
        "all_open_after_s": all_open,
        "streams": total,
        "servers": servers,
        "workers": report["client"]["workers"],
        "peak_active": report["connections"]["peak_active"],
        "active_at_end": active,
        "connections_failed": report["connections"]["failed"],
        "errors": report["errors"]["total"],
        "events_per_s": report["events"]["per_s"],
        "client_rss_per_stream_kib": report["client"]["rss_per_stream_kib"],
        "client_rss_mib": round(report["client"]["rss_bytes"] / 2**20, 1),
        "server_rss_per_stream_kib": round((sum(held) - sum(base)) / max(active, 1) / 1024, 2) if held else None,
        "server_rss_mib": round(sum(held) / 2**20, 1) if held else None,
        "client_lag_p99_ms": report["latency_ms"]["lag"]["p99"],
        "client_cpu_percent_max": report["client"]["cpu_percent_max"],
        "exit_status": client.returncode,
    }
    print(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode())
    row["command"] = "python benchmarks/scale.py " + " ".join(sys.argv[1:])
    row["machine"] = machine()
    previous = RESULTS / "scale_load.json"
    runs = orjson.loads(previous.read_bytes()).get("runs", []) if previous.exists() and opts.append else []
    payload = {"benchmark": "scale_load", "runs": [*runs, row]}
    save_json("scale_load", payload)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-streams", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window per size")
    ap.add_argument("--offered", type=float, default=10000.0, help="events/s offered in all, split over the streams")
    ap.add_argument("--open-timeout", type=float, default=120.0)
    ap.add_argument("--load", type=int, default=None, metavar="N",
                    help="C100K: hold N streams with fanin load over several servers instead")
    ap.add_argument("--per-server", type=int, default=16667, help="streams per server process and address (--load)")
    ap.add_argument("--http-client", choices=("lean", "aiohttp"), default="lean", help="fanin load's stream client (--load)")
    ap.add_argument("--append", action="store_true", help="add this run to scale_load.json's runs (--load)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        return child_main(opts)
    if opts.load:
        return load_main(opts)

    rows = []
    for n in (s for s in SIZES if s <= opts.max_streams):
        rate = opts.offered / n
        with server_process() as (base, _):
            url = f"{base}/stream?count=0&rate={rate:g}&ts=1&size=64"
            cmd = [PYTHON, __file__, "--child", str(n), "--url", url, "--seconds", str(opts.seconds),
                   "--open-timeout", str(opts.open_timeout)]
            proc = subprocess.run(cmd, capture_output=True, timeout=opts.open_timeout + opts.seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"{n} streams: {proc.stderr.decode(errors='replace').strip()[-400:]}")
        row = orjson.loads(proc.stdout.splitlines()[-1])
        row["rate_per_stream"] = round(rate, 3)
        rows.append(row)
        print(f"{n} streams: {row}", file=sys.stderr)

    print(f"\nFan-in scale, {opts.offered:g} events/s offered in all, {opts.seconds:g} s measured per size\n")
    print_table(
        ["streams", "events/s per stream", "all open after", "merged events/s", "RSS per stream", "latency p50", "latency p99"],
        [[f"{r['streams']:,}", f"{r['rate_per_stream']:g}", f"{r['open_s']:.2f} s", f"{r['events_per_s']:,.0f}",
          f"{r['rss_per_stream_kib']:.1f} KiB", f"{r['latency_p50_ms']} ms", f"{r['latency_p99_ms']} ms"] for r in rows],
    )
    payload = {
        "benchmark": "scale",
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "offered_events_per_s": opts.offered,
        "seconds": opts.seconds,
        "machine": machine(),
        "results": rows,
    }
    path = save_json("scale", payload)
    chart(rows, RESULTS / "scale.png")
    print(f"\nwrote {path.relative_to(ROOT)} and {(RESULTS / 'scale.png').relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
