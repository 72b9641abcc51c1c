"""`--order-by PATH --reorder-window MS`: event-time order across sources.

Each event's timestamp is read from its JSON data at PATH (epoch seconds, ms, µs or ns,
as a number or a string, or an ISO-8601 string, UTC when it has no zone); events without
one use their arrival time. An event is held until `window` has passed since its arrival,
then leaves in timestamp order. One that arrives after a later-stamped event already left
is still delivered, flagged late. When the run ends, held events are flushed, not lost.

A stamp outside [1970-01-01, arrival + 1 day] is no event time: one source sending
`"9"*400` would otherwise sort after everything, and when it left, every event of the
other sources would be flagged late. Such an event is treated as unstamped (it keeps its
arrival time, and is delivered), and the source gets one warning on the `fanin` logger,
which prints on stderr when nothing else is set up. The day of slack covers clock skew and
a local time sent without its zone (up to 14 hours off); relative stamps (seconds since a
start) still read as early 1970 and keep working."""

from __future__ import annotations

import heapq
import logging
import math
import re
from collections import deque
from datetime import datetime, timedelta, timezone

from .events import Event
from .extract import extract_from_data, parse_path

__all__ = ["EventTimeReorderer", "event_time_ns"]


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SCALES = ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3))  # below bound: seconds, ms, µs; else ns
EARLIEST_NS = 0  # 1970-01-01T00:00:00Z
FUTURE_SLACK_NS = 86_400 * 10**9  # a stamp may be this far past the event's arrival (wall clock)
log = logging.getLogger("fanin")


def event_time_ns(value: object) -> int | None:
    """A timestamp value as epoch ns, or None when it is not one.

    Numbers, and strings that spell a number, are read by magnitude (seconds, ms, µs or
    ns); other strings as ISO-8601, where a time without a zone is UTC (servers send UTC
    far more often than the reader's local time, and a result must not depend on where
    the client runs)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            return _iso_ns(text)
        try:
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:  # more digits than Python converts (a hostile stamp): no timestamp
            return None
    if isinstance(value, int):
        for bound, scale in _SCALES:
            if abs(value) < bound:
                return value * scale
        return value
    if isinstance(value, float) and math.isfinite(value):
        for bound, scale in _SCALES:
            if abs(value) < bound:
                return int(value * scale)
        return int(value)
    return None


def _excerpt(value: object) -> str:
    """A stamp as it may be quoted on one line: escaped, at most ~40 characters."""
    text = value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else f"{value}"
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def _iso_ns(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    except OverflowError:
        return None


class EventTimeReorderer:
    def __init__(self, path: str, window_ms: float) -> None:
        self.parts = parse_path(path)
        self.window_ns = int(window_ms * 1e6)
        self._heap: list[tuple[int, int, int, int, Event]] = []
        self._arrivals: deque[tuple[int, int]] = deque()  # (arrival_ns, seq) in push order = arrival order
        self._released: set[int] = set()  # seqs that left the heap but not yet the arrivals deque
        self._seq = 0
        self._last_released: int | None = None
        self.implausible: dict[int, int] = {}  # source -> events whose stamp was out of range

    def _stamp(self, event: Event) -> int:
        """The event's time: its stamp when it has a plausible one, else its arrival."""
        value = extract_from_data(event.data, self.parts)
        stamp = event_time_ns(value)
        if stamp is None:
            return event.wall_ns
        if EARLIEST_NS <= stamp <= event.wall_ns + FUTURE_SLACK_NS:
            return stamp
        count = self.implausible.get(event.source, 0)
        self.implausible[event.source] = count + 1
        if not count:
            log.warning("fanin: source %d (%s): --order-by stamp %s is not a plausible event time (before 1970"
                        " or over a day ahead); such events keep their arrival order (said once per source)",
                        event.source, event.url, _excerpt(value))
        return event.wall_ns

    @property
    def held(self) -> int:
        return len(self._heap)

    def push(self, events: list[Event]) -> None:
        for event in events:
            stamp = self._stamp(event)
            self._seq += 1
            heapq.heappush(self._heap, (stamp, event.source, self._seq, event.arrival_ns, event))
            self._arrivals.append((event.arrival_ns, self._seq))

    def next_due_ns(self) -> int:
        """When the earliest-arrived held event must leave (monotonic ns). Events are pushed
        in arrival order, so that is the oldest pushed one not yet released: amortised O(1)."""
        arrivals, released = self._arrivals, self._released
        while arrivals[0][1] in released:
            released.discard(arrivals.popleft()[1])
        return arrivals[0][0] + self.window_ns

    def release(self, now_ns: int) -> list[Event]:
        """Events whose window has passed, in event-time order. The head of the heap leaves
        once any held event is due, since nothing older can still be waited for."""
        out: list[Event] = []
        heap = self._heap
        while heap and self.next_due_ns() <= now_ns:
            out.append(self._pop())
        return out

    def flush(self) -> list[Event]:
        out = []
        while self._heap:
            out.append(self._pop())
        self._arrivals.clear()
        self._released.clear()
        return out

    def _pop(self) -> Event:
        stamp, _, seq, _, event = heapq.heappop(self._heap)
        self._released.add(seq)
        if self._last_released is not None and stamp < self._last_released:
            event.late = True
        else:
            self._last_released = stamp
        return event
