"""`--sweep concurrency=1,2,4,8` or `--sweep rate=1,2,5`: one request-mode run per load, each
with its own warm-up, and the knee: the highest load of the leading run of steps that met the
objectives (a step meets them when at least --slo-attainment of its requests met every --slo
and every --threshold held). Writes one JSON document holding each step's full report under
`steps`, prints a table per step and a summary, and draws the chart (chart.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import orjson

from fanin.errors import FaninError, UsageError

__all__ = ["parse_sweep", "step_passed", "find_knee", "run_sweep", "sweep_table"]

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


def _chart_path(args: argparse.Namespace) -> str | None:
    if args.chart:
        return args.chart
    if args.json and args.json != "-":
        return os.path.splitext(args.json)[0] + ".png"
    return None


def sweep_table(doc: dict[str, Any]):
    """The summary: one row per step, the knee marked."""
    from rich.table import Table

    from fanin.load.report import _count, _ms

    table = Table(title=f"fanin load sweep over {PARAMETERS[doc['parameter']]}", show_edge=False)
    for col in ("load", "req/s", "tok/s", "good/s", "ttft p50", "ttft p99", "itl p99", "e2e p99",
                "failed", "not run", "met"):
        table.add_column(col, justify="right", no_wrap=True)
    for index, step in enumerate(doc["steps"]):
        r, lat = step["requests"], step["latency_ms"]
        passed = step["sweep"]["passed"]
        mark = "-" if passed is None else "yes" if passed else "no"
        if doc["knee"] is not None and index == doc["knee"]["index"]:
            mark += " (knee)"
        table.add_row(
            f"{step['sweep']['load']:g}", _count(r["per_s"]), _count(step["tokens"]["per_s"]),
            _count(r["goodput_per_s"]), _ms(lat["ttft"]["p50"]),
            _ms(lat["ttft"]["p99"]), _ms(lat["itl"]["p99"]), _ms(lat["e2e"]["p99"]),
            f"{r['failed']:,}", f"{r['not_started']:,}", mark,
        )
    return table


def run_sweep(args: argparse.Namespace, checked: dict[str, Any], show: bool,
              run_step: Callable[..., dict[str, Any]]) -> int:
    """Every step in order; 0 when a knee was found (or no objective was given), else 1."""
    from rich.console import Console

    from fanin.load.chart import ChartUnavailable, draw_sweep_chart
    from fanin.load.report import report_table

    parameter, loads = checked["sweep"]
    objectives = bool(checked["slos"] or checked["thresholds"])
    console = Console(stderr=args.json == "-")
    if not console.is_terminal:
        console.width = 132  # a log file or CI: room for every column
    steps = []
    for index, load in enumerate(loads):
        users, rate = (int(load), None) if parameter == "concurrency" else (None, load)
        report = run_step(args, checked, users, rate, show)
        passed = step_passed(report, checked["attainment"]) if objectives else None
        report["sweep"] = {"index": index, "parameter": parameter, "load": load, "passed": passed}
        steps.append(report)
        console.print(f"[bold]step {index + 1}/{len(loads)}: {parameter} {load:g}[/bold]")
        console.print(report_table(report))
    knee_index = find_knee([bool(s["sweep"]["passed"]) for s in steps]) if objectives else None
    doc = {
        "type": "load_sweep",
        "parameter": parameter,
        "loads": loads,
        "slos": [s.expr for s in checked["slos"]],
        "slo_limits": [{"expr": s.expr, "metric": s.metric, "limit_ms": s.limit_us / 1000} for s in checked["slos"]],
        "slo_attainment": checked["attainment"],
        "thresholds": list(args.threshold),
        "knee": None if knee_index is None else {"index": knee_index, "load": loads[knee_index]},
        "steps": steps,
        "chart": None,
    }
    chart = _chart_path(args)
    if chart:
        try:
            draw_sweep_chart(doc, chart)
            doc["chart"] = os.path.basename(chart)
        except ChartUnavailable as exc:
            print(f"fanin: warning: {exc}", file=sys.stderr)  # no chart, the sweep still stands
    blob = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if args.json == "-":
        sys.stdout.buffer.write(blob)
        sys.stdout.flush()
    elif args.json:
        try:
            with open(args.json, "wb") as f:
                f.write(blob)
        except OSError as exc:
            raise FaninError(f"cannot write {args.json}: {exc.strerror}") from None
    console.print(sweep_table(doc))
    if not objectives:
        console.print("no --slo or --threshold given: no knee to find")
        return 0
    if knee_index is None:
        print(f"fanin: error: no step met the objectives (not even {parameter} {loads[0]:g})", file=sys.stderr)
        return 1
    console.print(f"knee: {parameter} {loads[knee_index]:g} is the highest load that met the objectives")
    return 0
