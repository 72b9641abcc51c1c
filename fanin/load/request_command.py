"""`fanin load --mode requests`: its options, its plans (one per process), one run or a
sweep, and the report; `finish` writes it and decides the exit status.

The runner is `requests_mode.RequestRunner`; the sweep's steps and knee live in `sweep.py`,
its chart in `chart.py`; this module is the glue between them and the command line."""

from __future__ import annotations

import argparse
from typing import Any

from fanin.errors import UsageError
from fanin.load.options import LoadOptions

__all__ = ["add_request_mode_arguments", "parity_options", "run_requests"]

ARRIVALS = ("constant", "poisson", "gamma")
RAMP_STRATEGIES = ("linear", "exponential")


def add_request_mode_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "request mode (--mode requests: each request's stream read to its end and measured)")
    g.add_argument("-n", "--requests", type=int, default=None, metavar="N",
                   help="stop after N measured requests (with -d: whichever comes first)")
    g.add_argument("--request-rate", type=float, default=None, metavar="R",
                   help="open loop: start R requests per second (instead of -c closed-loop users)")
    g.add_argument("--arrival", choices=ARRIVALS, default=None,
                   help="open-loop spacing: constant, poisson or gamma (--burstiness) (default constant)")
    g.add_argument("--seed", type=int, default=None, help="seed for poisson and gamma arrivals, --shuffle and synthetic prompts")
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
    p = parser.add_argument_group(
        "request mode: APIs, synthetic prompts, arrivals, tokens")
    p.add_argument("--api", choices=("openai", "anthropic", "dify"), default=None,
                   help="the streaming API (default: told by the URL path, e.g. /v1/chat/completions, /v1/messages)")
    p.add_argument("--model", default=None, help="the model named in synthetic bodies (default fanin-test)")
    p.add_argument("--input-tokens", default=None, metavar="MEAN[,STDDEV]",
                   help="synthetic prompts of this many tokens (normal, seeded with --seed)")
    p.add_argument("--output-tokens", default=None, metavar="MEAN[,STDDEV]",
                   help="synthetic bodies ask for this many output tokens (max_tokens)")
    p.add_argument("--tokenizer", default=None, metavar="FILE",
                   help="count tokens with this local tokenizer.json (default: the server's usage, else chunks)")
    p.add_argument("--burstiness", type=float, default=None, metavar="B",
                   help="gamma arrivals of shape B with --request-rate (1 = Poisson; below 1 burstier)")
    p.add_argument("--ramp-strategy", choices=RAMP_STRATEGIES, default=None,
                   help="with --ramp-up and --request-rate: how the rate rises (default linear)")
    p.add_argument("--ramp-start-rate", type=float, default=None, metavar="R",
                   help="the rate at the start of --ramp-up (default a tenth of --request-rate)")
    p.add_argument("--max-concurrency", type=int, default=None, metavar="N",
                   help="with --request-rate: at most N requests run at once; due ones wait (client queue time)")
    p.add_argument("--percentiles", default=None, metavar="LIST",
                   help="percentiles to report, e.g. 50,90,99,99.9 (default 50,90,95,99)")
    p.add_argument("--csv", default=None, metavar="FILE", help="also write the report as CSV (one row per run or step)")


def _float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None


def parity_options(requests: tuple, requests_mode: bool, *, api: str | None, model: str | None,
                   input_tokens: str | None, output_tokens: str | None, tokenizer: str | None,
                   burstiness: float | None, ramp_strategy: str | None, ramp_start_rate: float | None,
                   max_concurrency: int | None, percentiles: str | None, csv: str | None, has_body: bool,
                   dataset: str | None, limit: int | None, seed: int | None, fields_named: bool) -> dict[str, Any]:
    """The LoadOptions fields of the request-mode parity options, from the command line's
    texts; in request mode the API is found (URL paths), the tokenizer file read and
    synthetic bodies built here, once."""
    from fanin.load.apis import api_for_urls
    from fanin.load.synthetic import (DEFAULT_INPUT, DEFAULT_MODEL, DEFAULT_OUTPUT, DEFAULT_PROMPTS, MAX_PROMPTS,
                                      parse_lengths, synthetic_items)
    from fanin.load.tokenizer import load_tokenizer

    chosen = None
    if percentiles is not None:
        parts = [t.strip() for t in percentiles.split(",") if t.strip()]
        if not parts:
            raise UsageError("--percentiles: give a list such as 50,90,99,99.9")
        chosen = tuple(sorted({_float(t.rstrip("%").lstrip("p"), "--percentiles") for t in parts}))
    inputs = parse_lengths(input_tokens, "--input-tokens")
    outputs = parse_lengths(output_tokens, "--output-tokens")
    fields: dict[str, Any] = dict(
        api=api, api_given=api is not None, model=model, input_tokens=inputs, output_tokens=outputs,
        tokenizer=tokenizer, burstiness=burstiness, ramp_strategy=ramp_strategy, ramp_start_rate=ramp_start_rate,
        max_concurrency=max_concurrency, percentiles=chosen, csv=csv,
    )
    if not requests_mode:
        return fields
    found = api_for_urls([r.url for r in requests], api, fields_named)
    fields["api"] = found
    counter = load_tokenizer(tokenizer)
    if inputs is None and outputs is None:
        return fields
    if has_body:
        raise UsageError("--input-tokens/--output-tokens build the bodies; drop --body/--json-body")
    if found is None or dataset:
        return fields  # refused by LoadOptions' check, with the reason
    inputs = inputs or DEFAULT_INPUT
    if outputs is None and found != "dify":
        outputs = DEFAULT_OUTPUT
    headers: tuple[tuple[str, str], ...] = ()
    if found == "anthropic" and not any(k.lower() == "anthropic-version" for k in requests[0].headers):
        headers = (("anthropic-version", "2023-06-01"),)
    count = min(limit or DEFAULT_PROMPTS, MAX_PROMPTS)
    fields.update(input_tokens=inputs, output_tokens=outputs, dataset_items=tuple(synthetic_items(
        found, model=model or DEFAULT_MODEL, input_tokens=inputs, output_tokens=outputs,
        count=count, seed=seed if seed is not None else 0, tokenizer=counter, headers=headers)))
    return fields


# --------------------------------------------------------------------------- plans
def request_plans(options: LoadOptions, users: int | None, rate: float | None) -> list:
    """One RequestPlan per process for one load (closed loop: `users`; open loop: `rate`)."""
    from fanin.load.dataset import RequestSource
    from fanin.load.request_workers import worker_shares
    from fanin.load.requests_mode import RequestPlan

    items = list(options.dataset_items) if options.dataset_items else None
    bases = list(options.requests)
    config = options.stream_config()
    from fanin.load.request_workers import shares

    parts = worker_shares(options.process_count, users=users, rate=rate, limit=options.limit,
                          max_in_flight=options.in_flight_cap, seed=options.seed)
    caps = shares(options.max_concurrency, len(parts)) if options.max_concurrency else [None] * len(parts)
    # --extract / --usage-field name the fields themselves: then no API reader is needed
    reader = None if options.extract is not None or options.usage_field is not None else options.api
    ramp = options.ramp_up if options.ramp_up and options.request_rate is not None else None
    plans = []
    for part, cap in zip(parts, caps):
        share = part["rate"] / rate if rate and part.get("rate") else 1.0
        plans.append(RequestPlan(
            source=RequestSource(bases, items, shuffle=options.shuffle, seed=options.seed),
            config=config, arrival=_arrival(options), duration=options.run_duration,
            warmup=options.warmup_s, grace=options.grace_s, extract=options.extract, usage=options.usage_field,
            slos=list(options.slos), latency_path=options.latency_field, latency_unit=options.latency_unit,
            api=reader, tokenizer=options.tokenizer, burstiness=options.burstiness or 1.0,
            ramp_up=ramp if rate is not None else None, ramp_strategy=options.ramp_strategy or "linear",
            ramp_start_rate=(options.ramp_start or 0) * share, user_ramp_up=options.ramp_up if users else None,
            max_concurrency=max(cap, 1) if cap is not None else None, **part,
        ))
    return plans


def _arrival(options: LoadOptions) -> str:
    if options.burstiness is not None:
        return "gamma"
    return options.arrival or "constant"


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
        "arrival": _arrival(options) if rate is not None else None,
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
        "api": options.api,
        "burstiness": (options.burstiness or 1.0) if _arrival(options) == "gamma" and rate is not None else None,
        "ramp_up_s": options.ramp_up,
        "ramp_strategy": (options.ramp_strategy or "linear") if options.ramp_start is not None else None,
        "ramp_start_rate": options.ramp_start if rate is not None else None,
        "max_concurrency": options.max_concurrency,
        "tokenizer": options.tokenizer,
        "percentiles": list(options.percentiles) if options.percentiles else None,
        "synthetic": {
            "model": options.model or "fanin-test",
            "input_tokens": options.input_tokens.as_dict() if options.input_tokens else None,
            "output_tokens": options.output_tokens.as_dict() if options.output_tokens else None,
            "prompts": len(options.dataset_items or ()),
            "seed": options.seed if options.seed is not None else 0,
        } if options.synthetic else None,
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
    from fanin.load.parity_report import add_parity_sections

    add_parity_sections(report, metrics, options, measured_s=result.elapsed - result.window.from_s)
    return judge(report, result, options)


def run_requests(options: LoadOptions) -> int:
    """`fanin load --mode requests`: one run, or a sweep; returns the exit status."""
    from fanin.load.finish import finish

    from fanin.load.parity_report import write_csv

    check_requests(options)
    if options.sweep:
        from fanin.load.sweep import run_sweep

        doc = run_sweep(options, run_step)
    else:
        users = None if options.request_rate is not None else options.users
        doc = run_step(options, users, options.request_rate)
    write_csv(doc, options.csv)
    return finish(doc, options)
