"""`fanin load URL [URL ...]`: load-test SSE servers with many concurrent streams
(`--mode streams`, the default), or with request-style calls measured one by one
(`--mode requests`, see request_command.py).

Opens -c streams spread over the URLs (optionally ramped up or rate-limited), holds them for
-d, and reports connections, time to first event, inter-event gaps, end-to-end latency (from a
send timestamp inside each event's JSON), events/s, bytes/s, reconnects and errors by kind,
with HDR-histogram percentiles. `--workers K` splits the slots over K processes and merges
their histograms exactly. `--threshold` turns the report into a CI check (exit 1 on breach).

Wiring: the CLI calls `add_load_arguments(subparser)` and `run_load(args)`."""

from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import resource
import signal
import sys
import time
from typing import Any

from fanin.cli import runloop
from fanin.cli.durations import parse_duration
from fanin.errors import FaninError, UsageError
from fanin.extract import parse_path
from fanin.load.display import Progress, emit
from fanin.load.setup import build_config, build_requests, run_until_stopped
from fanin.wording import plural

# rich, hdrhistogram (and psutil when present) are imported when a load test runs, so that
# building the `fanin` parser never needs them.

__all__ = ["add_load_arguments", "run_load"]

FD_RESERVE = 64  # files a process needs besides its sockets (stdio, event loop, imports)
LATENCY_UNITS = ("auto", "s", "ms", "us", "ns")


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", nargs="+", metavar="URL",
                        help="SSE endpoints; connections are spread over them; @FILE reads URLs from a file (@- stdin)")
    run = parser.add_argument_group("load")
    run.add_argument("--mode", choices=("streams", "requests"), default="streams",
                     help="streams: hold -c long-lived streams (default); requests: send requests whose "
                          "streams end, and measure each (TTFT, ITL, TPOT, goodput)")
    run.add_argument("-c", "--connections", type=int, default=None,
                     help="concurrent streams; in request mode, closed-loop users (default 10)")
    run.add_argument("-d", "--duration", default=None,
                     help="how long to run: 30s, 2m, 500ms (default 10s; request mode with -n: until done)")
    run.add_argument("--ramp-up", default="0s", help="spread the opening of the connections over this time")
    run.add_argument("--rate", type=float, default=None, help="open at most this many new connections per second")
    run.add_argument("--warmup", default="0s", help="leave the first part (e.g. the ramp-up) out of gaps, latency and rates")
    run.add_argument("--workers", type=int, default=1, help="processes to run (use every core); histograms are merged")
    from fanin.cli.options import (  # the same options and parsing as `fanin stream`
        add_reconnect_arguments,
        add_request_arguments,
    )

    req = add_request_arguments(parser, body_flags=("--body",), json_flag="--json-body")
    req.add_argument("--timeout", default="30s", help="connect timeout (default 30s)")
    req.add_argument("--idle-timeout", default=None, help="reconnect a stream silent for this long")
    add_reconnect_arguments(req)  # worded and defaulted as in `fanin stream`
    out = parser.add_argument_group("measurement and output")
    out.add_argument("--latency-field", default=None, metavar="PATH", help="send timestamp in each event's JSON data")
    out.add_argument("--latency-unit", choices=LATENCY_UNITS, default="auto", help="its unit (auto: by magnitude)")
    out.add_argument("--json", default=None, metavar="FILE", help="write the whole report as JSON ('-' for stdout)")
    out.add_argument("--threshold", action="append", default=[], metavar="EXPR", help="e.g. 'p99_ttfe<500ms' (repeatable)")
    out.add_argument("--no-progress", action="store_true", help="no live display (also off when stderr is not a TTY)")
    from fanin.load.request_command import add_request_mode_arguments

    add_request_mode_arguments(parser)


# --------------------------------------------------------------------------- options
def _start_offsets(total: int, ramp_up: float, rate: float | None) -> list[float]:
    """When each global slot opens: evenly over the ramp-up, and no faster than --rate."""
    step = ramp_up / total if ramp_up > 0 else 0.0
    if rate:
        step = max(step, 1.0 / rate)
    return [i * step for i in range(total)]


def _raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit toward `needed` (up to the hard limit); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def _check_reachable(connections: int, workers: int, urls: list[str]) -> list[str]:
    """Fail fast when -c cannot be reached; return warnings about limits that may bite."""
    per_process = -(-connections // workers)
    needed = per_process + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard if hard != resource.RLIM_INFINITY else 1 << 30
    if needed > ceiling:
        most = max(0, ceiling - FD_RESERVE) * workers
        raise UsageError(
            f"-c {connections} cannot be reached: each process needs about {needed} open files but the hard "
            f"limit is {ceiling} (at most ~{most} connections with --workers {workers}); raise it "
            f"(ulimit -Hn) or add --workers"
        )
    warnings = []
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        ports = high - low + 1
        per_target = -(-connections // len(urls))
        if per_target > ports:
            warnings.append(
                f"{per_target} connections per URL exceed the {ports} local ports available per "
                f"server address; connections beyond that will fail"
            )
    except (OSError, ValueError):
        pass
    return warnings


def _settings(args: argparse.Namespace, duration: float, ramp_up: float) -> dict[str, Any]:
    return {
        "connections": args.connections,
        "duration_s": duration,
        "ramp_up_s": ramp_up,
        "rate": args.rate,
        "workers": args.workers,
        "method": args.method.upper(),
        "reconnect": args.reconnect,
        "retries": args.retries,
        "connect_timeout_s": parse_duration(args.timeout, option="--timeout"),
        "idle_timeout_s": parse_duration(args.idle_timeout, option="--idle-timeout") if args.idle_timeout else None,
        "latency_field": args.latency_field,
        "latency_unit": args.latency_unit,
        "warmup_s": parse_duration(args.warmup, option="--warmup"),
    }


def _refuse_request_options(args: argparse.Namespace) -> None:
    """Request-mode options given without --mode requests: say so rather than ignore them."""
    given = [flag for flag, value in (
        ("-n/--requests", args.requests), ("--request-rate", args.request_rate), ("--dataset", args.dataset),
        ("--extract", args.extract), ("--usage-field", args.usage_field), ("--sweep", args.sweep),
        ("--slo", args.slo), ("--stop-on", args.stop_on), ("--chart", args.chart),
    ) if value]
    if given:
        raise UsageError(f"{', '.join(given)} need --mode requests")


# --------------------------------------------------------------------------- running
def _plan(args: argparse.Namespace, slots: list[int], offsets: list[float], duration: float):
    from fanin.load.runner import LoadPlan

    return LoadPlan(
        requests=build_requests(args),
        config=build_config(args),
        slots=slots,
        start_offsets=[offsets[s] for s in slots],
        total_slots=args.connections,
        duration=duration,
        latency_path=parse_path(args.latency_field) if args.latency_field else None,
        latency_unit=args.latency_unit,
        warmup=parse_duration(args.warmup, option="--warmup"),
    )


async def _run_plan(plan, progress) -> dict[str, Any]:
    from fanin.load.runner import LoadRunner

    return await run_until_stopped(LoadRunner(plan, progress))


def _worker_main(args: argparse.Namespace, index: int, offsets: list[float], duration: float, channel) -> None:
    """Entry point of one --workers process: run its slots, stream snapshots to the parent."""
    try:
        _raise_fd_limit(-(-args.connections // args.workers) + FD_RESERVE)
        slots = list(range(index, args.connections, args.workers))
        plan = _plan(args, slots, offsets, duration)

        def progress(metrics, elapsed: float) -> None:
            channel.put(("progress", index, metrics.snapshot()))

        result = runloop.run(_run_plan(plan, progress), streams=len(slots))
        channel.put(("final", index, result))
    except BaseException as exc:  # report, never a traceback
        channel.put(("crash", index, f"{exc.__class__.__name__}: {exc}"))


def _merge_windows(results: list[dict]) -> dict[str, Any]:
    return {
        "from_s": max(r["window"]["from_s"] for r in results),
        "events": sum(r["window"]["events"] for r in results),
        "bytes": sum(r["window"]["bytes"] for r in results),
    }


def _run_single(args, offsets, duration, display: Progress) -> tuple[Any, dict, float, dict]:
    from fanin.load.metrics import LoadMetrics

    plan = _plan(args, list(range(args.connections)), offsets, duration)
    result = runloop.run(_run_plan(plan, display.update), streams=args.connections)
    return LoadMetrics.merge([result["snapshot"]]), result["client"], result["elapsed"], result["window"]


def _run_workers(args, offsets, duration, display: Progress) -> tuple[Any, dict, float, dict]:
    from fanin.load.metrics import LoadMetrics, merge_clients

    ctx = multiprocessing.get_context("spawn")
    channel = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(args, i, offsets, duration, channel), daemon=True)
        for i in range(args.workers)
    ]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the workers stop themselves and report
    try:
        for proc in procs:
            proc.start()
        latest: dict[int, dict] = {}
        finals: dict[int, dict] = {}
        started = time.monotonic()
        deadline = started + duration + 60 + args.connections / 500
        while len(finals) < len(procs):
            try:
                kind, index, payload = channel.get(timeout=1.0)
            except queue_module.Empty:
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise FaninError(f"{plural(len(procs) - len(finals), 'load worker')} stopped without a report") from None
                continue
            if kind == "crash":
                raise FaninError(f"load worker {index} failed: {payload}")
            if kind == "final":
                finals[index] = payload
            else:
                latest[index] = payload
                if len(latest) == len(procs):
                    display.update(LoadMetrics.merge(list(latest.values())), time.monotonic() - started)
    finally:
        signal.signal(signal.SIGINT, previous)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    results = [finals[i] for i in sorted(finals)]
    metrics = LoadMetrics.merge([r["snapshot"] for r in results])
    client = merge_clients([r["client"] for r in results])
    return metrics, client, max(r["elapsed"] for r in results), _merge_windows(results)


def run_load(args: argparse.Namespace) -> int:
    """Run the load test; 0 ok, 1 a threshold breached or nothing could connect. Bad
    usage raises UsageError, which `fanin`'s main turns into one line and exit 2."""
    from fanin.load.report import build_report, evaluate_thresholds, format_actual, parse_threshold

    if args.mode == "requests":
        from fanin.load.request_command import run_requests

        return run_requests(args)
    _refuse_request_options(args)
    if args.connections is None:
        args.connections = 10
    if args.duration is None:
        args.duration = "10s"
    duration = parse_duration(args.duration, option="--duration")
    ramp_up = parse_duration(args.ramp_up, option="--ramp-up")
    if duration <= 0:
        raise UsageError("--duration must be more than 0")
    if parse_duration(args.warmup, option="--warmup") >= duration:
        raise UsageError("--warmup must be shorter than --duration")
    if args.connections < 1:
        raise UsageError("-c/--connections must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.rate is not None and args.rate <= 0:
        raise UsageError("--rate must be a positive number of connections per second")
    args.workers = min(args.workers, args.connections)
    thresholds = [parse_threshold(t) for t in args.threshold]
    if args.latency_field:
        try:
            parse_path(args.latency_field)
        except ValueError as exc:
            raise UsageError(f"--latency-field: {exc}") from None
    from fanin.cli.options import read_body

    args.body_bytes, args.data = read_body(args.data), None
    requests = build_requests(args)  # validate before starting anything
    build_config(args)
    warnings = _check_reachable(args.connections, args.workers, args.urls)
    limit = _raise_fd_limit(-(-args.connections // args.workers) + FD_RESERVE)
    offsets = _start_offsets(args.connections, ramp_up, args.rate)
    if offsets and offsets[-1] >= duration:
        warnings.append(
            f"--ramp-up/--rate open the last connection at {offsets[-1]:.1f}s, after the {duration:g}s run ends"
        )

    show = not args.no_progress and sys.stderr.isatty()
    with Progress(show, duration, args.connections) as display:
        runner = _run_workers if args.workers > 1 else _run_single
        metrics, client, elapsed, window = runner(args, offsets, duration, display)
    client["nofile_limit"] = limit
    if metrics.peak_active < args.connections:
        sampled = " (sampled every 100 ms across the worker processes)" if args.workers > 1 else ""
        warnings.append(
            f"only {metrics.peak_active} of the {args.connections} requested connections were open at once{sampled}"
        )
    report = build_report(
        metrics,
        targets=[r.display_url for r in requests],  # masked by the engine's secrets boundary
        settings=_settings(args, duration, ramp_up),
        elapsed_s=elapsed,
        window=window,
        client=client,
        warnings=warnings,
    )
    results = evaluate_thresholds(report, thresholds)
    report["thresholds"] = results
    breached = [r for r in results if not r["ok"]]
    nothing_connected = metrics.connections_opened == 0
    client_errors = metrics.errors.get("client", 0)
    report["passed"] = not breached and not nothing_connected and not client_errors
    emit(args, report)
    for r in breached:
        print(f"fanin: error: threshold breached: {r['threshold']} (actual {format_actual(r)})", file=sys.stderr)
    if client_errors:
        print(f"fanin: error: {plural(client_errors, 'stream')} stopped on a client-side error "
              f"({report['errors']['examples'].get('client')})", file=sys.stderr)
    if nothing_connected:
        example = next(iter(report["errors"]["examples"].values()), "no connection opened")
        print(f"fanin: error: no connection could be opened ({example})", file=sys.stderr)
    return 0 if report["passed"] else 1
