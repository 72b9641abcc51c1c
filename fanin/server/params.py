"""The query parameters of the generic /stream endpoint, parsed and checked (a bad one is a 400)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

__all__ = ["BadParameter", "StreamParams", "PARAM_NAMES", "EVENT_STREAM", "get_int", "get_float", "get_bool", "get_text", "get_opt_int"]

EVENT_STREAM = "text/event-stream"


class BadParameter(ValueError):
    """A query parameter the server cannot use; answered with 400 and this one line."""



@dataclass
class StreamParams:
    """Everything /stream can be asked for; parsed from build_app defaults + query."""

    count: int = 100
    rate: float = 0.0
    size: int = 16
    ids: bool = True
    start: int = 1
    retry: int | None = None
    event: str | None = None
    ts: bool = False
    abort_every: int = 0
    stall_after: int | None = None
    heartbeat: float | None = None
    close_after: int | None = None
    status: int | None = None
    retry_after: int | None = None
    fail_first: int = 0
    content_type: str = EVENT_STREAM
    line_forever: bool = False

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> "StreamParams":
        p = cls()
        p.count = get_int(values, "count", p.count)
        p.rate = get_float(values, "rate", p.rate)
        p.size = get_int(values, "size", p.size, maximum=16 * 1024 * 1024)
        p.ids = get_bool(values, "ids", p.ids)
        p.start = get_int(values, "start", p.start)
        p.retry = get_opt_int(values, "retry")
        p.event = get_text(values, "event")
        p.ts = get_bool(values, "ts", p.ts)
        p.abort_every = get_int(values, "abort_every", 0)
        p.stall_after = get_opt_int(values, "stall_after")
        heartbeat = get_float(values, "heartbeat", 0.0)
        p.heartbeat = heartbeat if heartbeat > 0 else None
        p.close_after = get_opt_int(values, "close_after")
        p.status = get_opt_int(values, "status")
        if p.status is not None and not 100 <= p.status <= 599:
            raise BadParameter(f"status must be an HTTP status code, got {p.status}")
        p.retry_after = get_opt_int(values, "retry_after")
        p.fail_first = get_int(values, "fail_first", 0)
        p.content_type = get_text(values, "content_type") or EVENT_STREAM
        p.line_forever = get_bool(values, "line_forever", False)
        return p


PARAM_NAMES = frozenset(f.name for f in fields(StreamParams))


def _raw_value(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    return str(value)


def get_opt_int(values: Mapping[str, str], name: str) -> int | None:
    value = _raw_value(values, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number, got {value[:40]!r}") from None
    if number < 0:
        raise BadParameter(f"{name} must not be negative, got {number}")
    return number


def get_int(values: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    number = get_opt_int(values, name)
    if number is None:
        return default
    if maximum is not None and number > maximum:
        raise BadParameter(f"{name} must be at most {maximum}, got {number}")
    return number


def get_float(values: Mapping[str, str], name: str, default: float) -> float:
    value = _raw_value(values, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {value[:40]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise BadParameter(f"{name} must be a finite number >= 0, got {value[:40]!r}")
    return number


def get_bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    value = _raw_value(values, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadParameter(f"{name} must be 0 or 1, got {value[:40]!r}")


def get_text(values: Mapping[str, str], name: str) -> str | None:
    value = _raw_value(values, name)
    if value is not None and any(c in value for c in "\r\n\0"):
        raise BadParameter(f"{name} must not contain CR, LF or NUL")
    return value
