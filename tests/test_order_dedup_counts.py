"""--order-by, --dedup and the counts: held events are delivered when a limit ends the run,
per-source counts are what the consumer got, timestamps are read one way whatever their
JSON type, an empty id is no id, and equal stamps tie to the lower source index."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

import orjson
import pytest

from fanin.events import Batch, Event
from fanin.merge import FanIn
from fanin.reorder import event_time_ns
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=20, max_backoff=0.1)


def raw_url(server, payload: bytes, **extra) -> str:
    b64 = base64.urlsafe_b64encode(payload).decode()
    return server.url(f"/raw?b64={b64}" + "".join(f"&{k}={v}" for k, v in extra.items()))


async def drain(fan):
    items = []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream()) as stream:
            async for item in stream:
                items.append(item)
    return items


def assert_counts_match(fan, items):
    events = [i for i in items if isinstance(i, Event)]
    assert fan.summary.total_events == len(events)
    for report in fan.summary.sources:
        assert report.events == sum(1 for e in events if e.source == report.source), report
    assert sum(s.events for s in fan.summary.sources) == fan.summary.total_events


async def test_events_held_for_reordering_are_delivered_when_max_duration_ends_the_run(sse_server):
    # Ten events arrive at once, then the stream stays open and silent. The window (5 s)
    # outlasts the run (0.5 s): every event is still in the window when the run ends.
    url = sse_server.url("/stream?count=20&stall_after=10&ts=1&size=40&tag=held")
    fan = FanIn([Request(url)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=5000, max_duration=0.5)
    t0 = time.monotonic()
    items = await drain(fan)
    assert time.monotonic() - t0 < 4
    assert [e.event_id for e in items] == [str(i) for i in range(1, 11)]
    assert [e.event_number for e in items] == list(range(1, 11))
    assert fan.summary.stopped_by == "max_duration"
    assert_counts_match(fan, items)


async def test_held_events_flushed_at_max_events_stop_at_the_limit(sse_server):
    url = sse_server.url("/stream?count=20&stall_after=10&ts=1&size=40&tag=held2")
    fan = FanIn([Request(url)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=5000, max_duration=0.5,
                max_events=4)
    items = await drain(fan)
    assert [e.event_id for e in items] == ["1", "2", "3", "4"]
    assert fan.summary.stopped_by == "max_events"
    assert_counts_match(fan, items)


async def test_per_source_counts_exclude_events_cut_by_max_events(sse_server):
    fan = FanIn([Request(sse_server.url(f"/stream?count=0&size=16&s={i}")) for i in range(3)],
                StreamConfig(**FAST), max_events=250)
    items = await drain(fan)
    assert len(items) == 250
    assert_counts_match(fan, items)


async def test_per_source_counts_exclude_events_cut_by_the_deadline(sse_server):
    fan = FanIn([Request(sse_server.url(f"/stream?count=0&size=16&dl={i}")) for i in range(2)],
                StreamConfig(**FAST), max_duration=0.5)
    items = []
    async with contextlib.aclosing(fan.stream()) as stream:
        async for item in stream:
            items.append(item)
            await asyncio.sleep(0)
    assert fan.summary.stopped_by == "max_duration"
    assert_counts_match(fan, items)


async def test_per_source_counts_exclude_events_dropped_by_dedup(sse_server):
    payload = b"id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 1\ndata: replay\n\n"
    fan = FanIn([Request(raw_url(sse_server, payload))], StreamConfig(**FAST), dedup=True)
    items = await drain(fan)
    assert [e.data for e in items] == ["a", "b"]
    assert_counts_match(fan, items)


async def test_dedup_does_not_treat_an_empty_id_as_an_id(sse_server):
    # `id:` with no value resets the last event id: it names nothing, so two of them are
    # not a repeat.
    payload = b"id: 1\ndata: a\n\nid:\ndata: b\n\nid:\ndata: c\n\nid: 1\ndata: replay\n\n"
    items = await drain(FanIn([Request(raw_url(sse_server, payload))], StreamConfig(**FAST), dedup=True))
    assert [(e.data, e.event_id) for e in items] == [("a", "1"), ("b", ""), ("c", "")]


@pytest.mark.parametrize("number", [1_700_000_000, 1_700_000_000_123, 1_700_000_000_123_456, 1_700_000_000_123_456_789,
                                    1_700_000_000.5, 1_700_000_000_123.25])
def test_a_numeric_string_timestamp_reads_like_the_number(number):
    assert event_time_ns(str(number)) == event_time_ns(number)
    assert event_time_ns(f" {number} ") == event_time_ns(number)


def test_numbers_are_read_by_magnitude_exactly():
    assert event_time_ns(1_700_000_000) == 1_700_000_000 * 10**9
    assert event_time_ns(1_700_000_000_123) == 1_700_000_000_123 * 10**6
    assert event_time_ns(1_700_000_000_123_456) == 1_700_000_000_123_456 * 10**3
    assert event_time_ns(1_700_000_000_123_456_789) == 1_700_000_000_123_456_789  # exact, no float rounding
    assert event_time_ns("1.7e9") == 1_700_000_000 * 10**9
    for bad in ("nan", "inf", "-inf", "1e999", "", "12abc", "9" * 5000, True, None, [1], {"a": 1}):
        assert event_time_ns(bad) is None


def test_an_iso_time_without_a_zone_is_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # UTC+8: a local-time reading would be 8 h off
    time.tzset()
    try:
        utc = event_time_ns("2026-01-01T00:00:00Z")
        assert event_time_ns("2026-01-01T00:00:00") == utc
        assert event_time_ns("2026-01-01T00:00:00.000001") == utc + 1000
        assert event_time_ns("2026-01-01T08:00:00+08:00") == utc
        assert utc == 1_767_225_600 * 10**9
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_equal_stamps_tie_to_the_lower_source_against_every_queued_item():
    fan = FanIn([Request(f"http://127.0.0.1/{i}") for i in range(4)], queue_limit=100)

    def batch(source, stamp):
        return Batch(source, f"u{source}", stamp, 0, [("message", f"s{source}", "", False)])

    await fan.queue.put(batch(0, 4))
    await fan.queue.put(batch(2, 5))
    await fan.queue.put(batch(3, 5))
    await fan.queue.put(batch(1, 5))   # goes before both 2 and 3, not only before the last
    await fan.queue.put(batch(0, 5))
    await fan.queue.put(batch(3, 6))
    await fan.queue.put(batch(2, 6))
    assert [(b.arrival_ns, b.source) for b in fan.queue] == [(4, 0), (5, 0), (5, 1), (5, 2), (5, 3), (6, 2), (6, 3)]


async def test_event_time_order_holds_across_sources_with_string_and_iso_stamps(sse_server):
    def ev(ts, name):
        return b"data: " + orjson.dumps({"ts": ts, "name": name}) + b"\n\n"

    first = raw_url(sse_server, ev("1700000000300", "a3") + ev("2023-11-14T22:13:20.500", "a5"))
    second = raw_url(sse_server, ev(1700000000.1, "b1") + ev("1700000000400000", "b4"))
    fan = FanIn([Request(first), Request(second)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=300)
    items = await drain(fan)
    assert [orjson.loads(e.data)["name"] for e in items] == ["b1", "a3", "b4", "a5"]
    assert not any(e.late for e in items)


async def test_events_held_for_reordering_count_toward_the_queue_limit(sse_server):
    """With --order-by the window holds rate x window events; they count toward queue_limit
    (the readers wait), so memory stays bounded and nothing is dropped."""
    url = sse_server.url("/stream?count=0&size=64&ts=1&tag=bound")
    fan = FanIn([Request(url)], StreamConfig(**FAST), order_by="ts", reorder_window_ms=300, queue_limit=200,
                max_duration=1.5)
    peak = 0
    numbers, ids = [], []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream_batches()) as batches:
            async for chunk in batches:
                queued = sum(len(b) for b in fan.queue if isinstance(b, Batch))
                peak = max(peak, queued + fan.reorder.held)
                numbers.extend(b.first_number + k for b in chunk for k in range(len(b)))
                ids.extend(int(m[2]) for b in chunk for m in b.messages)
    # The limit plus one 64 KiB read (about 700 of these events) per source.
    assert peak <= 200 + 1000, peak
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    assert ids == list(range(1, len(ids) + 1)), "none lost, none repeated, in order"
    assert fan.summary.total_events == len(numbers)
