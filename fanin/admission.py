"""What happens to each queued item before the consumer sees it: de-duplication by id,
event-time reordering, numbering in merged order, and the max_events limit.

Pure bookkeeping, no I/O: `admit` takes one item off the arrival queue and returns what
may go out now plus how many events left its hands (for the queue's backpressure), so
the pipeline can be driven and tested without sockets."""

from __future__ import annotations

from .arrivals import Item
from .dedup import IdDeduplicator
from .events import Batch, Event
from .reorder import EventTimeReorderer

__all__ = ["Admission"]


class Admission:
    def __init__(self, sources: int, *, max_events: int | None = None, dedup: IdDeduplicator | None = None,
                 reorder: EventTimeReorderer | None = None) -> None:
        self.max_events = max_events
        self.dedup = dedup
        self.reorder = reorder
        self.total_events = 0
        self.delivered = [0] * sources  # events numbered (handed to the consumer), per source
        self.full = False  # max_events reached: nothing more goes out

    # ------------------------------------------------------------------ in
    def admit(self, item: Item, now_ns: int) -> tuple[list[Item], int]:
        """(what goes out now, events no longer held). Without reordering, a batch leaves
        as a whole; with it, events leave when dropped as duplicates or released."""
        if type(item) is not Batch:
            return [item], 0
        received = len(item.messages)
        if self.dedup is not None:
            item.messages = self.dedup.admit(item)
        if self.reorder is None:
            return (self._number([item]) if item.messages else []), received
        dropped = received - len(item.messages)
        if item.messages:
            self.reorder.push(item.events())
        out, released = self.release(now_ns)
        return out, dropped + released

    def release(self, now_ns: int) -> tuple[list[Item], int]:
        """Held events whose window has passed, numbered; and how many left."""
        if self.reorder is None or not self.reorder.held:
            return [], 0
        events = self.reorder.release(now_ns)
        return self._number(events), len(events)

    def flush(self) -> tuple[list[Item], int]:
        """Every held event, in event-time order (the run is ending)."""
        if self.reorder is None or not self.reorder.held:
            return [], 0
        events = self.reorder.flush()
        return self._number(events), len(events)

    @property
    def holding(self) -> bool:
        return self.reorder is not None and bool(self.reorder.held)

    def next_due_ns(self) -> int | None:
        return self.reorder.next_due_ns() if self.holding else None  # type: ignore[union-attr]

    # ------------------------------------------------------------------ out
    def take_back(self, chunk: list[Item], index: int, offset: int) -> None:
        """The events from chunk[index] event `offset` on were numbered but never handed
        out (the run's time ran out while they were being handed out): uncount them."""
        for position in range(index, len(chunk)):
            item = chunk[position]
            if type(item) is Batch:
                dropped = len(item.messages) - (offset if position == index else 0)
                self.total_events -= dropped
                self.delivered[item.source] -= dropped

    def _number(self, items: list[Batch] | list[Event]) -> list[Item]:
        """Number events in merged order. Takes Batches, or Events released by the
        reorderer (each becomes a one-event Batch that keeps its late flag)."""
        limit = self.max_events
        out: list[Item] = []
        for given in items:
            if isinstance(given, Event):
                item = Batch(given.source, given.url, given.arrival_ns, given.wall_ns,
                             [(given.event_type, given.data, given.event_id, given.own_id)], given.late)
            else:
                item = given
            if limit is not None:
                room = limit - self.total_events
                if room <= 0:
                    self.full = True
                    break
                if len(item.messages) > room:
                    item.messages = item.messages[:room]
            item.first_number = self.total_events + 1
            self.total_events += len(item.messages)
            self.delivered[item.source] += len(item.messages)
            out.append(item)
        if limit is not None and self.total_events >= limit:
            self.full = True
        return out
