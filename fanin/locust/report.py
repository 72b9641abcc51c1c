"""fanin.locust's gevent side of the numbers: folding what the loop thread recorded into
Locust's stats in bulk, and fanin's own exact report at the end of a run (merged across
workers from their HDR snapshots, with --sse-json and --sse-threshold).

Locust keeps response times rounded to about two significant digits in milliseconds, and
one `events.request.fire` costs microseconds; fanin's histograms keep three significant
digits from 1 µs, and a whole second of events enters Locust's stats as one `extend`."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fanin.measure.metrics import HISTOGRAMS, LoadMetrics
from fanin.measure.report import HIST_LABELS, Threshold, build_report, evaluate_thresholds

__all__ = ["REQUEST_TYPE", "SSEFailure", "entry_name", "fire_records", "fold_samples", "merged_report",
           "print_report"]

REQUEST_TYPE = "SSE"  # Locust's "Type" column for every fanin entry


def entry_name(name: str, measure: str) -> str:
    """Locust's "Name" column: the user's name (or URL) and what the entry measures."""
    return f"{name} [{measure}]"


class SSEFailure(Exception):
    """A failed connect or a connection cut, as Locust lists it: '<kind>: <message>', the
    kind being fanin's error kind (refused, timeout, http_5xx, truncated, idle, ...)."""


def fire_records(environment, records: list[tuple[str, str, float, int, str | None]]) -> None:
    """Per-connection facts (a few per stream, never per event) as ordinary requests."""
    fire = environment.events.request.fire
    for measure, name, response_ms, length, failure in records:
        fire(request_type=REQUEST_TYPE, name=entry_name(name, measure), response_time=response_ms,
             response_length=length, exception=SSEFailure(failure) if failure else None, context={})


def fold_samples(environment, measure: str, name: str, samples: list[tuple[int, int]]) -> None:
    """Add one second of per-event samples ((µs, count) pairs) to the Locust entry of
    (name, measure) and to the total, in one step, as if each had been a request."""
    from locust.stats import StatsEntry, bucket_response_time

    stats = environment.stats
    label = entry_name(name, measure)
    delta = StatsEntry(stats, label, REQUEST_TYPE)
    response_times: dict[int, int] = {}
    total_ms = 0.0
    count = 0
    low = high = None
    for value_us, n in samples:
        ms = max(value_us, 0) / 1000
        key = bucket_response_time(ms)
        response_times[key] = response_times.get(key, 0) + n
        total_ms += ms * n
        count += n
        low = ms if low is None or ms < low else low
        high = ms if high is None or ms > high else high
    if not count:
        return
    now = time.time()
    delta.num_requests = count
    delta.total_response_time = total_ms
    delta.min_response_time = low
    delta.max_response_time = high
    delta.response_times = response_times
    delta.num_reqs_per_sec = {int(now): count}
    delta.last_request_timestamp = now
    delta.start_time = now
    stats.entries[(label, REQUEST_TYPE)].extend(delta)
    stats.total.extend(delta)


def merged_report(snapshots: dict[str, dict[str, dict[str, Any]]], *, elapsed_s: float, users: int,
                  thresholds: list[Threshold]) -> dict[str, Any]:
    """fanin's load report over every worker's snapshot ({worker: {name: snapshot}}):
    one LoadMetrics per stats name and one over all, histograms added exactly."""
    names = sorted({name for by_name in snapshots.values() for name in by_name})
    every = [snap for by_name in snapshots.values() for snap in by_name.values()]
    overall = LoadMetrics.merge(every)
    report = build_report(overall, targets=names, settings={"connections": users, "runner": "locust"},
                          elapsed_s=elapsed_s, client={"workers": max(len(snapshots), 1)}, warnings=[])
    report["type"] = "locust_sse_report"
    report["by_name"] = {}
    for name in names:
        one = LoadMetrics.merge([by_name[name] for by_name in snapshots.values() if name in by_name])
        one.flush()
        report["by_name"][name] = {
            "events": one.events,
            "connections_opened": one.connections_opened,
            "errors": dict(one.errors),
            "latency_ms": {hist: one.hist[hist].summary_ms() for hist in HISTOGRAMS},
        }
    report["workers"] = {worker: {"events": sum(s["counters"]["events"] for s in by_name.values()),
                                  "snapshot": by_name}
                         for worker, by_name in sorted(snapshots.items())}
    report["thresholds"] = evaluate_thresholds(report, thresholds)
    return report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """The exact figures, one row per stats name and measure, in milliseconds (3 decimals)."""
    console = console or Console(stderr=True)
    events = report["events"]
    conns = report["connections"]
    workers = report["client"]["workers"]
    table = Table(title=f"fanin.locust exact SSE figures ({workers} {'process' if workers == 1 else 'processes'}, "
                        f"{report['elapsed_s']:.1f} s)", show_edge=False)
    for column in ("name", "measure", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("name", "measure") else "right")
    rows = [(name, part["latency_ms"]) for name, part in report["by_name"].items()]
    if len(rows) > 1:
        rows.append(("(all)", report["latency_ms"]))
    for name, latency in rows:
        for hist in ("connect", "ttfe", "gap", "latency"):
            stats = latency[hist]
            if stats["count"]:
                table.add_row(name, HIST_LABELS[hist], f"{stats['count']:,}",
                              *(_ms(stats[k]) for k in ("p50", "p90", "p99", "max")))
    console.print(table)
    errors = ", ".join(f"{kind} {n:,}" for kind, n in report["errors"]["by_kind"].items()) or "none"
    console.print(f"events {events['total']:,} ({events['per_s']:,.1f}/s); connections opened "
                  f"{conns['opened']:,}, failed {conns['failed']:,}, cut {conns['stream_errors']:,}; "
                  f"errors: {errors}")
    for result in report["thresholds"]:
        mark, style = ("ok  ", "green") if result["ok"] else ("FAIL", "bold red")
        actual = "no data" if result["actual"] is None else f"{result['actual']:,.3f}"
        console.print(Text(f"{mark} {result['threshold']} (actual {actual})", style=style))
