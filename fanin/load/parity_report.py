"""The request-mode report's parity sections (beside report.py's): the percentiles the user
chose (`--percentiles`), per-user output speed, how the tokens were counted and the
prompt tokens the server reported; and `--csv FILE`, the report as one CSV row per run (or
per sweep step) for spreadsheets and CI dashboards. The JSON stays the machine contract."""

from __future__ import annotations

import csv
import io
from typing import Any

from fanin.errors import FaninError
from fanin.measure.metrics import LoadMetrics, Recorder

__all__ = ["percentile_key", "percentiles_ms", "add_parity_sections", "csv_rows", "write_csv"]


def percentile_key(p: float) -> str:
    """50 -> 'p50', 99.9 -> 'p99.9' (the key in latency_ms and the CSV column)."""
    return f"p{p:g}"


def percentiles_ms(rec: Recorder, percentiles: tuple[float, ...]) -> dict[str, float | None]:
    """Each percentile of a histogram in ms (the top of its bucket, as summary_ms reports)."""
    rec.flush()
    h = rec.hist
    total = h.get_total_count()
    out: dict[str, float | None] = {}
    for p in percentiles:
        if not total:
            out[percentile_key(p)] = None
            continue
        value = h.get_highest_equivalent_value(h.get_value_at_percentile(p))
        out[percentile_key(p)] = round(value / 1000, 3)
    return out


def add_parity_sections(report: dict[str, Any], metrics: LoadMetrics, options, *, measured_s: float) -> None:
    chosen = tuple(options.percentiles or ())
    if chosen:
        report["percentiles"] = [percentile_key(p) for p in chosen]
        for name, stats in report["latency_ms"].items():
            stats.update({k: v for k, v in percentiles_ms(metrics.hist[name], chosen).items() if k not in stats})
    tokens = report["tokens"]
    per_user = metrics.hist["user_tps"].summary_ms()  # thousandths of tokens/s read as ms: tokens/s
    if chosen:
        per_user.update({k: v for k, v in percentiles_ms(metrics.hist["user_tps"], chosen).items() if k not in per_user})
    tokens["per_user_per_s"] = per_user
    tokens["counted_by"] = {"usage": metrics.tokens_by_usage, "chunks": metrics.tokens_by_chunks,
                            "tokenizer": metrics.tokens_by_tokenizer}
    tokens["input_total"] = metrics.input_tokens
    tokens["input_per_s"] = round(metrics.input_tokens / max(measured_s, 1e-9), 1)
    if options.tokenizer:
        tokens["source"] = f"tokenizer {options.tokenizer}"
    elif options.usage_field is None and options.extract is None and options.api:
        tokens["source"] = f"{options.api} usage, else content chunks"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        out[prefix] = ";".join(str(v) for v in value)
    else:
        out[prefix] = value


_SECTIONS = ("requests", "tokens", "latency_ms", "errors", "connections", "events", "client")


def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per report: settings the run was given, then its sections (dotted names)."""
    reports = doc["steps"] if doc.get("type") == "load_sweep" else [doc]
    rows = []
    for report in reports:
        row: dict[str, Any] = {"elapsed_s": report.get("elapsed_s"), "passed": report.get("passed")}
        settings = report.get("settings", {})
        for key in ("mode", "api", "users", "request_rate", "arrival", "burstiness", "max_concurrency",
                    "duration_s", "warmup_s"):
            row[f"settings.{key}"] = settings.get(key)
        for section in _SECTIONS:
            if section in report:
                _flatten(section, {k: v for k, v in report[section].items() if k != "examples"}, row)
        rows.append(row)
    return rows


def write_csv(doc: dict[str, Any], path: str | None) -> None:
    if not path:
        return
    rows = csv_rows(doc)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(buffer.getvalue())
    except OSError as exc:
        raise FaninError(f"cannot write {path}: {exc.strerror}") from None
