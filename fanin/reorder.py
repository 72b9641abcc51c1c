"""`--order-by PATH --reorder-window MS`: event-time order across sources.

Each event's timestamp is read from its JSON data at PATH (epoch seconds, ms, µs or ns,
or an ISO-8601 string); events without one use their arrival time. An event is held
until `window` has passed since its arrival, then leaves in timestamp order. One that
arrives after a later-stamped event already left is still delivered, flagged late."""

from __future__ import annotations

import heapq
from collections import deque
from datetime import datetime

from .events import Event
from .extract import extract_from_data, parse_path

__all__ = ["EventTimeReorderer", "event_time_ns"]


def event_time_ns(value) -> int | None:
    """A timestamp value as epoch ns; numbers are read by magnitude (s, ms, µs, ns)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        if v < 1e11:
            return int(v * 1e9)
        if v < 1e14:
            return int(v * 1e6)
        if v < 1e17:
            return int(v * 1e3)
        return int(v)
    if isinstance(value, str):
        try:
            return int(float(value) * 1e9) if value.replace(".", "", 1).isdigit() else int(
                datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9
            )
        except ValueError:
            return None
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

    @property
    def held(self) -> int:
        return len(self._heap)

    def push(self, events: list[Event]) -> None:
        for event in events:
            stamp = event_time_ns(extract_from_data(event.data, self.parts))
            if stamp is None:
                stamp = event.wall_ns
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
