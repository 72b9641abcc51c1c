"""`--dedup`: drop an event whose own `id:` line repeats one already delivered from the
same source (servers that replay on resume). Ids inherited from earlier events never
count. Memory is bounded: each source remembers its most recent ids only."""

from __future__ import annotations

from collections import OrderedDict

from .events import Batch

__all__ = ["IdDeduplicator"]


class IdDeduplicator:
    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        self._seen: dict[int, OrderedDict[str, None]] = {}
        self.dropped = 0

    def admit(self, batch: Batch) -> list[tuple[str, str, str, bool]]:
        """The batch's events minus those whose own id this source already delivered."""
        seen = self._seen.get(batch.source)
        if seen is None:
            seen = self._seen[batch.source] = OrderedDict()
        kept = []
        for message in batch.messages:
            if message[3] and message[2]:  # an own, non-empty id (an empty `id:` resets, names nothing)
                event_id = message[2]
                if event_id in seen:
                    self.dropped += 1
                    continue
                seen[event_id] = None
                if len(seen) > self.remember:
                    seen.popitem(last=False)
            kept.append(message)
        return kept
