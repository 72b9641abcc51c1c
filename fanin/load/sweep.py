"""`--sweep concurrency=1,2,4,8` or `--sweep rate=1,2,5`: one request-mode run per load, each
with its own warm-up, and the knee: the highest load of the leading run of steps that met the
objectives (a step meets them when at least --slo-attainment of its requests met every --slo
and every --threshold held). Writes one JSON document holding each step's full report under
`steps`, prints a table per step and a summary, and draws the chart (chart.py)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Callable

from fanin.errors import UsageError
from fanin.load.result import INTERRUPT

if TYPE_CHECKING:
    from fanin.load.options import LoadOptions

__all__ = ["parse_sweep", "step_passed", "find_knee", "run_sweep", "sweep_table", "sweep_verdict"]

PARAMETERS = {"concurrency": "concurrency (users)", "rate": "request rate (requests/s)"}


def parse_sweep(text: str) -> tuple[str, list[float]]:
    name, sep, values = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in PARAMETERS:
        raise UsageError(f"--sweep: cannot read {text!r} (expected concurrency=1,2,4 or rate=1,2,5)")
    loads: list[float] = []
    for raw in values.split(","):
        raw = raw.strip()
        try:
            value = int(raw) if name == "concurrency" else float(raw)
        except ValueError:
            kind = "whole number" if name == "concurrency" else "number"
            raise UsageError(f"--sweep: {raw!r} is not a {kind} in {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise UsageError(f"--sweep: every {name} must be more than 0, got {raw!r}")
        loads.append(value)
    if sorted(set(loads)) != loads:
        raise UsageError(f"--sweep: give the {name} values in increasing order, without repeats")
    return name, loads


def step_passed(report: dict[str, Any], attainment: float) -> bool:
    """A step meets the objectives: enough requests met every SLO, and every threshold held."""
    requests = report["requests"]
    if report["requests"]["slos"] and requests["goodput_ratio"] < attainment:
        return False
    if requests["completed"] == 0:
        return False
    return all(r["ok"] for r in report["thresholds"])


def find_knee(passed: list[bool]) -> int | None:
    """The last step of the leading run of passing steps (None when the first step failed)."""
    knee = None
    for index, ok in enumerate(passed):
        if not ok:
            break
        knee = index
    return knee


def sweep_table(doc: dict[str, Any], width: int | None = None):
    """The summary: one row per step, the knee marked; columns that do not fit `width` are
    left out (least important first), never cut."""
    from fanin.load.tables import _count, _ms, fit_table

    columns = [("load", 0), ("req/s", 0), ("tok/s", 3), ("good/s", 1), ("ttft p50", 4), ("ttft p99", 1),
               ("itl p99", 2), ("e2e p99", 2), ("failed", 1), ("not run", 3), ("met", 0)]
    rows = []
    for index, step in enumerate(doc["steps"]):
        r, lat = step["requests"], step["latency_ms"]
        passed = step["sweep"]["passed"]
        mark = "-" if passed is None else "yes" if passed else "no"
        if doc["knee"] is not None and index == doc["knee"]["index"]:
            mark += " (knee)"
        rows.append([
            f"{step['sweep']['load']:g}", _count(r["per_s"]), _count(step["tokens"]["per_s"]),
            _count(r["goodput_per_s"]) if doc["slos"] else "-", _ms(lat["ttft"]["p50"]),
            _ms(lat["ttft"]["p99"]), _ms(lat["itl"]["p99"]), _ms(lat["e2e"]["p99"]),
            f"{r['failed']:,}", f"{r['not_started']:,}", mark,
        ])
    return fit_table(columns, rows, width, title=f"fanin load sweep over {PARAMETERS[doc['parameter']]}",
                     title_justify="left")


def run_sweep(options: LoadOptions, run_step: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Every step in order (each table printed as it ends), then the chart; returns the
    sweep's document. Passed when a knee was found, or when no objective was given. Ctrl-C
    or SIGTERM ends the sweep after the running step, whose partial report is kept."""
    from fanin.load.chart import ChartUnavailable, draw_sweep_chart
    from fanin.load.display import show
    from fanin.load.tables import report_table

    parameter, loads = options.sweep
    objectives = bool(options.slos or options.thresholds)
    to_stderr = options.json == "-"
    steps = []
    stopped_by = signal = None
    for index, load in enumerate(loads):
        users, rate = (int(load), None) if parameter == "concurrency" else (None, load)
        report = run_step(options, users, rate)
        passed = step_passed(report, options.attainment) if objectives else None
        report["sweep"] = {"index": index, "parameter": parameter, "load": load, "passed": passed}
        steps.append(report)
        show(f"[bold]step {index + 1}/{len(loads)}: {parameter} {load:g}[/bold]", stderr=to_stderr)
        show(report_table(report), stderr=to_stderr)
        if report.get("stopped_by") == INTERRUPT:
            stopped_by, signal = INTERRUPT, report.get("signal")
            break
    knee_index = find_knee([bool(s["sweep"]["passed"]) for s in steps]) if objectives else None
    doc = {
        "type": "load_sweep",
        "parameter": parameter,
        "loads": list(loads),
        "slos": [s.expr for s in options.slos],
        "slo_limits": [{"expr": s.expr, "metric": s.metric, "limit_ms": s.limit_us / 1000} for s in options.slos],
        "slo_attainment": options.attainment,
        "thresholds": [t.expr for t in options.thresholds],
        "knee": None if knee_index is None else {"index": knee_index, "load": loads[knee_index]},
        "steps": steps,
        "chart": None,
        "stopped_by": stopped_by,
        "signal": signal,
        "passed": stopped_by is None and (knee_index is not None or not objectives),
    }
    chart = options.chart_path
    if chart:
        try:
            draw_sweep_chart(doc, chart)
            doc["chart"] = os.path.basename(chart)
            print(f"fanin: chart written to {chart}", file=sys.stderr)
        except ChartUnavailable as exc:
            print(f"fanin: warning: {exc}", file=sys.stderr)  # no chart, the sweep still stands
    return doc


def sweep_verdict(doc: dict[str, Any]) -> tuple[str | None, list[str]]:
    """A closing note for the table, and the reasons the sweep did not pass."""
    parameter, loads = doc["parameter"], doc["loads"]
    if not (doc["slos"] or doc["thresholds"]):
        return "no --slo or --threshold given: no knee to find", []
    knee = doc["knee"]
    if knee is None:
        if doc.get("stopped_by") == INTERRUPT:
            return None, []
        return None, [f"no step met the objectives (not even {parameter} {loads[0]:g})"]
    return f"knee: {parameter} {knee['load']:g} is the highest load that met the objectives", []
