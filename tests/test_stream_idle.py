"""The idle timeout against the real built-in server: it ends a silent connection, and it
never throws away what the connection already received (a slow consumer, a small queue)."""

from __future__ import annotations

import asyncio
import contextlib

from fanin.events import Event, SourceError
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig


async def test_idle_timeout_delivers_everything_received_before_the_silence(fresh_server):
    # 70 events in a few reads over about 70 ms, then silence. The consumer takes 0.6 s per
    # read and the queue holds one event, so most of the 70 still wait in the client's
    # buffers when the 0.3 s idle timer fires: they must be delivered, then the failure.
    url = fresh_server.url("/stream?count=100&stall_after=70&rate=1000")
    fan = FanIn([Request(url)], StreamConfig(idle_timeout=0.3, retries=0, default_retry_ms=20), queue_limit=1)
    items = []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream_batches()) as batches:
            async for chunk in batches:
                for item in chunk:
                    items.extend(item.events() if not isinstance(item, SourceError) else [item])
                await asyncio.sleep(0.6)
    events = [i for i in items if isinstance(i, Event)]
    assert [e.event_id for e in events] == [str(i) for i in range(1, 71)]
    errors = [i for i in items if isinstance(i, SourceError)]
    assert len(errors) == 1 and "no data for 0.3s" in errors[0].error
    assert items[-1] is errors[0], "the idle failure comes after every received event"
    assert fan.summary.sources[0].status == "failed"


async def test_idle_timeout_counts_only_silence_not_a_slow_consumer(fresh_server):
    """A consumer slower than the idle timeout, on a stream that never goes quiet: the time
    spent waiting for the consumer is not idle time, so no reconnect happens."""
    url = fresh_server.url("/stream?count=5&rate=50")
    fan = FanIn([Request(url)], StreamConfig(idle_timeout=0.3, retries=0), queue_limit=1)
    items = []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream()) as stream:
            async for item in stream:
                items.append(item)
                await asyncio.sleep(0.4)
    assert [e.event_id for e in items] == [str(i) for i in range(1, 6)]
    assert fan.summary.status == "completed" and fan.summary.sources[0].reconnects == 0


async def test_a_connection_cut_while_the_consumer_is_slow_loses_nothing_received(fresh_server):
    """aiohttp raises a cut connection's error before handing out the bytes it had already
    buffered. A slow consumer (small queue) leaves most of the 70 events that arrived before
    the cut in those buffers; with ids off there is no resume to fetch them again, so they
    must be delivered from what was received, then the failure."""
    url = fresh_server.url("/stream?count=200&abort_every=70&rate=1000&ids=0")
    fan = FanIn([Request(url)], StreamConfig(reconnect="never", retries=0), queue_limit=1)
    items = []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream_batches()) as batches:
            async for chunk in batches:
                for item in chunk:
                    items.extend(item.events() if not isinstance(item, SourceError) else [item])
                await asyncio.sleep(0.5)
    events = [i for i in items if isinstance(i, Event)]
    assert [int(e.data.split()[0]) for e in events] == list(range(1, 71))
    errors = [i for i in items if isinstance(i, SourceError)]
    assert len(errors) == 1 and "cut mid-stream" in errors[0].error
    assert items[-1] is errors[0]
