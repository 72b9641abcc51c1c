"""The end of every `fanin load` run, in either mode, one run or a sweep: the verdict
(`judge`: thresholds, passed, why it stopped), then `finish`: the JSON document (a file, or
stdout with `--json -`), the table, one line per reason it did not pass, and the exit status.

Exit status: 0 passed; 1 a threshold breached, nothing could connect, or the client failed;
130 (Ctrl-C) or 143 (SIGTERM) when interrupted, which never passes, although the report of
what ran is still written."""

from __future__ import annotations

import signal
import sys
from typing import Any

import orjson

from fanin.errors import FaninError
from fanin.load.kinds import LoadFailure
from fanin.load.options import LoadOptions
from fanin.load.result import ALL_FAILED, INTERRUPT, RunResult

__all__ = ["judge", "finish", "write_json", "exit_status"]

EXIT_BY_SIGNAL = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


def judge(report: dict[str, Any], result: RunResult, options: LoadOptions) -> dict[str, Any]:
    """Thresholds evaluated, and `passed`: no breach, something connected, no client
    failure, and not interrupted."""
    from fanin.measure.report import evaluate_thresholds

    report["thresholds"] = evaluate_thresholds(report, list(options.thresholds))
    report["stopped_by"] = result.stopped_by
    report["signal"] = result.signal
    breached = any(not r["ok"] for r in report["thresholds"])
    client_errors = report["errors"]["by_kind"].get(LoadFailure.CLIENT, 0)
    report["passed"] = (not breached and report["connections"]["opened"] > 0 and not client_errors
                        and result.stopped_by is None)
    return report


def write_json(doc: dict[str, Any], path: str | None) -> None:
    if not path:
        return
    blob = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if path == "-":
        sys.stdout.buffer.write(blob)
        sys.stdout.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(blob)
    except OSError as exc:
        raise FaninError(f"cannot write {path}: {exc.strerror}") from None
    print(f"fanin: report written to {path}", file=sys.stderr)


def exit_status(doc: dict[str, Any]) -> int:
    if doc.get("stopped_by") == INTERRUPT:
        return EXIT_BY_SIGNAL.get(doc.get("signal") or "", 130)
    return 0 if doc["passed"] else 1


def _reasons(report: dict[str, Any]) -> list[str]:
    """Why a run did not pass, one line each (printed after `fanin: error: `)."""
    from fanin.measure.report import format_actual

    lines = []
    for r in report["thresholds"]:
        if not r["ok"]:
            lines.append(f"threshold breached: {r['threshold']} (actual {format_actual(r)})")
    examples = report["errors"]["examples"]
    client_errors = report["errors"]["by_kind"].get(LoadFailure.CLIENT, 0)
    requests = "requests" in report
    if client_errors:
        noun = ("request" if client_errors == 1 else "requests") if requests else \
            ("stream" if client_errors == 1 else "streams")
        lines.append(f"{client_errors:,} {noun} stopped on a client-side error ({examples.get(LoadFailure.CLIENT)})")
    if report["connections"]["opened"] == 0 and report.get("stopped_by") != INTERRUPT:
        example = next(iter(examples.values()), None)
        what = "no request got a stream" if requests else "no connection could be opened"
        line = f"{what} ({example})" if example else what
        if report.get("stopped_by") == ALL_FAILED:
            duration = report["settings"].get("duration_s")
            of = f" of the {duration:g} s run" if duration else ""
            line += f"; gave up after {report['elapsed_s']:g} s{of}, as every attempt failed before a stream opened"
        lines.append(line)
    return lines


def finish(doc: dict[str, Any], options: LoadOptions) -> int:
    """Write the report (or a sweep's document) and its table; say why it did not pass;
    return the exit status."""
    from fanin.load.display import show

    write_json(doc, options.json)
    if options.html:
        from fanin.measure.html_report import write_html

        write_html(doc, options.html)
    to_stderr = options.json == "-"
    if doc["type"] == "load_sweep":
        from fanin.load.sweep import sweep_table, sweep_verdict

        show(lambda width: sweep_table(doc, width), stderr=to_stderr)
        note, reasons = sweep_verdict(doc)
        if note:
            show(note, stderr=to_stderr)
    else:
        from fanin.load.tables import report_table

        show(report_table(doc), stderr=to_stderr)
        reasons = _reasons(doc)
    if doc.get("stopped_by") == INTERRUPT:
        elapsed = doc.get("elapsed_s")
        after = f" after {elapsed:g} s" if elapsed is not None else ""
        print(f"fanin: interrupted by {doc.get('signal') or 'a signal'}{after}: the report covers what ran, "
              f"and the run does not pass", file=sys.stderr)
    for line in reasons:
        print(f"fanin: error: {line}", file=sys.stderr)
    return exit_status(doc)
