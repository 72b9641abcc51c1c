"""`fanin load compare A.json B.json`: what changed from run A (the baseline) to run B, and a
verdict a CI job can gate on (exit 1 when a threshold is breached).

Thresholds (`--threshold`, repeatable) judge B against A or on its own:
- a relative change: `p99_ttft<+10%` (B at most 10 % above A), `tokens_per_s>-5%`;
- an absolute change: `p99_itl<+2ms`, `errors<=+0`;
- an absolute bound on B: `p99_ttft<500ms`, `error_rate<1%`.

Metrics are `--threshold`'s (STAT_METRIC such as p99_ttft, or counts such as requests_per_s),
any percentile a report holds (`p99.9_ttft` with `--percentiles`) and per-user speed
(`p50_user_tps`). A metric missing from either report breaches its threshold: a gate never
passes on no data. Output is plain text that fits 80 columns; `--json FILE` writes it too."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError

__all__ = ["CompareThreshold", "parse_compare_threshold", "metric_value", "compare_reports", "render",
           "run_compare", "print_compare_help"]

_EXPR = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|<|>)\s*(\S.*?)\s*$")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_STAT = re.compile(r"^(p\d+(?:\.\d+)?|mean|max)_(.+)$")
HIGHER_IS_BETTER = frozenset({
    "requests_per_s", "tokens_per_s", "goodput", "goodput_per_s", "goodput_ratio", "requests_completed",
    "events_per_s", "bytes_per_s", "connections_opened", "streams_completed", "tokens", "events", "peak_active",
})
REQUEST_ROWS = ("p50_ttft", "p99_ttft", "p50_itl", "p99_itl", "p50_tpot", "p99_tpot", "p50_e2e", "p99_e2e",
                "p50_ttst", "p50_user_tps", "requests_per_s", "tokens_per_s", "goodput_ratio", "requests_failed",
                "error_rate")
STREAM_ROWS = ("p50_connect", "p99_connect", "p50_ttfe", "p99_ttfe", "p50_gap", "p99_gap", "p50_latency",
               "p99_latency", "events_per_s", "connections_failed", "reconnects", "errors", "error_rate")
SHARES = frozenset({"error_rate", "goodput_ratio"})
WIDTH = 80


@dataclass(frozen=True)
class CompareThreshold:
    expr: str
    metric: str
    op: str
    kind: str  # relative (percent change) | change (B - A) | bound (B itself)
    value: float  # percent, or ms for times, or a plain number


def is_time(metric: str) -> bool:
    match = _STAT.match(metric)
    return bool(match) and match.group(2) != "user_tps"


def parse_compare_threshold(expr: str) -> CompareThreshold:
    match = _EXPR.match(expr)
    if not match:
        raise UsageError(f"--threshold: cannot read {expr!r} (expected e.g. 'p99_ttft<+10%', "
                         f"'p99_itl<+2ms' or 'error_rate<1%')")
    metric, op, raw = match.groups()
    metric = metric.lower()
    signed = raw[0] in "+-"
    try:
        if signed and raw.endswith("%"):
            return CompareThreshold(expr.strip(), metric, op, "relative", float(raw[:-1]))
        if is_time(metric):
            value = round(parse_duration(raw.lstrip("+-"), option="--threshold", default_unit="ms") * 1000, 9)
            value = -value if raw.startswith("-") else value
        elif raw.endswith("%"):
            value = float(raw[:-1]) / 100
        else:
            value = float(raw)
    except ValueError:
        raise UsageError(f"--threshold: bad value {raw!r} in {expr!r}") from None
    return CompareThreshold(expr.strip(), metric, op, "change" if signed else "bound", value)


def metric_value(report: dict[str, Any], metric: str) -> float | None:
    """A metric of one report by its threshold name (None when the report has no such value)."""
    match = _STAT.match(metric)
    if match:
        stat, name = match.groups()
        if name == "user_tps":
            stats = (report.get("tokens") or {}).get("per_user_per_s") or {}
        else:
            stats = (report.get("latency_ms") or {}).get(name) or {}
        value = stats.get(stat)
        return float(value) if isinstance(value, (int, float)) else None
    from fanin.measure.report import flat_metrics

    try:
        flat = flat_metrics(report)
    except (KeyError, TypeError):
        return None
    value = flat.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _change(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    """(B - A, percent change), None where undefined."""
    if a is None or b is None:
        return None, None
    if a == 0:
        return b - a, 0.0 if b == 0 else math.copysign(math.inf, b)
    return b - a, (b - a) / abs(a) * 100


def _judge(t: CompareThreshold, a: float | None, b: float | None) -> tuple[bool, float | None]:
    delta, percent = _change(a, b)
    actual = {"relative": percent, "change": delta, "bound": b}[t.kind]
    return (actual is not None and _OPS[t.op](actual, t.value)), actual


def compare_reports(a: dict[str, Any], b: dict[str, Any], thresholds: list[CompareThreshold]) -> dict[str, Any]:
    """The comparison document: one row per metric shown, one result per threshold."""
    requests = "requests" in a or "requests" in b
    names = list(REQUEST_ROWS if requests else STREAM_ROWS)
    for extra in (*(a.get("percentiles") or ()), *(b.get("percentiles") or ())):
        for hist in ("ttft", "itl") if requests else ("ttfe", "gap"):
            name = f"{extra}_{hist}"
            if name not in names and extra not in ("p50", "p90", "p95", "p99"):
                names.append(name)
    names.extend(t.metric for t in thresholds if t.metric not in names)
    rows = []
    for name in names:
        va, vb = metric_value(a, name), metric_value(b, name)
        if va is None and vb is None and name not in {t.metric for t in thresholds}:
            continue
        delta, percent = _change(va, vb)
        better = None
        if delta:
            better = (delta > 0) == (name in HIGHER_IS_BETTER or name.endswith("_user_tps"))
        rows.append({"metric": name, "a": va, "b": vb, "change": delta, "change_percent": percent,
                     "better": better})
    results = []
    for t in thresholds:
        va, vb = metric_value(a, t.metric), metric_value(b, t.metric)
        ok, actual = _judge(t, va, vb)
        results.append({"threshold": t.expr, "metric": t.metric, "kind": t.kind, "actual": actual,
                        "limit": t.value, "ok": ok})
    return {"type": "load_compare", "rows": rows, "thresholds": results,
            "passed": all(r["ok"] for r in results),
            "a_passed": a.get("passed"), "b_passed": b.get("passed")}


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if is_time(metric):
        return f"{value / 1000:.2f} s" if abs(value) >= 1000 else f"{value:.2f} ms"
    if metric in SHARES:
        return f"{100 * value:.2f}%"
    if abs(value) >= 1000 or (value == int(value) and not metric.endswith(("_per_s", "_tps"))):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _signed(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    text = _value(metric, abs(value))
    return ("+" if value > 0 else "-" if value < 0 else "") + text


def _actual(t: dict[str, Any]) -> str:
    actual = t["actual"]
    if actual is None:
        return "no data"
    if t["kind"] == "relative":
        return "no change" if actual == 0 else f"{actual:+.1f}%" if math.isfinite(actual) else "from 0"
    if t["kind"] == "change":
        return _signed(t["metric"], actual)
    return _value(t["metric"], actual)


def render(doc: dict[str, Any], a_name: str, b_name: str) -> str:
    """The comparison as plain text lines of at most 80 columns."""
    lines = [f"fanin load compare: A = {a_name}", f"                    B = {b_name}", ""]
    lines.append(f"{'metric':<18}{'A':>12}{'B':>12}  {'change':<26}")
    for row in doc["rows"]:
        metric = row["metric"]
        change = _signed(metric, row["change"])
        if row["change_percent"] is not None and row["change"]:
            pct = row["change_percent"]
            change += f" ({pct:+.1f}%)" if math.isfinite(pct) else " (from 0)"
        mark = "" if row["better"] is None else "better" if row["better"] else "worse"
        lines.append(f"{metric[:18]:<18}{_value(metric, row['a']):>12}{_value(metric, row['b']):>12}  "
                     f"{change:<26}{mark}".rstrip())
    for label, key in (("A", "a_passed"), ("B", "b_passed")):
        if doc.get(key) is False:
            lines.append(f"note: run {label} did not pass its own thresholds or checks")
    if doc["thresholds"]:
        lines.append("")
        for t in doc["thresholds"]:
            lines.append(f"{'ok  ' if t['ok'] else 'FAIL'} {t['threshold']} (actual {_actual(t)})"[:WIDTH])
        failed = sum(not t["ok"] for t in doc["thresholds"])
        total = len(doc["thresholds"])
        lines.append("")
        lines.append(f"verdict: regression: {failed} of {total} thresholds breached" if failed
                     else f"verdict: no regression: {total} of {total} thresholds held")
    else:
        lines.append("")
        lines.append("verdict: no thresholds given, nothing judged (e.g. --threshold 'p99_ttft<+10%')")
    return "\n".join(line[:WIDTH].rstrip() for line in lines) + "\n"


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = orjson.loads(f.read())
    except OSError as exc:
        raise UsageError(f"compare: cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise UsageError(f"compare: {path} is not JSON (write it with fanin load --json FILE)") from None
    if not isinstance(doc, dict) or doc.get("type") != "load_report":
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise UsageError(f"compare: {path} is not a fanin load report (type {kind!r}; a sweep's steps are "
                         f"reports: compare one step's with another's)")
    return doc


def run_compare(files: list[str], *, thresholds: list[str], json_path: str | None,
                other_options: list[str]) -> int:
    """`fanin load compare A.json B.json [--threshold EXPR ...] [--json FILE]`: 0 no regression,
    1 a threshold breached, 2 bad usage (`other_options`: any other option given, refused
    rather than ignored)."""
    from fanin.load.finish import write_json

    if other_options:
        raise UsageError(f"fanin load compare takes two reports, --threshold and --json; not "
                         f"{', '.join(other_options)}")
    if len(files) != 2:
        raise UsageError(f"fanin load compare takes two report files (A, the baseline, then B), got {len(files)}")
    parsed = [parse_compare_threshold(t) for t in thresholds]
    a, b = _read(files[0]), _read(files[1])
    doc = compare_reports(a, b, parsed)
    doc.update(a=files[0], b=files[1])
    if json_path and json_path != "-":
        from fanin.load.options import check_output_path

        check_output_path(json_path)
    write_json(doc, json_path)
    out = sys.stderr if json_path == "-" else sys.stdout
    out.write(render(doc, files[0], files[1]))
    out.flush()
    return 0 if doc["passed"] else 1


def _fill(text: str, width: int = 78) -> str:
    """The docstring's paragraphs and `- ` items re-wrapped to `width` (help fits 80 columns)."""
    import textwrap

    blocks: list[str] = []
    for line in text.replace("`", "").splitlines():
        if line.startswith("- ") or not blocks or not line.strip() or not blocks[-1].strip():
            blocks.append(line)
        else:
            blocks[-1] += " " + line.strip()
    return "\n".join(textwrap.fill(b, width, subsequent_indent="  " if b.startswith("- ") else "") if b.strip() else ""
                     for b in blocks)


def print_compare_help() -> None:
    """`fanin load compare --help`: its own usage (its arguments are parsed by `fanin load`'s)."""
    import argparse

    head, _, rest = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(
        prog="fanin load compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_fill(head),
        epilog=_fill(rest) + "\n\nExit status: 0 no threshold breached, 1 one was, 2 bad usage.")
    parser.add_argument("reports", nargs=2, metavar="REPORT", help="two `fanin load --json` reports: A (the baseline), then B")
    parser.add_argument("--threshold", action="append", metavar="EXPR",
                        help="e.g. 'p99_ttft<+10%%', 'errors<=+0', 'p99_ttft<500ms' (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the comparison as JSON ('-' for stdout)")
    parser.print_help()
