"""The arrival queue of one fan-in: every source's batches in stamp order, bounded.

Why the order holds: a source stamps a network read and puts its batch here in the same
synchronous step (no await in between), so the deque is in stamp order by construction.
Backpressure: once more than `limit` events are held (queued here, plus those the
admission pipeline still holds for reordering, which it reports back through `free`), a
source that put a batch waits before reading again, so memory stays bounded (the limit
plus at most one read per source) and nothing is dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator

from .events import Batch, SourceError

__all__ = ["ArrivalQueue", "Item"]

Item = Batch | SourceError


class ArrivalQueue:
    """Producers `put` batches (and `put_error` records); the consumer `pop`s, `wait`s, and
    `free`s the events that left its hands."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.held_events = 0  # events queued, plus those admitted but still held downstream
        self._items: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    async def put(self, batch: Batch) -> None:
        """Queue one read's batch in stamp order; waits while the queue is over its limit.
        Equal stamps: the lower source index goes first (docs/cli.md,
        `fanin stream`, "Order"). The deque is in stamp order, so the items with this stamp are a run at
        its end: step back over every one of them from a higher source."""
        items = self._items
        stamp, source = batch.arrival_ns, batch.source
        at = len(items)
        while at:
            prev = items[at - 1]
            if type(prev) is Batch and prev.arrival_ns == stamp and prev.source > source:
                at -= 1
            else:
                break
        if at == len(items):
            items.append(batch)
        else:
            items.insert(at, batch)
        self.held_events += len(batch)
        self._wake.set()
        if self.held_events > self.limit:
            self._space.clear()
            await self._space.wait()

    def put_error(self, error: SourceError) -> None:
        self._items.append(error)
        self._wake.set()

    def notify(self) -> None:
        """Wake the consumer (e.g. a source ended)."""
        self._wake.set()

    def pop(self) -> Item:
        return self._items.popleft()

    def free(self, n: int) -> None:
        """n events are no longer held: wake the readers once the backlog is down to half
        the limit."""
        if n:
            self.held_events -= n
            if self.held_events <= self.limit // 2:
                self._space.set()

    async def wait(self, timeout: float | None) -> None:
        """Until something is put or notified, or `timeout` seconds (None: no limit)."""
        self._wake.clear()
        if self._items:
            return
        if timeout is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
