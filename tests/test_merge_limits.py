"""Run limits that must hold whatever the consumer does: max_duration with a consumer that
awaits between items, against the real built-in server."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=20, max_backoff=0.1)
GENEROUS = 6.0  # seconds: a 1 s run on a loaded 2-core machine ends well within this


async def test_max_duration_ends_the_run_when_the_consumer_awaits_per_event(sse_server):
    fan = FanIn([Request(sse_server.url("/stream?count=0&size=16&md=1"))], StreamConfig(**FAST), max_duration=1)
    seen = 0
    t0 = time.monotonic()
    async with asyncio.timeout(20):  # the bug this guards against runs forever
        async with contextlib.aclosing(fan.stream()) as items:
            async for _ in items:
                seen += 1
                await asyncio.sleep(0)
    assert time.monotonic() - t0 < GENEROUS
    assert seen > 0
    assert fan.summary.stopped_by == "max_duration" and fan.summary.status == "completed"
    assert fan.summary.total_events == seen


async def test_max_duration_ends_the_run_when_the_consumer_sleeps_per_event(sse_server):
    """A slow consumer (1 ms per event) of a fast stream: one network read holds hundreds of
    events, so the deadline must be checked between events, not only between reads."""
    fan = FanIn([Request(sse_server.url("/stream?count=0&size=16&md=2"))], StreamConfig(**FAST), max_duration=1)
    seen = 0
    t0 = time.monotonic()
    async with asyncio.timeout(60):
        async with contextlib.aclosing(fan.stream()) as items:
            async for _ in items:
                seen += 1
                await asyncio.sleep(0.001)
    assert time.monotonic() - t0 < GENEROUS
    assert fan.summary.stopped_by == "max_duration"
    assert fan.summary.total_events == seen


async def test_max_duration_ends_the_run_when_a_batch_consumer_awaits(sse_server):
    fan = FanIn([Request(sse_server.url(f"/stream?count=0&size=16&md=3&s={i}")) for i in range(3)],
                StreamConfig(**FAST), max_duration=1)
    delivered = 0
    t0 = time.monotonic()
    async with asyncio.timeout(20):
        async with contextlib.aclosing(fan.stream_batches()) as batches:
            async for chunk in batches:
                delivered += sum(len(b) for b in chunk)
                await asyncio.sleep(0.002)
    assert time.monotonic() - t0 < GENEROUS
    assert fan.summary.stopped_by == "max_duration"
    assert fan.summary.total_events == delivered
