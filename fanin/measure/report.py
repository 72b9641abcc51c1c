"""The load report every face builds the same way (`fanin load` in both modes, fanin.locust):
the JSON document, its `--threshold` checks and how a measured value is shown with its unit.
Pure functions over `LoadMetrics`; the faces draw their own tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError
from fanin.measure.metrics import DELIVERY_HISTOGRAMS, HISTOGRAMS, REQUEST_HISTOGRAMS, LoadMetrics, new_histogram
from fanin.measure.timeline import timeline_rows

__all__ = [
    "Threshold",
    "parse_threshold",
    "flat_metrics",
    "build_report",
    "evaluate_thresholds",
    "add_request_sections",
    "format_actual",
    "HIST_LABELS",
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
    "ttst": "ttst (2nd token)",
    "queue": "client queue",
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


_UNITS = {"events": "events", "events_per_s": "events/s", "bytes": "bytes", "bytes_per_s": "bytes/s",
          "rss_per_stream_kib": "KiB", "cpu_us_per_event": "µs", "requests_per_s": "requests/s",
          "goodput_per_s": "requests/s", "tokens": "tokens", "tokens_per_s": "tokens/s"}


def format_actual(result: dict[str, Any]) -> str:
    """A threshold result's measured value with its unit: '5.015 ms', '12 events', '2.5%'."""
    actual, metric = result["actual"], result["metric"]
    if actual is None:
        return "no data"
    if metric in ("error_rate", "goodput_ratio"):
        return f"{actual * 100:,.3f}".rstrip("0").rstrip(".") + "%"
    shown = f"{actual:,.3f}".rstrip("0").rstrip(".")
    if metric in TIME_METRICS:
        return shown + " ms"
    unit = _UNITS.get(metric) or metric.rpartition("_")[0] or metric  # connections_failed -> connections
    return f"{shown} {unit}"


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
        "timeline": timeline_rows(metrics.timeline_snapshot(), new_histogram()),
    }


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
