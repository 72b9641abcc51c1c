"""Fan-in: N sources on one aiohttp session, merged into one arrival-ordered sequence.

Why the order holds: a source stamps a network read and appends its batch to the shared
deque in the same synchronous step (no await in between), so the deque is in stamp
order by construction. Backpressure: once the deque (plus, with --order-by, the events
held in the reorder window) holds more than `queue_limit` events, a source that appended
waits before reading again, so memory stays bounded (the limit plus at most one read
per source) and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import urllib.request
from collections import deque
from collections.abc import AsyncGenerator, Sequence

import aiohttp

from .dedup import IdDeduplicator
from .errors import UsageError
from .events import Batch, Event, SourceError, Summary
from .redact import Secrets
from .redirects import HopCheck
from .reorder import EventTimeReorderer
from .stream import Request, SSEStream, StreamConfig, StreamObserver

__all__ = ["FanIn", "make_session", "OPENING_AT_ONCE"]

# Requests of one run waiting for their response headers at the same time. Opening
# 10,000 sources all at once made the transient objects of every attempt live together;
# the allocator kept that peak (scale.py, 10,000 streams: 18.6 -> 15.4 KiB RSS per
# stream with 256) and streams opened no slower.
OPENING_AT_ONCE = 256

Item = Batch | SourceError


def make_session(connector: aiohttp.BaseConnector | None = None, **connector_kwargs) -> aiohttp.ClientSession:
    """One session for every source: no connection cap (thousands of streams), proxies
    from the environment (HTTP(S)_PROXY / NO_PROXY) when any is set."""
    if connector is None:
        connector_kwargs.setdefault("limit", 0)
        connector_kwargs.setdefault("limit_per_host", 0)
        connector_kwargs.setdefault("ttl_dns_cache", 300)
        connector = aiohttp.TCPConnector(**connector_kwargs)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        # Honour HTTP(S)_PROXY / NO_PROXY, but only look them up per request when some
        # proxy is configured: that lookup made 10,000 streams slow to open.
        trust_env=bool(urllib.request.getproxies()),
        auto_decompress=True,
    )


class FanIn:
    """Open every request, merge their events, apply the run's limits, then summarise."""

    def __init__(self, requests: Sequence[Request], config: StreamConfig | None = None, *,
                 max_events: int | None = None, max_duration: float | None = None,
                 stop_on: str | None = None, order_by: str | None = None,
                 reorder_window_ms: float = 500, dedup: bool = False,
                 observer: StreamObserver | None = None, queue_limit: int = 8192,
                 connector_factory=None, check_hop: HopCheck | None = None) -> None:
        if not requests:
            raise UsageError("no URL given")
        self.requests = list(requests)
        self.config = config or StreamConfig()
        if stop_on is not None:  # a copy: the caller's config is left as it was
            self.config = dataclasses.replace(self.config, stop_on=stop_on)
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
        self.check_hop = check_hop  # e.g. a destination guard: judges every URL before it is requested
        self.streams: list[SSEStream] = []
        self.summary: Summary | None = None
        self.stopped_by: str | None = None
        self.total_events = 0
        self._pending: deque[Item] = deque()
        self._pending_events = 0  # events queued, plus those held in the reorder window
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._live = 0
        self._deadline: float | None = None
        self._started = False
        self._delivered = [0] * len(self.requests)  # events handed to the consumer, per source

    @functools.cached_property
    def secrets(self) -> Secrets:
        """Every form of every secret the run sends: faces mask the text they compose with it."""
        return Secrets.union(r.secrets for r in self.requests)

    # ------------------------------------------------------------------ producers
    async def _deliver(self, batch: Batch) -> None:
        pending = self._pending
        # Equal stamps: the lower source index goes first (docs/cli.md, "Output"). The deque
        # is in stamp order, so the items with this stamp are a run at its end: step back
        # over every one of them from a higher source.
        stamp, source = batch.arrival_ns, batch.source
        at = len(pending)
        while at:
            prev = pending[at - 1]
            if type(prev) is Batch and prev.arrival_ns == stamp and prev.source > source:  # type: ignore[union-attr]
                at -= 1
            else:
                break
        if at == len(pending):
            pending.append(batch)
        else:
            pending.insert(at, batch)
        self._pending_events += len(batch)
        self._wake.set()
        if self._pending_events > self.queue_limit:
            self._space.clear()
            await self._space.wait()

    async def _run_source(self, stream: SSEStream) -> None:
        try:
            try:
                await stream.run(self._deliver)
            except Exception as exc:  # e.g. an observer's on_end raised: still this source's failure
                stream.fail_unexpected(exc)
            if stream.report.status == "failed":
                self._pending.append(SourceError.of(stream.report))
        finally:
            self._live -= 1
            self._wake.set()

    # ------------------------------------------------------------------ consumer
    async def stream(self) -> AsyncGenerator[Event | SourceError, None]:
        """Every event and source error, one at a time, in merged order.

        max_duration is checked before each event: a consumer that awaits per event must
        not stretch the run by the length of one network read's worth of events."""
        async with contextlib.aclosing(self.stream_batches()) as batches:
            async for chunk in batches:
                timed = self._deadline is not None
                for index, item in enumerate(chunk):
                    if type(item) is not Batch:
                        yield item
                        continue
                    if not timed:
                        for event in item.events():
                            yield event
                        continue
                    for offset, event in enumerate(item.events()):
                        if self._past_deadline():
                            self._cut(chunk, index, offset)
                            break
                        yield event
                    else:
                        continue
                    break

    async def stream_batches(self) -> AsyncGenerator[list[Item], None]:
        """The merged sequence as lists of Batch (one network read of one source, events
        numbered) and SourceError records; cheaper than stream() for fast consumers.

        Closing this generator (aclose, Ctrl-C, a consumer that stops) cancels every
        source and closes every connection before it returns.

        A FanIn runs once: its counts, limits and summary belong to that run, so a second
        iteration (of either method) raises UsageError; make a new FanIn instead."""
        if self._started:
            raise UsageError("this FanIn has already run; make a new FanIn for another run")
        self._started = True
        started = time.monotonic()
        deadline = self._deadline = started + self.max_duration if self.max_duration else None
        session: aiohttp.ClientSession | None = None
        tasks: list[asyncio.Task] = []
        try:
            session = self.connector_factory() if self.connector_factory else make_session()
            gate = asyncio.Semaphore(OPENING_AT_ONCE)
            self.streams = [
                SSEStream(session, index, request, self.config, self.observer, check_hop=self.check_hop,
                          open_gate=gate)
                for index, request in enumerate(self.requests)
            ]
            self._live = len(self.streams)
            tasks = [asyncio.create_task(self._run_source(s)) for s in self.streams]
            while True:
                # Every pass, not only when the wait below times out: a consumer that awaits
                # between items keeps the queue non-empty, so that wait may never happen.
                if self.stopped_by or (deadline is not None and time.monotonic() >= deadline):
                    self.stopped_by = self.stopped_by or "max_duration"
                    break
                if self._pending:
                    item = self._pending.popleft()
                    if type(item) is Batch and self.reorder is None:
                        self._free(len(item))
                    out = self._admit(item)
                    if out:
                        yield out
                    if self.stopped_by:
                        break
                    continue
                if self.reorder is not None and self.reorder.held:
                    released = self._number(self._release_held(self.reorder.release(time.monotonic_ns())))
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
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
            if self.reorder is not None and self.stopped_by != "max_events":
                # Held events arrived before the run ended (the end of every source, the
                # deadline): deliver them in event-time order rather than lose them.
                rest = self._number(self._release_held(self.reorder.flush()))
                if rest:
                    yield rest
        except (asyncio.CancelledError, GeneratorExit):  # a signal, or a consumer that stopped reading
            self.stopped_by = self.stopped_by or "interrupt"
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if session is not None:
                await session.close()
            if tasks:  # a run happened (setting it up did not raise): summarise it
                self.summary = self._summarise(time.monotonic() - started)

    # ------------------------------------------------------------------ helpers
    def _past_deadline(self) -> bool:
        """The run's time is up and nothing has ended it yet."""
        return self._deadline is not None and not self.stopped_by and time.monotonic() >= self._deadline

    def _cut(self, chunk: list[Item], index: int, offset: int) -> None:
        """The deadline passed while stream() was handing out `chunk`: the events from
        chunk[index] event `offset` on were numbered but never delivered, so take them back
        out of the counts."""
        self.stopped_by = "max_duration"
        for position in range(index, len(chunk)):
            item = chunk[position]
            if type(item) is Batch:
                dropped = len(item.messages) - (offset if position == index else 0)
                self.total_events -= dropped
                self._delivered[item.source] -= dropped

    def _seconds_to_wait(self, deadline: float | None) -> float | None:
        """Until the run's deadline or the next held event falls due, whichever is first."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.reorder is not None and self.reorder.held:
            due = max(0.0, (self.reorder.next_due_ns() - time.monotonic_ns()) / 1e9)
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _admit(self, item: Item) -> list[Item]:
        """De-duplicate, reorder and number one queued item; apply max_events."""
        if type(item) is not Batch:
            return [item]
        if self.dedup is not None:
            received = len(item.messages)
            item.messages = self.dedup.admit(item)
            if self.reorder is not None:
                self._free(received - len(item.messages))
            if not item.messages:
                return []
        if self.reorder is not None:
            self.reorder.push(item.events())
            return self._number(self._release_held(self.reorder.release(time.monotonic_ns())))
        return self._number([item])

    def _release_held(self, events: list[Event]) -> list[Event]:
        """Events leaving the reorder window no longer take room in the queue."""
        if events:
            self._free(len(events))
        return events

    def _free(self, n: int) -> None:
        """n events left the queue (or the reorder window): wake the readers once the
        backlog is down to half the limit."""
        self._pending_events -= n
        if self._pending_events <= self.queue_limit // 2:
            self._space.set()

    def _number(self, items: list) -> list[Item]:
        """Number events in merged order. Takes Batches, or Events released by the
        reorderer (each becomes a one-event Batch that keeps its late flag)."""
        limit = self.max_events
        out: list[Item] = []
        for item in items:
            if type(item) is Event:
                item = Batch(item.source, item.url, item.arrival_ns, item.wall_ns,
                             [(item.event_type, item.data, item.event_id, item.own_id)], item.late)
            if limit is not None:
                room = limit - self.total_events
                if room <= 0:
                    self.stopped_by = "max_events"
                    break
                if len(item.messages) > room:
                    item.messages = item.messages[:room]
            item.first_number = self.total_events + 1
            self.total_events += len(item.messages)
            self._delivered[item.source] += len(item.messages)
            out.append(item)
        if limit is not None and self.total_events >= limit:
            self.stopped_by = "max_events"
        return out

    def _summarise(self, elapsed: float) -> Summary:
        reports = [s.report for s in self.streams]
        for report in reports:  # what the consumer got, not what the source read: they sum to total_events
            report.events = self._delivered[report.source]
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
