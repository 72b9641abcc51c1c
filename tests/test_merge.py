"""Fan-in across many sources: order, tagging, limits, backpressure, cancellation,
de-duplication and event-time order, against the real built-in server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

import orjson
import pytest

from fanin.events import Event, SourceError
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=20, max_backoff=0.1)


def raw_url(server, payload: bytes, chunk: int = 0, pause_ms: int = 0) -> str:
    b64 = base64.urlsafe_b64encode(payload).decode()
    return server.url(f"/raw?b64={b64}&chunk={chunk}&pause_ms={pause_ms}")


async def drain(fan):
    items = []
    async with contextlib.aclosing(fan.stream()) as stream:
        async for item in stream:
            items.append(item)
    return items


async def test_hundred_streams_all_delivered_numbered_and_ordered(sse_server):
    urls = [sse_server.url(f"/stream?count=20&size=8&rate=200&s={i}") for i in range(100)]
    fan = FanIn([Request(u) for u in urls], StreamConfig(**FAST))
    items = await drain(fan)
    events = [i for i in items if isinstance(i, Event)]
    assert len(events) == 2000
    assert [e.event_number for e in events] == list(range(1, 2001))
    stamps = [(e.arrival_ns, e.source) for e in events]
    assert stamps == sorted(stamps), "arrival order with ties to the lower source index"
    walls = [e.to_dict()["timestamp"] for e in events]
    assert walls == sorted(walls)
    for source in range(100):
        mine = [e for e in events if e.source == source]
        assert [e.event_id for e in mine] == [str(i) for i in range(1, 21)]
        assert all(e.url == urls[source] for e in mine)
    assert fan.summary.status == "completed" and fan.summary.total_events == 2000
    assert all(s.events == 20 and s.status == "completed" for s in fan.summary.sources)


async def test_partial_failure_is_reported_in_order_and_summary(sse_server):
    fan = FanIn([Request(sse_server.url("/stream?count=5")), Request(sse_server.url("/stream?status=404"))],
                StreamConfig(**FAST))
    items = await drain(fan)
    errors = [i for i in items if isinstance(i, SourceError)]
    assert len(errors) == 1 and errors[0].source == 1 and "HTTP 404" in errors[0].error
    assert fan.summary.status == "partial"
    assert [s.status for s in fan.summary.sources] == ["completed", "failed"]


async def test_max_events_is_exact_and_named(sse_server):
    fan = FanIn([Request(sse_server.url(f"/stream?count=0&s={i}")) for i in range(3)], StreamConfig(**FAST),
                max_events=250)
    items = await drain(fan)
    assert len(items) == 250 and items[-1].event_number == 250
    assert fan.summary.stopped_by == "max_events"
    assert fan.summary.status == "completed"
    assert all(s.status == "stopped" for s in fan.summary.sources)


async def test_max_duration_cuts_a_silent_stream(sse_server):
    t0 = time.monotonic()
    fan = FanIn([Request(sse_server.url("/stream?count=5&stall_after=2"))], StreamConfig(**FAST), max_duration=0.5)
    items = await drain(fan)
    elapsed = time.monotonic() - t0
    assert len(items) == 2
    assert 0.45 < elapsed < 3
    assert fan.summary.stopped_by == "max_duration"
    assert fan.summary.status == "completed"


async def test_slow_consumer_applies_backpressure_and_memory_stays_bounded(sse_server):
    fan = FanIn([Request(sse_server.url(f"/stream?count=0&size=64&s={i}")) for i in range(4)],
                StreamConfig(**FAST), queue_limit=500)
    peak = 0
    seen = 0
    async with contextlib.aclosing(fan.stream()) as stream:
        async for _item in stream:
            seen += 1
            peak = max(peak, fan.queue.held_events)
            if seen % 200 == 0:
                await asyncio.sleep(0.01)  # a slow consumer
            if seen >= 20_000:
                break
    # At most the limit plus one network read (64 KiB, ~800 of these events) per source.
    assert peak <= 500 + 4 * 820
    per_source = [s.events for s in fan.summary.sources]
    assert sum(per_source) >= 20_000


async def test_closing_the_consumer_closes_every_connection(fresh_server):
    fan = FanIn([Request(fresh_server.url(f"/stream?count=0&rate=50&s={i}")) for i in range(5)],
                StreamConfig(**FAST))
    async with contextlib.aclosing(fan.stream()) as stream:
        async for item in stream:
            if item.event_number >= 20:
                break
    assert fan.summary is not None
    for _ in range(100):
        if fresh_server.stats.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert fresh_server.stats.open_streams == 0


async def test_dedup_drops_replayed_own_ids_only(sse_server):
    payload = b"id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 1\ndata: a again\n\ndata: inherits 1\n\n"
    urls = [raw_url(sse_server, payload), raw_url(sse_server, payload, chunk=3)]
    items = await drain(FanIn([Request(u) for u in urls], StreamConfig(**FAST), dedup=True))
    for source in (0, 1):
        assert [e.data for e in items if e.source == source] == ["a", "b", "inherits 1"]
    items = await drain(FanIn([Request(urls[0])], StreamConfig(**FAST)))
    assert len(items) == 4


async def test_event_time_order_with_window_and_late_flag(sse_server):
    def ev(ts, name):
        return b"data: " + orjson.dumps({"ts": ts, "name": name}) + b"\n\n"

    first = raw_url(sse_server, ev(1000.3, "a3") + ev(1000.5, "a5"))
    second = raw_url(sse_server, ev(1000.1, "b1") + ev(1000.4, "b4"))
    fan = FanIn([Request(first), Request(second)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=300)
    items = await drain(fan)
    names = [orjson.loads(e.data)["name"] for e in items]
    assert names == ["b1", "a3", "b4", "a5"]
    assert [e.event_number for e in items] == [1, 2, 3, 4]
    assert not any(e.late for e in items)

    # A zero window releases at once: an event older than one already released is late, and kept.
    newer, older = ev(1000.9, "new"), ev(1000.2, "old")
    assert len(newer) == len(older)
    late_src = raw_url(sse_server, newer + older, chunk=len(newer), pause_ms=50)
    items = await drain(FanIn([Request(late_src)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=0))
    flags = {orjson.loads(e.data)["name"]: e.late for e in items}
    assert flags == {"new": False, "old": True}
    assert items[[orjson.loads(e.data)["name"] for e in items].index("old")].to_dict()["late"] is True


@pytest.mark.parametrize("chunk", [0, 1, 7])
async def test_same_events_whatever_the_chunking(sse_server, chunk):
    payload = "data: héllo 你好 🌍\r\n\r\nid: 9\revent: x\rdata: y\r\r".encode()
    items = await drain(FanIn([Request(raw_url(sse_server, payload, chunk))], StreamConfig(**FAST)))
    assert [(e.event_type, e.data, e.event_id) for e in items] == [("message", "héllo 你好 🌍", ""), ("x", "y", "9")]


def test_reorderer_releases_by_window_in_event_time_order():
    from fanin.reorder import EventTimeReorderer

    def ev(arrival_ms, ts, name, wall_ns=0):
        data = orjson.dumps({"t": ts, "n": name}).decode()
        return Event(0, "u", "message", data, "", arrival_ms * 1_000_000, wall_ns)

    r = EventTimeReorderer("t", window_ms=100)
    r.push([ev(0, 5.0, "a"), ev(10, 3.0, "b"), ev(20, 4.0, "c")])
    assert r.next_due_ns() == 100 * 1_000_000
    assert r.release(99 * 1_000_000) == []
    # At 100 ms the first arrival is due: everything with an earlier timestamp leaves before it.
    names = [orjson.loads(e.data)["n"] for e in r.release(100 * 1_000_000)]
    assert names == ["b", "c", "a"]
    r.push([ev(150, 4.5, "late"), ev(160, 9.0, "d")])
    out = r.release(260 * 1_000_000)
    assert [(orjson.loads(e.data)["n"], e.late) for e in out] == [("late", True), ("d", False)]
    assert r.held == 0
    # ISO strings are read; an event without a usable timestamp takes its arrival wall time.
    r.push([ev(300, "not a time", "arrival", wall_ns=time.time_ns()), ev(301, "2026-01-01T00:00:00Z", "iso")])
    assert [orjson.loads(e.data)["n"] for e in r.flush()] == ["iso", "arrival"]
