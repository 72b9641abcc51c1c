"""The `fanin load` report: the JSON document, `--threshold` checks, the final table and the
live progress panel. Pure functions over `LoadMetrics` so workers and tests share them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError
from fanin.load.timeline import timeline_rows
from fanin.load.metrics import DELIVERY_HISTOGRAMS, HISTOGRAMS, REQUEST_HISTOGRAMS, LoadMetrics

__all__ = [
    "Threshold",
    "parse_threshold",
    "flat_metrics",
    "build_report",
    "evaluate_thresholds",
    "report_table",
    "progress_table",
    "add_request_sections",
    "request_progress_table",
    "format_actual",
    "SATURATION_LAG_MS",
    "SATURATION_CPU_PERCENT",
]

# The client is called saturated when its event loop runs this late (p99 of 100 ms ticks) or
# when one process used nearly a whole core: latencies then include the client's own queueing.
SATURATION_LAG_MS = 50.0
SATURATION_CPU_PERCENT = 90.0

HIST_LABELS = {
    "connect": "connect",
    "ttfe": "first event",
    "gap": "event gap",
    "latency": "e2e latency",
    "lag": "client lag",
    "ttft": "ttft (1st token)",
    "itl": "itl (token gap)",
    "tpot": "tpot",
    "e2e": "e2e (request)",
    "start_delay": "start delay",
}
_STATS = ("p50", "p90", "p95", "p99", "max", "mean")
_THRESHOLD = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|>=|==|!=|<|>)\s*(\S.*?)\s*$")
_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
COUNT_METRICS = (
    "events",
    "events_per_s",
    "bytes",
    "bytes_per_s",
    "connections_opened",
    "connections_failed",
    "stream_errors",
    "errors",
    "error_rate",
    "reconnects",
    "streams_completed",
    "streams_failed",
    "active_at_end",
    "peak_active",
    "rss_per_stream_kib",
    "cpu_us_per_event",
    # request mode (no data in streams mode: a threshold on them then fails, never passes silently)
    "requests_completed",
    "requests_failed",
    "not_started",
    "requests_per_s",
    "goodput",
    "goodput_per_s",
    "goodput_ratio",
    "tokens",
    "tokens_per_s",
    # delivery (--seq-ids / --seq-field; without them a threshold on these fails: no data)
    "lost",
    "duplicates",
    "reordered",
)
TIME_METRICS = tuple(f"{stat}_{name}" for name in (*HISTOGRAMS, *REQUEST_HISTOGRAMS, *DELIVERY_HISTOGRAMS)
                     for stat in _STATS)


@dataclass(frozen=True)
class Threshold:
    expr: str
    metric: str
    op: str
    value: float  # milliseconds for time metrics, a plain number otherwise


def parse_threshold(expr: str) -> Threshold:
    """'p99_ttfe<500ms' -> Threshold. Times take a unit (bare numbers are ms); rates may end in %."""
    match = _THRESHOLD.match(expr)
    if not match:
        raise UsageError(f"--threshold: cannot read {expr!r} (expected e.g. 'p99_ttfe<500ms')")
    metric, op, raw = match.groups()
    metric = metric.lower()
    if metric in TIME_METRICS:
        value = parse_duration(raw, option="--threshold", default_unit="ms") * 1000
    elif metric in COUNT_METRICS:
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise UsageError(f"--threshold: bad number {raw!r} in {expr!r}") from None
    else:
        raise UsageError(
            f"--threshold: unknown metric {metric!r}; a time is STATISTIC_METRIC (e.g. p99_ttfe), with "
            f"statistics {', '.join(_STATS)} and metrics "
            f"{', '.join((*HISTOGRAMS, *REQUEST_HISTOGRAMS, *DELIVERY_HISTOGRAMS))}; "
            f"or a count: {', '.join(COUNT_METRICS)}"
        )
    return Threshold(expr=expr.strip(), metric=metric, op=op, value=value)


# The unit each count metric is shown with (time metrics are milliseconds).
COUNT_UNITS = {
    "events_per_s": " events/s", "bytes": " B", "bytes_per_s": " B/s", "rss_per_stream_kib": " KiB",
    "cpu_us_per_event": " µs", "requests_per_s": " requests/s", "goodput_per_s": " requests/s",
    "tokens_per_s": " tokens/s",
}
SHARE_METRICS = ("error_rate", "goodput_ratio")


def format_actual(metric: str, value: float | None) -> str:
    """A measured value with its unit, as a threshold line shows it."""
    if value is None:
        return "no data"
    if metric in SHARE_METRICS:
        return f"{100 * value:.2f}".rstrip("0").rstrip(".") + "%"
    number = f"{value:,.3f}".rstrip("0").rstrip(".")
    if metric in TIME_METRICS:
        return number + " ms"
    return number + COUNT_UNITS.get(metric, "")


def flat_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """The names --threshold understands, from a built report."""
    flat: dict[str, float | None] = {}
    for name in (*HISTOGRAMS, *REQUEST_HISTOGRAMS):
        stats = report["latency_ms"].get(name, {})
        for stat in _STATS:
            flat[f"{stat}_{name}"] = stats.get(stat)
    conns, events = report["connections"], report["events"]
    flat.update(
        events=events["total"],
        events_per_s=events["per_s"],
        bytes=events["bytes"],
        bytes_per_s=events["bytes_per_s"],
        connections_opened=conns["opened"],
        connections_failed=conns["failed"],
        stream_errors=conns["stream_errors"],
        errors=report["errors"]["total"],
        error_rate=report["errors"]["rate"],
        reconnects=conns["reconnects"],
        streams_completed=conns["streams_completed"],
        streams_failed=conns["streams_failed"],
        active_at_end=conns["active_at_end"],
        peak_active=conns["peak_active"],
        rss_per_stream_kib=report["client"]["rss_per_stream_kib"],
        cpu_us_per_event=report["client"].get("cpu_us_per_event"),
    )
    delivery = report.get("delivery")
    if delivery is not None:
        flat.update(lost=delivery["lost"], duplicates=delivery["duplicates"], reordered=delivery["reordered"])
        for stat in _STATS:
            flat[f"{stat}_resume"] = delivery["resume_ms"].get(stat)
    requests, tokens = report.get("requests"), report.get("tokens")
    if requests is not None:
        flat.update(
            requests_completed=requests["completed"],
            requests_failed=requests["failed"],
            not_started=requests["not_started"],
            requests_per_s=requests["per_s"],
            goodput=requests["goodput"],
            goodput_per_s=requests["goodput_per_s"],
            goodput_ratio=requests["goodput_ratio"],
            tokens=tokens["total"],
            tokens_per_s=tokens["per_s"],
        )
    return flat


def evaluate_thresholds(report: dict[str, Any], thresholds: list[Threshold]) -> list[dict[str, Any]]:
    """One result per threshold; a metric with no samples counts as a breach (never a silent pass)."""
    flat = flat_metrics(report)
    results = []
    for t in thresholds:
        actual = flat.get(t.metric)
        ok = actual is not None and _OPS[t.op](actual, t.value)
        results.append(
            {"threshold": t.expr, "metric": t.metric, "actual": actual, "limit": t.value, "ok": bool(ok)}
        )
    return results


def build_report(
    metrics: LoadMetrics,
    *,
    targets: list[str],
    settings: dict[str, Any],
    elapsed_s: float,
    window: dict[str, Any] | None = None,
    client: dict[str, Any],
    warnings: list[str],
) -> dict[str, Any]:
    """The whole run as one JSON-ready dict (the --json document and the table's source)."""
    metrics.flush()
    window = window or {"from_s": 0.0, "events": metrics.events, "bytes": metrics.bytes}
    measured = max(elapsed_s - window["from_s"], 1e-9)  # rates cover the window after --warmup
    errors_total = sum(metrics.errors.values())
    attempts = metrics.connections_opened + metrics.connections_failed
    lag = metrics.hist["lag"].summary_ms()
    saturated_by = []
    if lag["p99"] is not None and lag["p99"] >= SATURATION_LAG_MS:
        saturated_by.append(f"event-loop lag p99 {lag['p99']:.0f} ms")
    if client.get("cpu_percent_max", 0) >= SATURATION_CPU_PERCENT:
        saturated_by.append(f"a client process used {client['cpu_percent_max']:.0f}% of a core")
    active_at_end = metrics.active
    cpu_seconds = client.get("cpu_seconds")
    per_event = cpu_seconds / window["events"] * 1e6 if cpu_seconds is not None and window["events"] else None
    client = {**client, "cpu_us_per_event": round(per_event, 2) if per_event is not None else None}
    rss_growth = client.get("rss_growth_bytes")
    per_stream = rss_growth / active_at_end if rss_growth is not None and active_at_end else None
    return {
        "type": "load_report",
        "targets": targets,
        "settings": settings,
        "elapsed_s": round(elapsed_s, 3),
        "connections": {
            "requested": settings["connections"],
            "peak_active": metrics.peak_active,
            "active_at_end": active_at_end,
            "opened": metrics.connections_opened,
            "failed": metrics.connections_failed,
            "stream_errors": metrics.stream_errors,
            "reconnects": metrics.reconnects,
            "streams_completed": metrics.streams_completed,
            "streams_failed": metrics.streams_failed,
        },
        "events": {
            "total": metrics.events,
            "bytes": metrics.bytes,
            "measured_from_s": window["from_s"],
            "measured": window["events"],
            "per_s": round(window["events"] / measured, 1),
            "bytes_per_s": round(window["bytes"] / measured, 1),
            "latency_missing": metrics.latency_missing,
            "latency_negative": metrics.latency_negative,
        },
        "latency_ms": {name: metrics.hist[name].summary_ms() for name in HISTOGRAMS},
        "errors": {
            "total": errors_total,
            "rate": round(errors_total / attempts, 6) if attempts else 0.0,
            "by_kind": dict(sorted(metrics.errors.items())),
            "examples": dict(sorted(metrics.error_examples.items())),
        },
        "client": {
            **client,
            "rss_per_stream_kib": round(per_stream / 1024, 2) if per_stream is not None else None,
            "saturated": bool(saturated_by),
            "saturated_by": saturated_by,
        },
        "warnings": warnings,
        "timeline": timeline_rows(metrics.timeline_snapshot()),
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}".rstrip("0").rstrip(".")


def report_table(report: dict[str, Any]) -> Table:
    """The final table: counts first, then one row per histogram with its percentiles."""
    conns, events, errors, client = report["connections"], report["events"], report["errors"], report["client"]
    summary = Table(title=f"fanin load: {report['elapsed_s']:.1f} s", show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    if "requests" in report:  # request mode: in flight, not held open
        settings = report["settings"]
        limit = (_plural(settings["users"], "user", "users") if settings.get("users")
                 else f"{settings['request_rate']:g}/s, at most {settings['max_in_flight']:,} in flight")
        summary.add_row(
            "connections",
            f"peak {conns['peak_active']:,} in flight ({limit}); streams opened {conns['opened']:,}, "
            f"failed to open {conns['failed']:,}, cut after opening {conns['stream_errors']:,}",
        )
    else:
        summary.add_row(
            "connections",
            f"{conns['active_at_end']:,} open at end / {conns['requested']:,} requested "
            f"(peak {conns['peak_active']:,}); opened {conns['opened']:,}, failed {conns['failed']:,}, "
            f"reconnects {conns['reconnects']:,}",
        )
        summary.add_row(
            "streams",
            f"completed {conns['streams_completed']:,}, failed {conns['streams_failed']:,}, "
            f"errors after open {conns['stream_errors']:,}",
        )
    summary.add_row(
        "events",
        f"{events['total']:,} ({_count(events['per_s'])}/s), "
        f"{events['bytes']:,} bytes ({_count(events['bytes_per_s'])} B/s)"
        + (
            f"; rates, gaps and latency measured after a {events['measured_from_s']:g} s warm-up"
            if events["measured_from_s"]
            else ""
        ),
    )
    requests = report.get("requests")
    if requests is not None:
        tokens = report["tokens"]
        summary.add_row(
            "requests",
            f"completed {requests['completed']:,} ({_count(requests['per_s'])}/s), failed {requests['failed']:,}, "
            f"not started {requests['not_started']:,}, interrupted {requests['interrupted']:,}"
            + (f", warm-up {requests['warmup']:,}" if requests["warmup"] else ""),
        )
        if requests["slos"]:
            summary.add_row(
                "goodput",
                f"{requests['goodput']:,} ({_count(requests['goodput_per_s'])}/s, "
                f"{100 * requests['goodput_ratio']:.1f}% of requests) met {' and '.join(requests['slos'])}",
            )
        summary.add_row("tokens", f"{tokens['total']:,} ({_count(tokens['per_s'])}/s; counted from {tokens['source']})")
    delivery = report.get("delivery")
    if delivery is not None:
        resume = delivery["resume_ms"]
        summary.add_row(
            "delivery",
            f"lost {delivery['lost']:,}, duplicates {delivery['duplicates']:,}, reordered {delivery['reordered']:,} "
            f"over {_plural(delivery['streams_tracked'], 'stream', 'streams')} numbered by {delivery['sequence']}"
            + (f"; resumed after a drop {_plural(resume['count'], 'time', 'times')}, p99 {_ms(resume['p99'])}"
               if resume["count"] else "")
            + (f"; {delivery['events_without_number']:,} events without a number"
               if delivery["events_without_number"] else ""),
        )
    by_kind = ", ".join(f"{k} {v:,}" for k, v in errors["by_kind"].items()) or "none"
    summary.add_row("errors", f"{errors['total']:,} ({by_kind})")
    rss = client.get("rss_per_stream_kib")
    summary.add_row(
        "client",
        f"{_plural(client.get('workers', 1), 'process', 'processes')}, cpu max {client.get('cpu_percent_max', 0):.0f}%, "
        f"rss {client.get('rss_bytes', 0) / 2**20:,.1f} MiB"
        + (f", {rss:.1f} KiB per stream" if rss is not None else "")
        + (f", {client['cpu_us_per_event']:.1f} µs CPU per event" if client.get("cpu_us_per_event") else "")
        + (" - SATURATED: " + "; ".join(client["saturated_by"]) if client["saturated"] else ""),
    )
    percentiles = Table(show_edge=False)
    percentiles.add_column("metric", no_wrap=True)
    for col in ("count", "p50", "p90", "p95", "p99", "max"):
        percentiles.add_column(col, justify="right")
    for name, stats in report["latency_ms"].items():
        if "requests" in report and not stats["count"] and name not in ("ttft", "itl", "tpot", "e2e"):
            continue  # request mode: leave out what it does not measure (gap, latency, ...)
        percentiles.add_row(
            HIST_LABELS[name],
            f"{stats['count']:,}",
            *(_ms(stats[k]) for k in ("p50", "p90", "p95", "p99", "max")),
        )
    outer = Table.grid()
    outer.add_row(summary)
    outer.add_row(percentiles)
    for warning in report["warnings"]:
        outer.add_row(Text(f"warning: {warning}", style="yellow"))
    for result in report.get("thresholds", []):
        mark, style = ("ok  ", "green") if result["ok"] else ("FAIL", "bold red")
        shown = format_actual(result["metric"], result["actual"])
        outer.add_row(Text(f"{mark} {result['threshold']} (actual {shown})", style=style))
    return outer


def progress_table(
    metrics: LoadMetrics, *, elapsed: float, duration: float, target: int, events_per_s: float
) -> Table:
    """The once-a-second live line: active streams, rates, p99s, errors, client lag."""
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("elapsed", "active", "events/s", "events", "p99 ttfe", "p99 gap", "p99 latency", "errors", "loop lag p99"):
        table.add_column(col, justify="right")
    errors = sum(metrics.errors.values())
    table.add_row(
        f"{elapsed:.0f}/{duration:.0f} s",
        f"{metrics.active:,}/{target:,}",
        f"{events_per_s:,.0f}",
        f"{metrics.events:,}",
        _ms(metrics.hist["ttfe"].percentile_ms(99)),
        _ms(metrics.hist["gap"].percentile_ms(99)),
        _ms(metrics.hist["latency"].percentile_ms(99)),
        Text(f"{errors:,}", style="red" if errors else ""),
        _ms(metrics.hist["lag"].percentile_ms(99)),
    )
    return table


def add_request_sections(
    report: dict[str, Any], metrics: LoadMetrics, *, measured_s: float, slos: list[str], usage_field: str | None
) -> dict[str, Any]:
    """Request mode: the `requests` and `tokens` sections, and ttft/itl/tpot/e2e (plus the
    open loop's start_delay) under `latency_ms`. Rates cover the time after the warm-up."""
    measured_s = max(measured_s, 1e-9)
    issued = (metrics.requests_completed + metrics.requests_failed + metrics.requests_not_started
              + metrics.requests_interrupted)
    report["requests"] = {
        "completed": metrics.requests_completed,
        "failed": metrics.requests_failed,
        "not_started": metrics.requests_not_started,
        "interrupted": metrics.requests_interrupted,
        "warmup": metrics.requests_warmup,
        "per_s": round(metrics.requests_completed / measured_s, 3),
        "goodput": metrics.goodput,
        "goodput_per_s": round(metrics.goodput / measured_s, 3),
        "goodput_ratio": round(metrics.goodput / issued, 4) if issued else 0.0,
        "slos": slos,
        "measured_s": round(measured_s, 3),
    }
    report["tokens"] = {
        "total": metrics.tokens,
        "per_s": round(metrics.tokens / measured_s, 1),
        "per_request_mean": round(metrics.tokens / metrics.requests_completed, 2) if metrics.requests_completed else None,
        "events_per_request_mean": round(metrics.events / (metrics.requests_completed + metrics.requests_failed), 2)
        if metrics.requests_completed + metrics.requests_failed else None,
        "source": f"usage field {usage_field}" if usage_field else "events",
        "usage_missing": metrics.usage_missing,
    }
    for name in REQUEST_HISTOGRAMS:
        report["latency_ms"][name] = metrics.hist[name].summary_ms()
    late = report["latency_ms"]["start_delay"]["p99"]
    if late is not None and late >= SATURATION_LAG_MS:  # the open loop could not keep its schedule
        client = report["client"]
        client["saturated_by"].append(f"open-loop requests started late: start delay p99 {late:.0f} ms")
        client["saturated"] = True
    return report


def request_progress_table(metrics: LoadMetrics, *, elapsed: float, duration: float | None) -> Table:
    """The once-a-second live line in request mode."""
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("elapsed", "in flight", "completed", "failed", "not started", "p99 ttft", "p99 itl", "p99 e2e",
                "loop lag p99"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{elapsed:.0f}/{duration:.0f} s" if duration else f"{elapsed:.0f} s",
        f"{metrics.active:,}",
        f"{metrics.requests_completed:,}",
        Text(f"{metrics.requests_failed:,}", style="red" if metrics.requests_failed else ""),
        f"{metrics.requests_not_started:,}",
        _ms(metrics.hist["ttft"].percentile_ms(99)),
        _ms(metrics.hist["itl"].percentile_ms(99)),
        _ms(metrics.hist["e2e"].percentile_ms(99)),
        _ms(metrics.hist["lag"].percentile_ms(99)),
    )
    return table
