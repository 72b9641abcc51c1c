"""`fanin load`'s tables: the final report (from the JSON document) and the live progress
line, drawn with rich."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from fanin.measure.metrics import LoadMetrics
from fanin.measure.report import HIST_LABELS, format_actual
from fanin.wording import plural

__all__ = ["report_table", "progress_table", "request_progress_table"]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}".rstrip("0").rstrip(".")


def _warmup(report: dict[str, Any]) -> float:
    """The warm-up as asked (the window starts at the first 100 ms tick after it)."""
    return report["settings"].get("warmup_s") or report["events"]["measured_from_s"]


def report_table(report: dict[str, Any]) -> Table:
    """The final table: counts first, then one row per histogram with its percentiles."""
    conns, events, errors, client = report["connections"], report["events"], report["errors"], report["client"]
    summary = Table(title=f"fanin load: {report['elapsed_s']:.1f} s", show_header=False, box=None,
                    title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    stopped = report.get("stopped_by")
    if stopped:
        duration = report["settings"].get("duration_s")
        of = f" of the {duration:g} s run" if duration else ""
        summary.add_row("stopped", f"interrupted by {report.get('signal') or 'a signal'} after "
                        f"{report['elapsed_s']:g} s{of}: not a pass" if stopped == "interrupt" else
                        f"early, after {report['elapsed_s']:g} s{of}: every attempt failed before a stream opened")
    if "requests" in report:  # request mode: in flight, not held open
        settings = report["settings"]
        limit = (plural(settings["users"], "user", thousands=True) if settings.get("users")
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
            f"; rates, gaps and latency measured after a {_warmup(report):g} s warm-up"
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
            f"over {plural(delivery['streams_tracked'], 'stream', thousands=True)} numbered by "
            f"{delivery['sequence']}"
            + (f"; resumed after a drop {plural(resume['count'], 'time', thousands=True)}, p99 {_ms(resume['p99'])}"
               if resume["count"] else "")
            + (f"; {delivery['events_without_number']:,} events without a number"
               if delivery["events_without_number"] else ""),
        )
    by_kind = ", ".join(f"{k} {v:,}" for k, v in errors["by_kind"].items()) or "none"
    summary.add_row("errors", f"{errors['total']:,} ({by_kind})")
    rss = client.get("rss_per_stream_kib")
    summary.add_row(
        "client",
        f"{plural(client.get('workers', 1), 'process', 'processes')}, cpu max {client.get('cpu_percent_max', 0):.0f}%, "
        f"rss {client.get('rss_bytes', 0) / 2**20:,.1f} MiB"
        + (f", {rss:.1f} KiB per stream" if rss is not None else "")
        + (f", {client['cpu_us_per_event']:.1f} µs CPU per event" if client.get("cpu_us_per_event") else "")
        + (" - SATURATED: " + "; ".join(client["saturated_by"]) if client["saturated"] else ""),
    )
    # a rule under the header only: the row fits 80 columns without cutting a value
    percentiles = Table(show_edge=False, box=box.SIMPLE_HEAD, pad_edge=False)
    percentiles.add_column("metric", no_wrap=True)
    shown = (*(report.get("percentiles") or ("p50", "p90", "p95", "p99")), "max")  # --percentiles
    for col in ("count", *shown):
        percentiles.add_column(col, justify="right", no_wrap=True)
    for name, stats in report["latency_ms"].items():
        if "requests" in report and not stats["count"] and name not in ("ttft", "itl", "tpot", "e2e"):
            continue  # request mode: leave out what it does not measure (gap, latency, ...)
        percentiles.add_row(
            HIST_LABELS[name],
            f"{stats['count']:,}",
            *(_ms(stats.get(k)) for k in shown),
        )
    outer = Table.grid()
    outer.add_row(summary)
    outer.add_row(percentiles)
    for warning in report["warnings"]:
        outer.add_row(Text(f"warning: {warning}", style="yellow"))
    for result in report.get("thresholds", []):
        mark, style = ("ok  ", "green") if result["ok"] else ("FAIL", "bold red")
        shown = format_actual(result)
        outer.add_row(Text(f"{mark} {result['threshold']} (actual {shown})", style=style))
    return outer


def fit_table(columns: list[tuple[str, int]], rows: list[list[str | Text]], width: int | None,
              **table: Any) -> Table:
    """A table whose cells are never cut: (header, priority) columns are left out, least
    important first (highest priority number), until the rest fit `width` columns."""
    kept = list(range(len(columns)))

    def need(indices: list[int]) -> int:
        return sum(max([len(columns[i][0])] + [len(str(row[i])) for row in rows]) for i in indices) \
            + (len(indices) - 1) * 2

    if width is not None:
        while len(kept) > 1 and need(kept) > width:
            kept.remove(max(kept, key=lambda i: (columns[i][1], i)))
    options = {"show_edge": False, "box": None, "padding": (0, 0, 0, 2), "pad_edge": False, **table}
    out = Table(**options)
    for i in kept:
        out.add_column(columns[i][0], justify="right", no_wrap=True)
    for row in rows:
        out.add_row(*(row[i] for i in kept))
    return out


def _fitted(columns: list[tuple[str, str | Text, int]], width: int | None) -> Table:
    """One header row and one value row (the live line), fitted to `width`."""
    return fit_table([(h, p) for h, _, p in columns], [[v for _, v, _ in columns]], width)


def progress_table(
    metrics: LoadMetrics, *, elapsed: float, duration: float, target: int, events_per_s: float,
    width: int | None = None,
) -> Table:
    """The once-a-second live line: active streams, rates, p99s, errors, client lag. On a
    narrow terminal the least important columns are left out rather than cut."""
    errors = sum(metrics.errors.values())
    latency = metrics.hist["latency"].percentile_ms(99)
    columns: list[tuple[str, str | Text, int]] = [
        ("elapsed", f"{elapsed:.0f}/{duration:.0f} s", 0),
        ("active", f"{metrics.active:,}/{target:,}", 0),
        ("events/s", f"{events_per_s:,.0f}", 1),
        ("events", f"{metrics.events:,}", 5),
        ("p99 ttfe", _ms(metrics.hist["ttfe"].percentile_ms(99)), 3),
        ("p99 gap", _ms(metrics.hist["gap"].percentile_ms(99)), 2),
    ]
    if latency is not None:  # only with --latency-field
        columns.append(("p99 latency", _ms(latency), 2))
    columns += [
        ("errors", Text(f"{errors:,}", style="red" if errors else ""), 1),
        ("p99 loop lag", _ms(metrics.hist["lag"].percentile_ms(99)), 4),
    ]
    return _fitted(columns, width)


def request_progress_table(metrics: LoadMetrics, *, elapsed: float, duration: float | None,
                           width: int | None = None) -> Table:
    """The once-a-second live line in request mode."""
    return _fitted([
        ("elapsed", f"{elapsed:.0f}/{duration:.0f} s" if duration else f"{elapsed:.0f} s", 0),
        ("in flight", f"{metrics.active:,}", 1),
        ("completed", f"{metrics.requests_completed:,}", 0),
        ("failed", Text(f"{metrics.requests_failed:,}", style="red" if metrics.requests_failed else ""), 0),
        ("not started", f"{metrics.requests_not_started:,}", 3),
        ("p99 ttft", _ms(metrics.hist["ttft"].percentile_ms(99)), 1),
        ("p99 itl", _ms(metrics.hist["itl"].percentile_ms(99)), 2),
        ("p99 e2e", _ms(metrics.hist["e2e"].percentile_ms(99)), 2),
        ("p99 loop lag", _ms(metrics.hist["lag"].percentile_ms(99)), 4),
    ], width)
