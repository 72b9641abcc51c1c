"""`--html FILE`: the run as one self-contained HTML page, drawn from the JSON report alone
(which stays the machine contract): charts over time (open streams or requests in flight,
events or tokens per second, latency percentiles, client loop lag, errors by kind), the
summary, the percentile table, delivery, thresholds, warnings and the settings.

The charts are inline SVG drawn here; the page has no script, no font, no stylesheet and no
image from anywhere else, so it reads the same offline and loads nothing over the network."""

from __future__ import annotations

import html
import math
from typing import Any

from fanin.wording import plural

__all__ = ["render_html", "write_html", "line_chart"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
PERCENTILE_STYLE = {"p50": "#1f77b4", "p90": "#ff7f0e", "p99": "#d62728"}
WIDTH, HEIGHT = 680, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 44

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666;margin:0 0 16px}.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #ddd;border-radius:4px}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}.warn{color:#9a6700}
.pass{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.empty{color:#888;font-style:italic}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * magnitude:
            return mult * magnitude
    return 10 * magnitude


def _tick_text(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def line_chart(title: str, y_label: str, series: list[tuple[str, list[tuple[float, float]], str]],
               x_label: str = "time since start (s)") -> str:
    """One chart: lines over a shared x axis, both axes with ticks and labelled with units."""
    points = [p for _, pts, _ in series for p in pts]
    if not points:
        return ""
    x_max = max(max(x for x, _ in points), 1.0)
    y_max = max(y for _, y in points)
    y_step = _nice_step(y_max if y_max > 0 else 1.0)
    y_top = y_step * max(math.ceil((y_max if y_max > 0 else 1.0) / y_step), 1)
    x_step = _nice_step(x_max, 6)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def sy(y: float) -> float:
        return TOP + plot_h * (1 - y / y_top)

    parts = [f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(title)}" data-title="{_e(title)}">',
             f'<text x="{LEFT}" y="20" font-size="14" font-weight="600">{_e(title)}</text>']
    y = 0.0
    while y <= y_top + y_step / 1000:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end" '
                     f'class="ytick">{_tick_text(y)}</text>')
        y += y_step
    x = 0.0
    while x <= x_max + x_step / 1000:
        parts.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
                     f'stroke="#888"/><text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" font-size="11" '
                     f'text-anchor="middle" class="xtick">{_tick_text(x)}</text>')
        x += x_step
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>')
    parts.append(f'<text class="xlabel" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" font-size="12" '
                 f'text-anchor="middle">{_e(x_label)}</text>')
    parts.append(f'<text class="ylabel" transform="translate(14 {TOP + plot_h / 2:.0f}) rotate(-90)" '
                 f'font-size="12" text-anchor="middle">{_e(y_label)}</text>')
    legend_x = WIDTH - RIGHT
    for name, pts, color in reversed(series):
        if not pts:
            continue
        coords = " ".join(f"{sx(px):.1f},{sy(py):.1f}" for px, py in pts)
        shape = (f'<polyline class="series" data-name="{_e(name)}" data-points="{len(pts)}" fill="none" '
                 f'stroke="{color}" stroke-width="1.8" points="{coords}"/>')
        if len(pts) == 1:  # one sample: a dot, or nothing would show
            px, py = pts[0]
            shape += f'<circle cx="{sx(px):.1f}" cy="{sy(py):.1f}" r="3" fill="{color}"/>'
        parts.append(shape)
        width = 22 + 7 * len(name)
        legend_x -= width
        parts.append(f'<rect x="{legend_x}" y="12" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 13}" y="21" font-size="11">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _percentile_chart(rows: list[dict], name: str, title: str) -> str:
    series = []
    for p, color in PERCENTILE_STYLE.items():
        pts = [(r["t_s"], r["ms"][name][p]) for r in rows if name in r.get("ms", {}) and p in r["ms"][name]]
        series.append((p, pts, color))
    return line_chart(title, "milliseconds (ms)", series)


def _charts(report: dict[str, Any]) -> list[str]:
    rows = report.get("timeline") or []
    if not rows:
        return []
    requests = "requests" in report
    charts = [line_chart("Requests in flight" if requests else "Open streams",
                         "requests" if requests else "streams",
                         [("in flight" if requests else "open", [(r["t_s"], r["active"]) for r in rows], COLORS[0])])]
    if requests:
        charts.append(line_chart("Tokens per second", "tokens/s",
                                 [("tokens/s", [(r["t_s"], r["tokens_per_s"]) for r in rows], COLORS[2])]))
        charts.append(line_chart("Completed requests per second", "requests/s",
                                 [("requests/s", [(r["t_s"], r["requests_per_s"]) for r in rows], COLORS[3])]))
        latencies = (("ttft", "Time to first token"), ("itl", "Inter-token latency"), ("e2e", "Request latency (e2e)"))
    else:
        charts.append(line_chart("Events per second", "events/s",
                                 [("events/s", [(r["t_s"], r["events_per_s"]) for r in rows], COLORS[2])]))
        latencies = (("latency", "End-to-end event latency"), ("gap", "Gap between events"),
                     ("ttfe", "Time to first event"))
    for name, title in (*latencies, ("lag", "Client event-loop lag")):
        if any(name in r.get("ms", {}) for r in rows):
            charts.append(_percentile_chart(rows, name, title))
    kinds = sorted({kind for r in rows for kind in r.get("errors", {})})
    if kinds:
        charts.append(line_chart("Errors per second by kind", "errors/s", [
            (kind, [(r["t_s"], r.get("errors", {}).get(kind, 0)) for r in rows], COLORS[(i + 1) % len(COLORS)])
            for i, kind in enumerate(kinds)]))
    else:
        charts.append('<p class="empty" id="no-errors">No errors during the run.</p>')
    return [c for c in charts if c]


def _table(rows: list[tuple[str, Any]], cls: str = "") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _summary(report: dict[str, Any]) -> str:
    conns, events, errors, client = report["connections"], report["events"], report["errors"], report["client"]
    rows = [
        ("elapsed", f"{report['elapsed_s']:g} s"),
        ("connections", f"requested {_fmt(conns.get('requested'))}, peak open {_fmt(conns['peak_active'])}, "
                        f"open at end {_fmt(conns['active_at_end'])}, opened {_fmt(conns['opened'])}, "
                        f"failed {_fmt(conns['failed'])}, reconnects {_fmt(conns['reconnects'])}"),
        ("events", f"{_fmt(events['total'])} ({_fmt(events['per_s'])} events/s), {_fmt(events['bytes'])} B "
                   f"({_fmt(events['bytes_per_s'])} B/s)"),
        ("errors", f"{_fmt(errors['total'])} (" + (", ".join(f"{k} {_fmt(v)}" for k, v in errors["by_kind"].items())
                                                   or "none") + ")"),
        ("client", f"{plural(int(client.get('workers') or 1), 'process', 'processes')}, CPU max {_fmt(client.get('cpu_percent_max'))}%, "
                   f"RSS {_fmt(round(client.get('rss_bytes', 0) / 2**20, 1))} MiB, "
                   f"{_fmt(client.get('rss_per_stream_kib'))} KiB per stream, "
                   f"{_fmt(client.get('cpu_us_per_event'))} µs CPU per event"
                   + ("; SATURATED: " + "; ".join(client["saturated_by"]) if client.get("saturated") else "")),
    ]
    requests, tokens = report.get("requests"), report.get("tokens")
    if requests is not None:
        rows.append(("requests", f"completed {_fmt(requests['completed'])} ({_fmt(requests['per_s'])}/s), failed "
                                 f"{_fmt(requests['failed'])}, not started {_fmt(requests['not_started'])}, goodput "
                                 f"{_fmt(requests['goodput'])}"))
        rows.append(("tokens", f"{_fmt(tokens['total'])} ({_fmt(tokens['per_s'])} tokens/s, from {tokens['source']})"))
    delivery = report.get("delivery")
    if delivery is not None:
        rows.append(("delivery", f"lost {_fmt(delivery['lost'])}, duplicates {_fmt(delivery['duplicates'])}, "
                                 f"reordered {_fmt(delivery['reordered'])} over {_fmt(delivery['streams_tracked'])} "
                                 f"streams numbered by {delivery['sequence']}; resume after a drop p99 "
                                 f"{_fmt(delivery['resume_ms'].get('p99'))} ms"))
    return _table(rows, "summary")


def _percentile_table(report: dict[str, Any]) -> str:
    from fanin.measure.report import HIST_LABELS

    head = "<tr><th>metric</th>" + "".join(f"<th>{c}</th>" for c in
                                          ("count", "p50 (ms)", "p90 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)",
                                           "mean (ms)")) + "</tr>"
    body = []
    for name, stats in report.get("latency_ms", {}).items():
        if not stats.get("count"):
            continue
        cells = "".join(f'<td class="n">{_fmt(stats.get(k))}</td>' for k in ("count", "p50", "p90", "p95", "p99",
                                                                              "max", "mean"))
        body.append(f"<tr><th>{_e(HIST_LABELS.get(name, name))}</th>{cells}</tr>")
    return f'<table class="percentiles">{head}{"".join(body)}</table>'


def _checks(report: dict[str, Any]) -> str:
    out = []
    for t in report.get("thresholds", []):
        cls, mark = ("ok", "ok") if t["ok"] else ("fail", "FAIL")
        out.append(f'<tr><td class="{cls}">{mark}</td><td>{_e(t["threshold"])}</td><td>actual '
                   f'{_e(_fmt(t["actual"]))}</td></tr>')
    warnings = "".join(f'<li class="warn">{_e(w)}</li>' for w in report.get("warnings", []))
    return ((f'<table class="thresholds">{"".join(out)}</table>' if out else "")
            + (f"<ul>{warnings}</ul>" if warnings else ""))


def _page(title: str, subtitle: str, passed: bool | None, sections: list[tuple[str, str]]) -> str:
    badge = ""
    if passed is not None:
        badge = (f' <span class="pass" id="verdict" style="background:{"#1a7f37" if passed else "#c62828"}">'
                 f'{"passed" if passed else "did not pass"}</span>')
    body = "".join(f"<h2>{_e(name)}</h2>{content}" for name, content in sections if content)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_e(title)}{badge}</h1><p class=\"sub\">{_e(subtitle)}</p>{body}</body></html>\n")


def render_html(doc: dict[str, Any]) -> str:
    """The page for a `fanin load` report (either mode), a Locust merged report, or a sweep."""
    if doc.get("type") == "load_sweep":
        return _sweep_page(doc)
    requests = "requests" in doc
    mode = "requests" if requests else ("locust" if doc.get("type") == "locust_sse_report" else "streams")
    targets = ", ".join(doc.get("targets", []))
    charts = _charts(doc)
    sections = [
        ("Over time", f'<div class="charts">{"".join(charts)}</div>' if charts
         else '<p class="empty">No samples over time (the run was shorter than a second).</p>'),
        ("Summary", _summary(doc)),
        ("Percentiles", _percentile_table(doc)),
        ("Checks and warnings", _checks(doc)),
        ("Settings", _table([("targets", targets), *((k, _fmt(v)) for k, v in doc.get("settings", {}).items())],
                            "settings")),
    ]
    return _page(f"fanin load ({mode} mode)", f"{targets}", doc.get("passed"), sections)


def _sweep_page(doc: dict[str, Any]) -> str:
    """A sweep: one row per step (each step's own JSON report is in the document)."""
    head = "<tr><th>step</th><th>load</th><th>requests/s</th><th>tokens/s</th><th>p99 ttft (ms)</th>" \
           "<th>p99 itl (ms)</th><th>failed</th><th>passed</th></tr>"
    rows = []
    for index, report in enumerate(doc.get("steps", [])):
        req, tok, lat = report.get("requests", {}), report.get("tokens", {}), report.get("latency_ms", {})
        rows.append(f"<tr><td>{index + 1}</td><td>{_e(_fmt(report['sweep']['load']))}</td>"
                    f"<td class=\"n\">{_fmt(req.get('per_s'))}</td><td class=\"n\">{_fmt(tok.get('per_s'))}</td>"
                    f"<td class=\"n\">{_fmt(lat.get('ttft', {}).get('p99'))}</td>"
                    f"<td class=\"n\">{_fmt(lat.get('itl', {}).get('p99'))}</td>"
                    f"<td class=\"n\">{_fmt(req.get('failed'))}</td><td>{_e(_fmt(report['sweep']['passed']))}</td></tr>")
    series = [("requests/s", [], COLORS[0])]
    for report in doc.get("steps", []):
        series[0][1].append((float(report["sweep"]["load"]), report.get("requests", {}).get("per_s") or 0.0))
    chart = line_chart("Throughput per step", "requests/s", series, x_label=f"{doc.get('parameter', 'load')}")
    return _page("fanin load sweep", f"over {doc.get('parameter')}", doc.get("passed"),
                 [("Steps", chart + f"<table>{head}{''.join(rows)}</table>")])


def write_html(doc: dict[str, Any], path: str) -> None:
    import sys

    from fanin.errors import FaninError

    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_html(doc))
    except OSError as exc:
        raise FaninError(f"cannot write {path}: {exc.strerror}") from None
    print(f"fanin: HTML report written to {path}", file=sys.stderr)
