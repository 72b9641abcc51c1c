"""`fanin load URL [URL ...]`: load-test SSE servers with many concurrent streams
(`--mode streams`, the default), or with request-style calls measured one by one
(`--mode requests`, see request_command.py).

Opens -c streams spread over the URLs (optionally ramped up or rate-limited), holds them for
-d, and reports connections, time to first event, inter-event gaps, end-to-end latency (from a
send timestamp inside each event's JSON), events/s, bytes/s, reconnects and errors by kind,
with HDR-histogram percentiles. `--workers K` splits the slots over K processes and merges
their histograms exactly. `--threshold` turns the report into a CI check (exit 1 on breach).

Wiring: the CLI calls `add_load_arguments(subparser)` and `run_load(args)`. The argparse
Namespace ends here: `run_load` turns it into one frozen `LoadOptions` (options.py), checked
once, and every later step (plans, worker processes, reports, the exit) reads only that."""

from __future__ import annotations

import argparse
import sys

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError
from fanin.extract import parse_path

# rich, hdrhistogram (and psutil when present) are imported when a load test runs, so that
# building the `fanin` parser never needs them.

__all__ = ["add_load_arguments", "run_load"]

LATENCY_UNITS = ("auto", "s", "ms", "us", "ns")
HTTP_CLIENTS = ("lean", "aiohttp")  # streams mode (fanin/load/lean_http.py); lean is the default


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("urls", nargs="+", metavar="URL",
                        help="SSE endpoints; connections are spread over them; @FILE reads URLs from a file (@- stdin); "
                             "or: compare A.json B.json (what changed between two reports, with --threshold)")
    run = parser.add_argument_group("load")
    run.add_argument("--mode", choices=("streams", "requests"), default="streams",
                     help="streams: hold -c long-lived streams (default); requests: send requests whose "
                          "streams end, and measure each (TTFT, ITL, TPOT, goodput)")
    run.add_argument("-c", "--connections", type=int, default=None,
                     help="concurrent streams; in request mode, closed-loop users (default 10)")
    run.add_argument("-d", "--duration", default=None,
                     help="how long to run: 30s, 2m, 500ms (default 10s; request mode with -n: until done)")
    run.add_argument("--ramp-up", default=None, help="spread the opening of the connections over this time (default 0s); "
                          "request mode: start the users one by one, or raise --request-rate, over it")
    run.add_argument("--rate", type=float, default=None, help="open at most this many new connections per second")
    run.add_argument("--warmup", default=None,
                     help="leave the first part (e.g. the ramp-up) out of gaps, latency and rates (default 0s)")
    run.add_argument("--workers", type=int, default=None,
                     help="processes to run (use every core); histograms are merged (default 1)")
    from fanin.cli.options import (  # the same options and parsing as `fanin stream`
        add_reconnect_arguments,
        add_request_arguments,
    )

    req = add_request_arguments(parser, body_flags=("--body",), json_flag="--json-body")
    req.add_argument("--timeout", default=None, help="connect timeout (default 30s)")
    req.add_argument("--idle-timeout", default=None, help="reconnect a stream silent for this long")
    req.add_argument("--http-client", choices=HTTP_CLIENTS, default=None,
                     help="streams mode: lean (default: about half the memory per stream and faster opening) "
                          "or aiohttp (the engine's own client, as `fanin stream` uses)")
    add_reconnect_arguments(req)  # worded as in `fanin stream` (streams mode only)
    parser.set_defaults(retries=None, reconnect=None)  # None = not given: request mode refuses them
    out = parser.add_argument_group("measurement and output")
    out.add_argument("--latency-field", default=None, metavar="PATH", help="send timestamp in each event's JSON data")
    out.add_argument("--latency-unit", choices=LATENCY_UNITS, default="auto", help="its unit (auto: by magnitude)")
    out.add_argument("--seq-ids", action="store_true",
                     help="event ids are sequence numbers: count lost, duplicate and reordered events, and the "
                          "time to resume after a drop (streams mode)")
    out.add_argument("--seq-field", default=None, metavar="PATH",
                     help="like --seq-ids, with the number at this path in each event's JSON data")
    out.add_argument("--json", default=None, metavar="FILE", help="write the whole report as JSON ('-' for stdout)")
    out.add_argument("--html", default=None, metavar="FILE",
                     help="also write the run as one self-contained HTML page (charts over time, tables)")
    out.add_argument("--threshold", action="append", default=[], metavar="EXPR", help="e.g. 'p99_ttfe<500ms' (repeatable)")
    out.add_argument("--no-progress", action="store_true", help="no live display (also off when stderr is not a TTY)")
    from fanin.load.request_command import add_request_mode_arguments

    add_request_mode_arguments(parser)


# --------------------------------------------------------------------------- options
def _duration(text: str | None, option: str) -> float | None:
    return None if text is None else parse_duration(text, option=option)


def _path(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        return parse_path(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _percent(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{option}: bad share {text!r} (e.g. 90% or 0.9)") from None
    if not 0 < value <= 1:
        raise UsageError(f"{option}: must be more than 0% and at most 100%, got {text!r}")
    return value


def _requests(args: argparse.Namespace, method: str) -> tuple:
    """One validated Request per URL, built exactly as `fanin stream` builds them; the body
    (a file, or stdin) is read here, once."""
    import orjson

    from fanin.cli.options import read_body, requests_from_args

    if args.json_body is not None:
        try:
            orjson.loads(args.json_body)
        except orjson.JSONDecodeError:
            raise UsageError("--json-body is not valid JSON") from None
        if args.data is not None:
            raise UsageError("give either --body or --json-body, not both")
    body = read_body(args.data)
    requests = requests_from_args(argparse.Namespace(**{**vars(args), "data": None, "method": method}))
    for request in requests:
        if body is not None:
            request.body = body
        request.validate()
    return tuple(requests)


def options_from_args(args: argparse.Namespace):
    """The Namespace, typed and checked once (UsageError: one line, exit 2)."""
    from fanin.load.dataset import load_dataset
    from fanin.load.options import LoadOptions
    from fanin.measure.report import parse_threshold
    from fanin.load.slo import parse_slo
    from fanin.load.sweep import parse_sweep

    from fanin.cli.options import request_method

    requests_mode = args.mode == "requests"
    # the one rule of `fanin stream` and `fanin load` (main applies it too; it is idempotent)
    synthetic = getattr(args, "input_tokens", None) is not None or getattr(args, "output_tokens", None) is not None
    method = request_method(args.method, has_body=args.data is not None or args.json_body is not None
                            or bool(args.dataset) or synthetic)
    sweep = parse_sweep(args.sweep) if args.sweep else None
    from fanin.load.request_command import parity_options

    requests = _requests(args, method)
    fields = dict(
        mode=args.mode,
        requests=requests,
        method=method,
        connections=args.connections,
        duration=_duration(args.duration, "--duration"),
        ramp_up=_duration(args.ramp_up, "--ramp-up"),
        rate=args.rate,
        warmup=_duration(args.warmup, "--warmup"),
        workers=args.workers,
        connect_timeout=_duration(args.timeout, "--timeout"),
        idle_timeout=_duration(args.idle_timeout, "--idle-timeout"),
        retries=args.retries,
        reconnect=args.reconnect,
        latency_field=_path(args.latency_field, "--latency-field"),
        latency_field_text=args.latency_field,
        latency_unit=args.latency_unit,
        seq_ids=args.seq_ids,
        seq_field=_path(args.seq_field, "--seq-field"),
        seq_field_text=args.seq_field,
        http_client=args.http_client,
        json=args.json,
        html=args.html,
        thresholds=tuple(parse_threshold(t) for t in args.threshold),
        progress=not args.no_progress and sys.stderr.isatty(),
        limit=args.requests,
        request_rate=args.request_rate,
        arrival=args.arrival,
        seed=args.seed,
        max_in_flight=args.max_in_flight,
        dataset=args.dataset,
        dataset_items=tuple(load_dataset(args.dataset)) if args.dataset and requests_mode else None,
        shuffle=args.shuffle or False,
        extract=_path(args.extract, "--extract"),
        extract_text=args.extract,
        usage_field=_path(args.usage_field, "--usage-field"),
        usage_field_text=args.usage_field,
        stop_on=args.stop_on,
        slos=tuple(parse_slo(expr) for expr in args.slo),
        slo_attainment=_percent(args.slo_attainment, "--slo-attainment"),
        sweep=(sweep[0], tuple(sweep[1])) if sweep else None,
        grace=_duration(args.grace, "--grace"),
        chart=args.chart,
    )
    fields.update(parity_options(
        requests, requests_mode, api=args.api, model=args.model, input_tokens=args.input_tokens,
        output_tokens=args.output_tokens, tokenizer=args.tokenizer, burstiness=args.burstiness,
        ramp_strategy=args.ramp_strategy, ramp_start_rate=args.ramp_start_rate,
        max_concurrency=args.max_concurrency, percentiles=args.percentiles, csv=args.csv,
        has_body=args.data is not None or args.json_body is not None, dataset=args.dataset, limit=args.requests,
        seed=args.seed, fields_named=args.extract is not None or args.usage_field is not None))
    return LoadOptions(**fields)


def run_load(args: argparse.Namespace) -> int:
    """Run the load test; 0 passed, 1 a threshold breached or nothing could connect, 130/143
    interrupted. Bad usage raises UsageError, which `fanin`'s main turns into one line, exit 2.
    `fanin load compare A.json B.json` compares two reports instead (compare.py)."""
    if args.urls and args.urls[0] == "compare":
        from fanin.load.compare import run_compare

        parser = argparse.ArgumentParser(add_help=False)
        add_load_arguments(parser)
        defaults = vars(parser.parse_args(["compare"]))
        # any option but the reports, --threshold and --json is refused rather than ignored
        # (main fills in the method: GET unless -X named another)
        ignored = {"urls", "threshold", "json", "no_progress"}
        given = sorted(k for k, v in vars(args).items() if k in defaults and k not in ignored and v != defaults[k]
                       and not (k == "method" and v in (None, "GET")))
        return run_compare(args.urls[1:], thresholds=list(args.threshold), json_path=args.json,
                           other_options=["--" + k.replace("_", "-") for k in given])
    options = options_from_args(args)
    if options.mode == "requests":
        from fanin.load.request_command import run_requests

        return run_requests(options)
    from fanin.load.streams_command import run_streams

    return run_streams(options)
