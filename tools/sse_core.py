"""The `sse_request` tool without Dify: parameters -> engine run -> outputs.

Outputs are plain tuples so the Tool class stays a thin adapter and this logic is
tested in-process: ("text", str) while events arrive, then ("variable", name, value)
for each output variable, then ("json", summary). A total failure with no events raises
ToolFailure (one clear line, no secrets) so Dify's fail branch works. Every value is cut to
fit Dify's message line here, once (tools/message_size.py); tools/messages.py does not cut.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from fanin.embed.bridge import BridgeDeadline
from fanin.embed.netguard import AddressGuard
from fanin.errors import FaninError
from fanin.events import SourceError, Summary
from fanin.extract import parse_path, text_at
from fanin.stream import MISSING, Request, StreamConfig

from tools import params as P
from tools.common import MAX_DURATION_CAP, ToolFailure, new_fanin, run_fanin, split_text
from tools.message_size import VALUE_BUDGET, fit
from tools.summary_text import LANGUAGES, summary_sentence

__all__ = ["SsePlan", "plan_sse_request", "run_sse_request", "MESSAGE_BUDGET", "Output"]

Output = tuple
MESSAGE_BUDGET = VALUE_BUDGET  # bytes per variable; the daemon's line limit is 5 MiB
OUTPUT_MODES = ("data", "extract", "ndjson")


@dataclass
class SsePlan:
    requests: list[Request]
    config: StreamConfig
    max_events: int | None
    max_duration: float
    stop_on: str | None
    extract: tuple[str, ...] | None
    output_mode: str
    language: str = "en_US"


def plan_sse_request(p: dict[str, Any]) -> SsePlan:
    """Validate every parameter up front; raises ValueError (one line, no secrets)."""
    urls = P.split_urls(p.get("url"))
    method = (P.text(p, "method").strip() or "GET").upper()
    headers = P.parse_pairs(p.get("headers"), "headers")
    query = P.parse_pairs(p.get("query_params"), "query_params", allow_equals=True)
    json_body, raw_body = P.parse_body(p.get("body"))
    auth_type = P.choice(p, "auth_type", ("none", "bearer", "api_key"), "none")
    token = P.text(p, "auth_token").strip()
    if auth_type != "none" and not token:
        raise ValueError(f"auth_token: auth_type {auth_type} needs a token")
    auth_header = P.text(p, "auth_header").strip() or "Authorization"
    header_map: dict[str, str] = {}
    for name, value in headers:
        header_map[name] = value
    if raw_body is not None and not any(k.lower() == "content-type" for k in header_map):
        header_map["Content-Type"] = "text/plain; charset=utf-8"
    output_mode = P.choice(p, "output_mode", OUTPUT_MODES, "data")
    extract_text = P.text(p, "extract").strip()
    extract = parse_path(extract_text) if extract_text else None
    config = StreamConfig(
        connect_timeout=P.number(p, "timeout", 30.0, maximum=MAX_DURATION_CAP),
        idle_timeout=P.number(p, "idle_timeout", None, maximum=MAX_DURATION_CAP, zero_means_none=True),
        retries=P.whole_number(p, "retry_attempts", 3, maximum=20),
        reconnect=P.choice(p, "reconnect", ("error", "always", "never"), "error"),
        max_line_size=MESSAGE_BUDGET,
    )
    requests = [
        Request(url=url, method=method, headers=dict(header_map), params=list(query),
                body=raw_body, json=json_body if json_body is not P.MISSING_BODY else MISSING,
                auth_type=auth_type, auth_token=token or None, auth_header=auth_header)
        for url in urls
    ]
    stop_on = P.text(p, "stop_on")
    return SsePlan(
        requests=requests,
        config=config,
        max_events=P.whole_number(p, "max_events", 100, minimum=1, maximum=1_000_000),
        max_duration=P.number(p, "max_duration", 300.0, maximum=MAX_DURATION_CAP),
        stop_on=stop_on.strip() if stop_on.strip() else None,
        extract=extract,
        output_mode=output_mode,
        language=_language(p),
    )


def _language(p: dict[str, Any]) -> str:
    value = P.text(p, "language").strip() or "en_US"
    by_lower = {name.lower(): name for name in LANGUAGES}
    if value.lower() not in by_lower:
        raise ValueError(f"language: choose one of {', '.join(LANGUAGES)}, got {value[:40]!r}")
    return by_lower[value.lower()]


def _cap_text(text: str) -> tuple[str, bool]:
    """Cut on the serialised size (escaped quotes and newlines count), with a marker."""
    capped = fit(text, MESSAGE_BUDGET)
    return capped, capped is not text


def run_sse_request(plan: SsePlan, *, guard: AddressGuard | None = None) -> Iterator[Output]:
    # Every text below comes from the engine, whose boundary (fanin/redact.py) already masked
    # every secret of the run: errors, reports, URLs and exceptions. Event data is the server's.
    try:
        fan = new_fanin(plan.requests, plan.config, guard=guard, max_events=plan.max_events,
                        max_duration=plan.max_duration, stop_on=plan.stop_on)
    except (FaninError, ValueError) as exc:
        raise ToolFailure(str(exc)) from None
    deadline = time.monotonic() + plan.max_duration + plan.config.connect_timeout + 15
    answer_parts: list[str] = []
    answer_size = 0  # characters kept; memory stays bounded on long runs
    events: list[dict[str, Any]] = []
    events_bytes = 0
    events_capped = False
    errors: list[str] = []
    extract, mode = plan.extract, plan.output_mode
    try:
        with contextlib.closing(run_fanin(fan, deadline)) as batches:
            for batch in batches:
                live: list[str] = []
                for item in batch:
                    if type(item) is SourceError:
                        errors.append(f"source {item.source} ({item.url}): {item.error}")
                        continue
                    record = item.to_dict()
                    if not events_capped:
                        size = len(orjson.dumps(record)) + 1
                        if events_bytes + size > MESSAGE_BUDGET:
                            events_capped = True
                        else:
                            events.append(record)
                            events_bytes += size
                    if extract is not None:
                        piece = text_at(item.data, extract)
                    elif mode in ("data", "ndjson"):
                        piece = item.data + "\n"
                    else:
                        piece = item.data
                    if piece and answer_size <= MESSAGE_BUDGET:  # past it, `answer` is cut anyway
                        answer_parts.append(piece)
                        answer_size += len(piece)
                    if mode == "ndjson":
                        live.append(orjson.dumps(record).decode() + "\n")
                    elif piece:
                        live.append(piece)
                if live:
                    for chunk in split_text("".join(live)):
                        yield ("text", chunk)
    except BridgeDeadline:
        errors.append("stopped: the run went past max_duration plus its grace period")
    except FaninError as exc:
        raise ToolFailure(str(exc)) from None
    summary: Summary | None = fan.summary
    if summary is None:  # only when the run could not start at all
        raise ToolFailure("the stream run ended without a summary")
    for report in summary.sources:
        if report.error:
            line = f"source {report.source} ({report.url}): {report.error}"
            if line not in errors:
                errors.append(line)
    error_text = "; ".join(errors)
    if summary.status == "failed" and summary.total_events == 0:
        raise ToolFailure(error_text or "every source failed")
    answer, answer_capped = _cap_text("".join(answer_parts))
    sources = fit([r.to_dict() for r in summary.sources], MESSAGE_BUDGET)
    error_text = fit(error_text, MESSAGE_BUDGET)
    yield ("variable", "status", summary.status)
    yield ("variable", "total_events", summary.total_events)
    yield ("variable", "connection_duration", summary.connection_duration)
    yield ("variable", "answer", answer)
    yield ("variable", "events", events)  # held under MESSAGE_BUDGET as it was gathered
    yield ("variable", "sources", sources)
    yield ("variable", "error", error_text)
    record = summary.to_dict()
    record["sources"] = sources
    record["error"] = error_text or None
    record["summary"] = summary_sentence(summary, plan.language)
    record["events_returned"] = len(events)
    if events_capped:
        record["events_truncated"] = True
        record["note"] = (f"events holds the first {len(events)} of {summary.total_events} events:"
                          f" the rest would pass the {MESSAGE_BUDGET // (1024 * 1024)} MiB message limit")
    if answer_capped:
        record["answer_truncated"] = True
    yield ("json", fit(record, MESSAGE_BUDGET))

