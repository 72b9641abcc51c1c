"""`--dedup`: drop an event whose own `id:` line repeats one already delivered from the
same source (servers that replay on resume). Ids inherited from earlier events never
count. Memory is bounded: each source remembers its most recent ids only."""

from __future__ import annotations

from collections import OrderedDict

from .events import Event

__all__ = ["IdDeduplicator"]


class IdDeduplicator:
    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        self._seen: dict[int, OrderedDict[str, None]] = {}
        self.dropped = 0

    def admit(self, event: Event) -> bool:
        if not event.own_id:
            return True
        seen = self._seen.get(event.source)
        if seen is None:
            seen = self._seen[event.source] = OrderedDict()
        if event.event_id in seen:
            self.dropped += 1
            return False
        seen[event.event_id] = None
        if len(seen) > self.remember:
            seen.popitem(last=False)
        return True
