"""`fanin load --mode requests`: options checked, plans built, one run or a sweep, the
report emitted and judged (thresholds; exit 0, 1, or 2 for bad usage via UsageError).

The runner is `requests_mode.RequestRunner`; the sweep's steps and knee live in `sweep.py`,
its chart in `chart.py`; this module is the glue between them and the command line."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from fanin.cli import runloop
from fanin.cli.durations import parse_duration
from fanin.errors import UsageError
from fanin.extract import parse_path

__all__ = ["add_request_mode_arguments", "run_requests"]

ARRIVALS = ("constant", "poisson")


def add_request_mode_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "request mode (--mode requests: each request's stream read to its end and measured)")
    g.add_argument("-n", "--requests", type=int, default=None, metavar="N",
                   help="stop after N measured requests (with -d: whichever comes first)")
    g.add_argument("--request-rate", type=float, default=None, metavar="R",
                   help="open loop: start R requests per second (instead of -c closed-loop users)")
    g.add_argument("--arrival", choices=ARRIVALS, default="constant",
                   help="open-loop spacing: constant or poisson (default constant)")
    g.add_argument("--seed", type=int, default=None, help="seed for --arrival poisson and --shuffle")
    g.add_argument("--max-in-flight", type=int, default=1000, metavar="N",
                   help="open loop: a request due while N are running is not started and counted (default 1000)")
    g.add_argument("--dataset", default=None, metavar="FILE.jsonl",
                   help="request bodies, one JSON object a line, or {\"body\":...,\"headers\":{...}}; cycled")
    g.add_argument("--shuffle", action="store_true", help="send the dataset in a seeded random order")
    g.add_argument("--extract", default=None, metavar="PATH",
                   help="an event is a token when PATH holds non-empty text: choices.0.delta.content, answer")
    g.add_argument("--usage-field", default=None, metavar="PATH",
                   help="the server's output-token count in the last events, e.g. usage.completion_tokens")
    g.add_argument("--stop-on", default=None, metavar="DATA",
                   help="end a request's stream at an event with this data, e.g. '[DONE]'")
    g.add_argument("--slo", action="append", default=[], metavar="EXPR",
                   help="per-request objective for goodput: ttft<500ms, tpot<50ms, e2e<5s, itl_p99<50ms (repeatable)")
    g.add_argument("--slo-attainment", default="90%", metavar="PCT",
                   help="a sweep step meets the SLOs when this share of its requests does (default 90%%)")
    g.add_argument("--sweep", default=None, metavar="concurrency=1,2,4|rate=1,2,5",
                   help="run one step per load, each with its own --warmup, and find the knee")
    g.add_argument("--grace", default="30s",
                   help="after the run, let running requests finish for this long (default 30s)")
    g.add_argument("--chart", default=None, metavar="FILE.png",
                   help="sweep chart (default: next to --json, same name, .png)")


# --------------------------------------------------------------------------- checking
def _percent(text: str, option: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{option}: bad share {text!r} (e.g. 90% or 0.9)") from None
    if not 0 < value <= 1:
        raise UsageError(f"{option}: must be more than 0% and at most 100%, got {text!r}")
    return value


def _path(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        return parse_path(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _check(args: argparse.Namespace) -> dict[str, Any]:
    """Every option checked, every request built, before any load starts."""
    from fanin.load.dataset import RequestSource, load_dataset
    from fanin.load.report import parse_threshold
    from fanin.load.slo import parse_slo
    from fanin.load.sweep import parse_sweep

    explicit_c = args.connections is not None
    if args.request_rate is not None and explicit_c and not args.sweep:
        raise UsageError("give -c (closed loop: concurrent users) or --request-rate (open loop), not both")
    if args.request_rate is not None and not args.request_rate > 0:
        raise UsageError("--request-rate must be a positive number of requests per second")
    if args.connections is not None and args.connections < 1:
        raise UsageError("-c/--connections must be at least 1")
    if args.requests is not None and args.requests < 1:
        raise UsageError("-n/--requests must be at least 1")
    if args.max_in_flight < 1:
        raise UsageError("--max-in-flight must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.retries != 3 or args.reconnect != "error":
        raise UsageError("--retries and --reconnect are for --mode streams: request mode sends each request "
                         "once and counts a failure as a failed request")
    if args.ramp_up not in ("0s", "0") or args.rate is not None:
        raise UsageError("--ramp-up and --rate are for --mode streams; use -c or --request-rate")
    duration = parse_duration(args.duration, option="--duration") if args.duration is not None else None
    if duration is None and args.requests is None:
        duration = 10.0
    if duration is not None and duration <= 0:
        raise UsageError("--duration must be more than 0")
    warmup = parse_duration(args.warmup, option="--warmup")
    if duration is not None and warmup >= duration:
        raise UsageError("--warmup must be shorter than --duration")
    extract = _path(args.extract, "--extract")
    usage = _path(args.usage_field, "--usage-field")
    latency_path = _path(args.latency_field, "--latency-field")
    slos = [parse_slo(expr) for expr in args.slo]
    thresholds = [parse_threshold(t) for t in args.threshold]
    sweep = parse_sweep(args.sweep) if args.sweep else None
    if sweep and sweep[0] == "concurrency" and args.request_rate is not None:
        raise UsageError("--sweep concurrency=... runs closed-loop steps; drop --request-rate")
    if sweep and sweep[0] == "rate" and explicit_c:
        raise UsageError("--sweep rate=... runs open-loop steps; drop -c")
    from fanin.cli.options import read_body
    from fanin.load.setup import build_config, build_requests

    if args.method.upper() == "GET" and (args.dataset or args.data is not None or args.json_body is not None):
        args.method = "POST"  # a request body means a POST unless -X says otherwise
    if getattr(args, "body_bytes", None) is None:  # (a --workers process gets it already read)
        args.body_bytes = read_body(args.data)
    args.data = None
    bases = build_requests(args)
    items = load_dataset(args.dataset) if args.dataset else None
    source_args = {"items": items, "shuffle": args.shuffle, "seed": args.seed}
    RequestSource(bases, **source_args).validate()
    config = build_config(args)
    config.reconnect, config.retries, config.stop_on = "never", 0, args.stop_on
    config.validate()
    return {
        "bases": bases, "source_args": source_args, "config": config, "duration": duration, "warmup": warmup,
        "extract": extract, "usage": usage, "latency_path": latency_path, "slos": slos,
        "thresholds": thresholds, "sweep": sweep,
        "grace": parse_duration(args.grace, option="--grace"),
        "attainment": _percent(args.slo_attainment, "--slo-attainment"),
    }


# --------------------------------------------------------------------------- one run
def _settings(args: argparse.Namespace, checked: dict[str, Any], users: int | None, rate: float | None) -> dict:
    return {
        "mode": "requests",
        "connections": users if users is not None else args.max_in_flight,
        "users": users,
        "request_rate": rate,
        "arrival": args.arrival if rate is not None else None,
        "seed": args.seed,
        "max_in_flight": args.max_in_flight if rate is not None else users,
        "requests": args.requests,
        "duration_s": checked["duration"],
        "warmup_s": checked["warmup"],
        "grace_s": checked["grace"],
        "workers": args.workers,
        "method": args.method.upper(),
        "dataset": args.dataset,
        "shuffle": args.shuffle,
        "extract": args.extract,
        "usage_field": args.usage_field,
        "stop_on": args.stop_on,
        "latency_field": args.latency_field,
        "slos": [s.expr for s in checked["slos"]],
        "connect_timeout_s": checked["config"].connect_timeout,
        "idle_timeout_s": checked["config"].idle_timeout,
    }


async def _run_plan(plan, progress) -> dict[str, Any]:
    from fanin.load.requests_mode import RequestRunner
    from fanin.load.setup import run_until_stopped

    return await run_until_stopped(RequestRunner(plan, progress))


def _plan(args: argparse.Namespace, checked: dict[str, Any], part: dict[str, Any]):
    from fanin.load.dataset import RequestSource
    from fanin.load.requests_mode import RequestPlan

    return RequestPlan(
        source=RequestSource(checked["bases"], **checked["source_args"]),
        config=checked["config"], arrival=args.arrival, duration=checked["duration"],
        warmup=checked["warmup"], grace=checked["grace"], extract=checked["extract"], usage=checked["usage"],
        slos=checked["slos"], latency_path=checked["latency_path"], latency_unit=args.latency_unit, **part,
    )


def plan_in_worker(args: argparse.Namespace, part: dict[str, Any]):
    """A --workers process's plan: everything checked and built again from the options (the
    body already read), then its share of the load."""
    return _plan(args, _check(args), part)


def run_step(args: argparse.Namespace, checked: dict[str, Any], users: int | None, rate: float | None,
             show_progress: bool) -> dict[str, Any]:
    """One request-mode run at one load; returns its full report (thresholds evaluated)."""
    from fanin.load.display import Progress
    from fanin.load.metrics import LoadMetrics
    from fanin.load.report import add_request_sections, build_report, evaluate_thresholds
    from fanin.load.request_workers import run_request_workers, worker_shares

    with Progress(show_progress, checked["duration"] or 0, users or 0, requests=True) as display:
        if args.workers > 1:
            parts = worker_shares(args.workers, users=users, rate=rate, limit=args.requests,
                                  max_in_flight=args.max_in_flight, seed=args.seed)
            ran = run_request_workers(functools.partial(plan_in_worker, args), parts, progress=display.update,
                                      deadline_s=(checked["duration"] or 3600) + checked["grace"] + 60)
            metrics, result = ran["metrics"], ran
        else:
            plan = _plan(args, checked, {"users": users, "rate": rate, "seed": args.seed,
                                         "max_in_flight": args.max_in_flight, "limit": args.requests})
            result = runloop.run(_run_plan(plan, display.update), streams=users or args.max_in_flight)
            metrics = LoadMetrics.merge([result["snapshot"]])
    warnings = []
    if users is not None and metrics.peak_active < users:
        sampled = " (sampled every 100 ms across the worker processes)" if result["client"]["workers"] > 1 else ""
        warnings.append(f"only {metrics.peak_active} of the {users} users had a request running at once{sampled}")
    if metrics.requests_not_started:
        warnings.append(f"{metrics.requests_not_started} requests were due while --max-in-flight "
                        f"{args.max_in_flight} were running and were not started")
    if metrics.requests_interrupted:
        warnings.append(f"{metrics.requests_interrupted} requests were still running {checked['grace']:g}s "
                        f"after the run and were cancelled (raise --grace)")
    if checked["usage"] is not None and metrics.usage_missing:
        warnings.append(f"{metrics.usage_missing} completed requests carried no {args.usage_field}; "
                        f"their tokens were counted from events")
    report = build_report(
        metrics, targets=[r.display_url for r in checked["bases"]], settings=_settings(args, checked, users, rate),
        elapsed_s=result["elapsed"], window=result["window"], client=result["client"], warnings=warnings,
    )
    report["settings"]["workers"] = result["client"]["workers"]
    add_request_sections(report, metrics, measured_s=result["elapsed"] - result["window"]["from_s"],
                         slos=[s.expr for s in checked["slos"]], usage_field=args.usage_field)
    report["thresholds"] = evaluate_thresholds(report, checked["thresholds"])
    client_errors = metrics.errors.get("client", 0)
    breached = [r for r in report["thresholds"] if not r["ok"]]
    report["passed"] = not breached and metrics.connections_opened > 0 and not client_errors
    return report


def run_requests(args: argparse.Namespace) -> int:
    """`fanin load --mode requests`: one run, or a sweep; returns the exit status."""
    from fanin.load.display import emit

    checked = _check(args)
    show = not args.no_progress and sys.stderr.isatty()
    if checked["sweep"]:
        from fanin.load.sweep import run_sweep

        return run_sweep(args, checked, show, run_step)
    users = None if args.request_rate is not None else (args.connections or 10)
    report = run_step(args, checked, users, args.request_rate, show)
    emit(args, report)
    from fanin.load.report import format_actual

    for r in report["thresholds"]:
        if not r["ok"]:
            print(f"fanin: error: threshold breached: {r['threshold']} (actual {format_actual(r)})", file=sys.stderr)
    examples = report["errors"]["examples"]
    if report["errors"]["by_kind"].get("client"):
        print(f"fanin: error: requests stopped on a client-side error ({examples.get('client')})",
              file=sys.stderr)
    if report["connections"]["opened"] == 0:
        example = next(iter(examples.values()), "no request was answered")
        print(f"fanin: error: no request got a stream ({example})", file=sys.stderr)
    return 0 if report["passed"] else 1
