"""`fanin load --mode requests`: its options, its plans (one per process), one run or a
sweep, and the report; `finish` writes it and decides the exit status.

The runner is `requests_mode.RequestRunner`; the sweep's steps and knee live in `sweep.py`,
its chart in `chart.py`; this module is the glue between them and the command line."""

from __future__ import annotations

import argparse
from typing import Any

from fanin.load.options import LoadOptions

__all__ = ["add_request_mode_arguments", "run_requests"]

ARRIVALS = ("constant", "poisson")


def add_request_mode_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "request mode (--mode requests: each request's stream read to its end and measured)")
    g.add_argument("-n", "--requests", type=int, default=None, metavar="N",
                   help="stop after N measured requests (with -d: whichever comes first)")
    g.add_argument("--request-rate", type=float, default=None, metavar="R",
                   help="open loop: start R requests per second (instead of -c closed-loop users)")
    g.add_argument("--arrival", choices=ARRIVALS, default=None,
                   help="open-loop spacing: constant or poisson (default constant)")
    g.add_argument("--seed", type=int, default=None, help="seed for --arrival poisson and --shuffle")
    g.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                   help="open loop: a request due while N are running is not started and counted (default 1000)")
    g.add_argument("--dataset", default=None, metavar="FILE.jsonl",
                   help="request bodies, one JSON object a line, or {\"body\":...,\"headers\":{...}}; cycled")
    g.add_argument("--shuffle", action="store_true", default=None, help="send the dataset in a seeded random order")
    g.add_argument("--extract", default=None, metavar="PATH",
                   help="an event is a token when PATH holds non-empty text: choices.0.delta.content, answer")
    g.add_argument("--usage-field", default=None, metavar="PATH",
                   help="the server's output-token count in the last events, e.g. usage.completion_tokens")
    g.add_argument("--stop-on", default=None, metavar="DATA",
                   help="end a request's stream at an event with this data, e.g. '[DONE]'")
    g.add_argument("--slo", action="append", default=[], metavar="EXPR",
                   help="per-request objective for goodput: ttft<500ms, tpot<50ms, e2e<5s, itl_p99<50ms (repeatable)")
    g.add_argument("--slo-attainment", default=None, metavar="PCT",
                   help="a sweep step meets the SLOs when this share of its requests does (default 90%%)")
    g.add_argument("--sweep", default=None, metavar="concurrency=1,2,4|rate=1,2,5",
                   help="run one step per load, each with its own --warmup, and find the knee")
    g.add_argument("--grace", default=None,
                   help="after the run, let running requests finish for this long (default 30s)")
    g.add_argument("--chart", default=None, metavar="FILE.png",
                   help="sweep chart (default: next to --json, same name, .png)")


# --------------------------------------------------------------------------- plans
def request_plans(options: LoadOptions, users: int | None, rate: float | None) -> list:
    """One RequestPlan per process for one load (closed loop: `users`; open loop: `rate`)."""
    from fanin.load.dataset import RequestSource
    from fanin.load.request_workers import worker_shares
    from fanin.load.requests_mode import RequestPlan

    items = list(options.dataset_items) if options.dataset_items else None
    bases = list(options.requests)
    config = options.stream_config()
    parts = worker_shares(options.process_count, users=users, rate=rate, limit=options.limit,
                          max_in_flight=options.in_flight_cap, seed=options.seed)
    return [RequestPlan(
        source=RequestSource(bases, items, shuffle=options.shuffle, seed=options.seed),
        config=config, arrival=options.arrival or "constant", duration=options.run_duration,
        warmup=options.warmup_s, grace=options.grace_s, extract=options.extract, usage=options.usage_field,
        slos=list(options.slos), latency_path=options.latency_field, latency_unit=options.latency_unit, **part,
    ) for part in parts]


def check_requests(options: LoadOptions) -> None:
    """Build (and so check) the request for every URL x dataset line before any load."""
    from fanin.load.dataset import RequestSource

    items = list(options.dataset_items) if options.dataset_items else None
    RequestSource(list(options.requests), items).validate()


# --------------------------------------------------------------------------- one run
def _settings(options: LoadOptions, users: int | None, rate: float | None, workers: int) -> dict:
    config = options.stream_config()
    return {
        "mode": "requests",
        "connections": users if users is not None else options.in_flight_cap,
        "users": users,
        "request_rate": rate,
        "arrival": (options.arrival or "constant") if rate is not None else None,
        "seed": options.seed,
        "max_in_flight": options.in_flight_cap if rate is not None else users,
        "requests": options.limit,
        "duration_s": options.run_duration,
        "warmup_s": options.warmup_s,
        "grace_s": options.grace_s,
        "workers": workers,
        "method": options.method,
        "dataset": options.dataset,
        "shuffle": options.shuffle,
        "extract": options.extract_text,
        "usage_field": options.usage_field_text,
        "stop_on": options.stop_on,
        "latency_field": options.latency_field_text,
        "slos": [s.expr for s in options.slos],
        "connect_timeout_s": config.connect_timeout,
        "idle_timeout_s": config.idle_timeout,
    }


def run_step(options: LoadOptions, users: int | None, rate: float | None) -> dict[str, Any]:
    """One request-mode run at one load; returns its full report, judged."""
    from fanin.load.display import Progress
    from fanin.load.finish import judge
    from fanin.load.pool import run_plans
    from fanin.measure.report import add_request_sections, build_report

    plans = request_plans(options, users, rate)
    duration = options.run_duration
    with Progress(options.progress, duration or 0, users or 0, requests=True) as display:
        result = run_plans(plans, progress=display.update, deadline_s=(duration or 3600) + options.grace_s + 60)
    metrics, workers = result.metrics, result.client["workers"]
    warnings = []
    if users is not None and metrics.peak_active < users:
        sampled = " (sampled every 100 ms across the worker processes)" if workers > 1 else ""
        noun = "user" if users == 1 else "users"
        warnings.append(f"only {metrics.peak_active:,} of the {users:,} {noun} had a request running at once"
                        f"{sampled}")
    if metrics.requests_not_started:
        n = metrics.requests_not_started
        warnings.append(f"{n:,} {'request was' if n == 1 else 'requests were'} due while --max-in-flight "
                        f"{options.in_flight_cap:,} were running and {'was' if n == 1 else 'were'} not started")
    if metrics.requests_interrupted:
        n = metrics.requests_interrupted
        why = ("when the run was interrupted" if result.stopped_by == "interrupt"
               else f"{options.grace_s:g} s after the run (raise --grace)")
        warnings.append(f"{n:,} {'request was' if n == 1 else 'requests were'} still running {why} and "
                        f"{'was' if n == 1 else 'were'} cancelled")
    if options.usage_field is not None and metrics.usage_missing:
        n = metrics.usage_missing
        warnings.append(f"{n:,} completed {'request' if n == 1 else 'requests'} carried no "
                        f"{options.usage_field_text}; {'its' if n == 1 else 'their'} tokens were counted from events")
    report = build_report(
        metrics, targets=[r.display_url for r in options.requests],
        settings=_settings(options, users, rate, workers), elapsed_s=result.elapsed,
        window=result.window.as_dict(), client=result.client, warnings=warnings,
    )
    add_request_sections(report, metrics, measured_s=result.elapsed - result.window.from_s,
                         slos=[s.expr for s in options.slos], usage_field=options.usage_field_text)
    return judge(report, result, options)


def run_requests(options: LoadOptions) -> int:
    """`fanin load --mode requests`: one run, or a sweep; returns the exit status."""
    from fanin.load.finish import finish

    check_requests(options)
    if options.sweep:
        from fanin.load.sweep import run_sweep

        return finish(run_sweep(options, run_step), options)
    users = None if options.request_rate is not None else options.users
    return finish(run_step(options, users, options.request_rate), options)
