"""The records the engine hands out (events, per-source errors, the summary) and their
orjson serialisation. Field names are a contract (docs/cli.md, "Output: `ndjson`"):
tools, the CLI and users parse them, so never rename one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from .errors import FailureKind
from .wording import plural

__all__ = ["Batch", "Event", "SourceError", "SourceReport", "Summary", "dumps", "format_wall_ns"]


class _WallClock:
    """Formats wall-clock stamps cheaply: every event of one network read shares one
    stamp, so the last string is reused, and within one second only the microseconds
    change, so the formatted second is reused too.

    Each cache is one (key, text) tuple, read once and replaced in one store, so threads
    sharing the formatter (the bridge runs the engine on its own OS thread) can never pair
    one second's key with another second's text."""

    __slots__ = ("_second", "_last")

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")
        self._last: tuple[int, str] = (-1, "")

    def format(self, epoch_ns: int) -> str:
        last = self._last
        if last[0] == epoch_ns:
            return last[1]
        second, rest = divmod(epoch_ns, 1_000_000_000)
        cached = self._second
        if cached[0] != second:
            cached = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S."))
            self._second = cached
        text = f"{cached[1]}{rest // 1000:06d}Z"
        self._last = (epoch_ns, text)
        return text


_clock = _WallClock()


def format_wall_ns(epoch_ns: int) -> str:
    return _clock.format(epoch_ns)


@dataclass(slots=True)
class Event:
    """One dispatched SSE event, stamped on arrival and tagged with its source."""

    source: int
    url: str
    event_type: str
    data: str
    event_id: str
    arrival_ns: int  # time.monotonic_ns() when the network read that carried it returned
    wall_ns: int  # time.time_ns() at the same moment
    event_number: int = 0  # set by the merger: 1.. in merged order
    late: bool = False  # event-time order only: arrived after a later-timestamped event left
    own_id: bool = False  # the event's own block carried an `id:` line (de-duplication keys on it)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "type": "event",
            "event_number": self.event_number,
            "source": self.source,
            "url": self.url,
            "event_type": self.event_type,
            "data": self.data,
            "event_id": self.event_id,
            "timestamp": format_wall_ns(self.wall_ns),
        }
        if self.late:
            d["late"] = True
        return d


class Batch:
    """The events one network read completed for one source: the unit the engine moves.

    Events stay plain (type, data, id, own_id) tuples from the parser until someone asks
    for Event objects (events()); the NDJSON writer never does, which is most of why the
    engine is fast. Numbers are consecutive: first_number, first_number + 1, ...
    """

    __slots__ = ("source", "url", "arrival_ns", "wall_ns", "messages", "first_number", "late")

    def __init__(self, source: int, url: str, arrival_ns: int, wall_ns: int,
                 messages: list[tuple[str, str, str, bool]], late: bool = False) -> None:
        self.source = source
        self.url = url
        self.arrival_ns = arrival_ns
        self.wall_ns = wall_ns
        self.messages = messages
        self.first_number = 0
        self.late = late

    def __len__(self) -> int:
        return len(self.messages)

    def events(self) -> list[Event]:
        source, url, arrival, wall, late = self.source, self.url, self.arrival_ns, self.wall_ns, self.late
        return [
            Event(source, url, t, d, i, arrival, wall, number, late, own)
            for number, (t, d, i, own) in enumerate(self.messages, self.first_number)
        ]


@dataclass(slots=True)
class SourceError:
    """A source that failed for good (after retries), reported as it happens."""

    source: int
    url: str
    error: str
    kind: FailureKind | None = None  # what faces decide on; `error` is for people
    http_status: int | None = None  # the last HTTP status when a response caused the failure
    retry_after: float | None = None  # seconds the server asked to wait (Retry-After), when it did
    wall_ns: int = field(default_factory=time.time_ns)

    @classmethod
    def of(cls, report: SourceReport) -> SourceError:
        return cls(report.source, report.url, report.error or "failed", report.kind, report.http_status,
                   report.retry_after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "error",
            "status": "failed",
            "source": self.source,
            "url": self.url,
            "error": self.error,
            "kind": self.kind,
            "http_status": self.http_status,
            "retry_after": self.retry_after,
            "timestamp": format_wall_ns(self.wall_ns),
        }


@dataclass(slots=True)
class SourceReport:
    """Per-source outcome in the summary. status: completed | failed | stopped."""

    source: int
    url: str
    status: str = "pending"
    events: int = 0
    reconnects: int = 0
    error: str | None = None  # one line for people; never decide on its wording
    kind: FailureKind | None = None  # set with error: why the source failed
    http_status: int | None = None  # the HTTP status behind the failure, when a response caused it
    retry_after: float | None = None  # the server's Retry-After (seconds), when it sent one

    def fail(self, kind: FailureKind, error: str, http_status: int | None = None,
             retry_after: float | None = None) -> None:
        self.status, self.kind, self.error = "failed", kind, error
        self.http_status, self.retry_after = http_status, retry_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "url": self.url,
            "status": self.status,
            "events": self.events,
            "reconnects": self.reconnects,
            "error": self.error,
            "kind": self.kind,
            "http_status": self.http_status,
            "retry_after": self.retry_after,
        }


@dataclass(slots=True)
class Summary:
    status: str  # completed | partial | failed
    total_events: int
    connection_duration: float  # seconds, 3 decimals
    sources: list[SourceReport]
    stopped_by: str | None = None  # max_events | max_duration | stop_on | interrupt | None
    wall_ns: int = field(default_factory=time.time_ns)

    @property
    def text(self) -> str:
        failed = sum(1 for s in self.sources if s.status == "failed")
        n = len(self.sources)
        parts = [
            f"{self.status}: {plural(self.total_events, 'event')} from {plural(n, 'source')}"
            f" in {self.connection_duration:.1f}s"
        ]
        if failed:
            parts.append(f"{failed} failed")
        if self.stopped_by:
            parts.append(f"stopped by {self.stopped_by}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": "summary",
            "status": self.status,
            "total_events": self.total_events,
            "connection_duration": self.connection_duration,
            "sources": [s.to_dict() for s in self.sources],
            "summary": self.text,
            "timestamp": format_wall_ns(self.wall_ns),
        }
        if self.stopped_by:
            d["stopped_by"] = self.stopped_by
        return d


def dumps(record: Event | SourceError | Summary) -> bytes:
    """One NDJSON line (with the trailing newline)."""
    return orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE)
