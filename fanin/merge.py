"""Fan-in: N sources on one aiohttp session, merged into one arrival-ordered sequence.

Why the order holds: a source stamps a network read and appends its batch to the shared
deque in the same synchronous step (no await in between), so the deque is in stamp
order by construction. Backpressure: once the deque holds more than `queue_limit`
events, a source that appended waits before reading again, so memory stays bounded
(the limit plus at most one read per source) and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence

import aiohttp

from .dedup import IdDeduplicator
from .errors import UsageError
from .events import Event, SourceError, Summary
from .reorder import EventTimeReorderer
from .stream import Request, SSEStream, StreamConfig, StreamObserver

__all__ = ["FanIn", "make_session"]

Item = Event | SourceError


def make_session(connector: aiohttp.BaseConnector | None = None, **connector_kwargs) -> aiohttp.ClientSession:
    """One session for every source: no connection cap (thousands of streams), proxies
    from the environment (HTTP(S)_PROXY / NO_PROXY)."""
    if connector is None:
        connector_kwargs.setdefault("limit", 0)
        connector_kwargs.setdefault("limit_per_host", 0)
        connector_kwargs.setdefault("ttl_dns_cache", 300)
        connector = aiohttp.TCPConnector(**connector_kwargs)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=True,
        auto_decompress=True,
    )


class FanIn:
    """Open every request, merge their events, apply the run's limits, then summarise."""

    def __init__(self, requests: Sequence[Request], config: StreamConfig | None = None, *,
                 max_events: int | None = None, max_duration: float | None = None,
                 stop_on: str | None = None, order_by: str | None = None,
                 reorder_window_ms: float = 500, dedup: bool = False,
                 observer: StreamObserver | None = None, queue_limit: int = 8192,
                 connector_factory=None) -> None:
        if not requests:
            raise UsageError("no URL given")
        self.requests = list(requests)
        self.config = config or StreamConfig()
        if stop_on is not None:
            self.config.stop_on = stop_on
        for request in self.requests:
            request.validate()
        self.config.validate()
        if max_events is not None and (not isinstance(max_events, int) or max_events < 1):
            raise UsageError(f"max-events must be a whole number >= 1, got {max_events!r}")
        if max_duration is not None and not (max_duration > 0):
            raise UsageError(f"max-duration must be a positive number of seconds, got {max_duration!r}")
        if reorder_window_ms < 0:
            raise UsageError("reorder-window must be >= 0 ms")
        self.max_events = max_events
        self.max_duration = max_duration
        self.reorder = EventTimeReorderer(order_by, reorder_window_ms) if order_by else None
        self.dedup = IdDeduplicator() if dedup else None
        self.observer = observer
        self.queue_limit = max(1, queue_limit)
        self.connector_factory = connector_factory
        self.streams: list[SSEStream] = []
        self.summary: Summary | None = None
        self.stopped_by: str | None = None
        self.total_events = 0
        self._pending: deque[list[Item]] = deque()
        self._pending_events = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._live = 0

    # ------------------------------------------------------------------ producers
    async def _deliver(self, batch: list[Event]) -> None:
        pending = self._pending
        if pending:
            last = pending[-1]
            first = batch[0]
            # Equal stamps: the lower source index goes first (DESIGN.md "Ordering").
            if isinstance(last[0], Event) and last[0].arrival_ns == first.arrival_ns and last[0].source > first.source:
                pending.insert(len(pending) - 1, batch)
            else:
                pending.append(batch)
        else:
            pending.append(batch)
        self._pending_events += len(batch)
        self._wake.set()
        if self._pending_events > self.queue_limit:
            self._space.clear()
            await self._space.wait()

    async def _run_source(self, stream: SSEStream) -> None:
        try:
            report = await stream.run(self._deliver)
            if report.status == "failed":
                self._pending.append([SourceError(stream.source, stream.url, report.error or "failed")])
        finally:
            self._live -= 1
            self._wake.set()

    # ------------------------------------------------------------------ consumer
    async def stream(self) -> AsyncIterator[Item]:
        """Every event and source error, one at a time, in merged order."""
        async with contextlib.aclosing(self.stream_batches()) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def stream_batches(self) -> AsyncIterator[list[Item]]:
        """The merged sequence in lists (one per network read); cheaper for fast consumers.

        Closing this generator (aclose, Ctrl-C, a consumer that stops) cancels every
        source and closes every connection before it returns."""
        started = time.monotonic()
        deadline = started + self.max_duration if self.max_duration else None
        session = self.connector_factory() if self.connector_factory else make_session()
        self.streams = [
            SSEStream(session, index, request, self.config, self.observer)
            for index, request in enumerate(self.requests)
        ]
        self._live = len(self.streams)
        tasks = [asyncio.create_task(self._run_source(s)) for s in self.streams]
        try:
            while True:
                if self._pending:
                    batch = self._pending.popleft()
                    self._pending_events -= len(batch)
                    if self._pending_events <= self.queue_limit // 2:
                        self._space.set()
                    out = self._admit(batch)
                    if out:
                        yield out
                    if self.stopped_by:
                        break
                    continue
                if self.reorder is not None and self.reorder.held:
                    released = self._number(self.reorder.release(time.monotonic_ns()))
                    if released:
                        yield released
                        if self.stopped_by:
                            break
                        continue
                if self._live == 0:
                    break
                self._wake.clear()
                timeout = self._seconds_to_wait(deadline)
                if timeout is None:
                    await self._wake.wait()
                    continue
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    if deadline is not None and time.monotonic() >= deadline:
                        self.stopped_by = "max_duration"
                        break
            if self.reorder is not None and not self.stopped_by:
                rest = self._number(self.reorder.flush())
                if rest:
                    yield rest
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()
            self.summary = self._summarise(time.monotonic() - started)

    # ------------------------------------------------------------------ helpers
    def _seconds_to_wait(self, deadline: float | None) -> float | None:
        """Until the run's deadline or the next held event falls due, whichever is first."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.reorder is not None and self.reorder.held:
            due = max(0.0, (self.reorder.next_due_ns() - time.monotonic_ns()) / 1e9)
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _admit(self, batch: list[Item]) -> list[Item]:
        """De-duplicate, reorder and number one batch; apply max_events."""
        if self.dedup is not None:
            batch = [item for item in batch if not isinstance(item, Event) or self.dedup.admit(item)]
        if self.reorder is not None:
            errors = [item for item in batch if not isinstance(item, Event)]
            self.reorder.push([item for item in batch if isinstance(item, Event)])
            return errors + self._number(self.reorder.release(time.monotonic_ns()))
        return self._number(batch)

    def _number(self, batch: list[Item]) -> list[Item]:
        n = self.total_events
        limit = self.max_events
        for index, item in enumerate(batch):
            if type(item) is Event:
                if limit is not None and n >= limit:
                    self.stopped_by = "max_events"
                    del batch[index:]
                    break
                n += 1
                item.event_number = n
        self.total_events = n
        if limit is not None and n >= limit:
            self.stopped_by = "max_events"
        return batch

    def _summarise(self, elapsed: float) -> Summary:
        reports = [s.report for s in self.streams]
        for stream in self.streams:
            if stream.report.status in ("pending", "stopped"):
                stream.report.status = "stopped"
        if not self.stopped_by and any(s.stopped_by_stop_on for s in self.streams):
            self.stopped_by = "stop_on"
        failed = sum(1 for r in reports if r.status == "failed")
        if failed == 0:
            status = "completed"
        elif failed == len(reports):
            status = "failed"
        else:
            status = "partial"
        return Summary(status, self.total_events, round(elapsed, 3), reports, self.stopped_by)
