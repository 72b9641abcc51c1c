"""Fan-in: N sources on one aiohttp session, merged into one arrival-ordered sequence.

FanIn checks the run's arguments, owns the session and the source tasks, applies the
run's deadline and writes the summary. The two jobs in between have their own modules:
`fanin.arrivals.ArrivalQueue` (the bounded queue in stamp order, with backpressure) and
`fanin.admission.Admission` (dedup, reorder, numbering, max_events).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import urllib.request
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import aiohttp

from .admission import Admission
from .arrivals import ArrivalQueue, Item
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


def make_session(connector: aiohttp.BaseConnector | None = None, **connector_kwargs: Any) -> aiohttp.ClientSession:
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
                 connector_factory: Callable[[], aiohttp.ClientSession] | None = None,
                 check_hop: HopCheck | None = None) -> None:
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
        # The public seams: sources put their batches on `queue`; `admission` decides
        # what leaves it, numbered. Each can be driven alone (tests do).
        self.queue = ArrivalQueue(self.queue_limit)
        self.admission = Admission(len(self.requests), max_events=max_events, dedup=self.dedup, reorder=self.reorder)
        self._live = 0
        self._deadline: float | None = None
        self._started = False

    @property
    def total_events(self) -> int:
        """Events handed to the consumer so far, numbered 1..total_events."""
        return self.admission.total_events

    @functools.cached_property
    def secrets(self) -> Secrets:
        """Every form of every secret the run sends: faces mask the text they compose with it."""
        return Secrets.union(r.secrets for r in self.requests)

    # ------------------------------------------------------------------ producers
    async def _run_source(self, stream: SSEStream) -> None:
        try:
            try:
                await stream.run(self.queue.put)
            except Exception as exc:  # e.g. an observer's on_end raised: still this source's failure
                stream.fail_unexpected(exc)
            if stream.report.status == "failed":
                self.queue.put_error(SourceError.of(stream.report))
        finally:
            self._live -= 1
            self.queue.notify()

    # ------------------------------------------------------------------ consumer
    async def stream(self) -> AsyncGenerator[Event | SourceError, None]:
        """Every event and source error, one at a time, in merged order.

        max_duration is checked before each event: a consumer that awaits per event must
        not stretch the run by the length of one network read's worth of events."""
        async with contextlib.aclosing(self.stream_batches()) as batches:
            async for chunk in batches:
                timed = self._deadline is not None
                for index, item in enumerate(chunk):
                    if not isinstance(item, Batch):
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
        tasks: list[asyncio.Task[None]] = []
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
            queue, admission = self.queue, self.admission
            while True:
                # Every pass, not only when the wait below times out: a consumer that awaits
                # between items keeps the queue non-empty, so that wait may never happen.
                if self.stopped_by or (deadline is not None and time.monotonic() >= deadline):
                    self.stopped_by = self.stopped_by or "max_duration"
                    break
                if queue:
                    out, left = admission.admit(queue.pop(), time.monotonic_ns())
                else:
                    out, left = admission.release(time.monotonic_ns())  # held events now due, if any
                    if not out:
                        if self._live == 0:
                            break
                        await queue.wait(self._seconds_to_wait(deadline))
                        continue
                queue.free(left)
                if admission.full:
                    self.stopped_by = "max_events"
                if out:
                    yield out
                if self.stopped_by:
                    break
            if self.stopped_by != "max_events":
                # Held events arrived before the run ended (the end of every source, the
                # deadline): deliver them in event-time order rather than lose them.
                rest, left = admission.flush()
                queue.free(left)
                if admission.full:  # the flush reached the limit: that is what ended the run
                    self.stopped_by = "max_events"
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
        """The deadline passed while stream() was handing out `chunk`: the rest was
        numbered but never delivered."""
        self.stopped_by = "max_duration"
        self.admission.take_back(chunk, index, offset)

    def _seconds_to_wait(self, deadline: float | None) -> float | None:
        """Until the run's deadline or the next held event falls due, whichever is first."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        due_ns = self.admission.next_due_ns()
        if due_ns is not None:
            due = max(0.0, (due_ns - time.monotonic_ns()) / 1e9)
            timeout = due if timeout is None else min(timeout, due)
        return timeout

    def _summarise(self, elapsed: float) -> Summary:
        reports = [s.report for s in self.streams]
        for report in reports:  # what the consumer got, not what the source read: they sum to total_events
            report.events = self.admission.delivered[report.source]
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
