"""The fan-in's two middle jobs, each driven alone without sockets (issue 16, item 4):
the arrival queue (stamp order, equal stamps to the lower source, backpressure) and the
admission pipeline (dedup, reorder, numbering, max_events, taking back what a deadline cut)."""

from __future__ import annotations

import asyncio

from fanin.admission import Admission
from fanin.arrivals import ArrivalQueue
from fanin.dedup import IdDeduplicator
from fanin.events import Batch, SourceError
from fanin.reorder import EventTimeReorderer


def batch(source: int, stamp: int, *ids: str) -> Batch:
    return Batch(source, f"u{source}", stamp, 0, [("message", f"d{i}", i, True) for i in ids])


async def test_the_queue_keeps_stamp_order_and_ties_go_to_the_lower_source():
    queue = ArrivalQueue(limit=100)
    for b in (batch(0, 4, "a"), batch(2, 5, "b"), batch(1, 5, "c"), batch(0, 6, "d")):
        await queue.put(b)
    queue.put_error(SourceError(3, "u3", "boom"))
    assert [(getattr(i, "arrival_ns", None), i.source) for i in queue] == [(4, 0), (5, 1), (5, 2), (6, 0), (None, 3)]
    assert queue.held_events == 4


async def test_a_producer_waits_past_the_limit_until_half_is_freed():
    queue = ArrivalQueue(limit=4)
    await queue.put(batch(0, 1, "1", "2", "3"))
    blocked = asyncio.create_task(queue.put(batch(0, 2, "4", "5")))  # 5 held > 4: waits
    await asyncio.sleep(0)
    assert not blocked.done()
    queue.pop()
    queue.free(2)  # 3 held: still over half of the limit
    await asyncio.sleep(0)
    assert not blocked.done()
    queue.free(1)  # 2 held: half the limit
    async with asyncio.timeout(5):
        await blocked
    assert queue.held_events == 2


def test_admission_numbers_in_order_and_stops_at_max_events():
    admission = Admission(2, max_events=4)
    out1, left1 = admission.admit(batch(0, 1, "a", "b", "c"), 0)
    out2, left2 = admission.admit(batch(1, 2, "x", "y"), 0)
    assert [b.first_number for b in out1 + out2] == [1, 4]
    assert [len(b) for b in out2] == [1], "cut to the limit"
    assert (left1, left2) == (3, 2) and admission.full and admission.delivered == [3, 1]


def test_admission_drops_repeated_ids_per_source():
    admission = Admission(2, dedup=IdDeduplicator())
    admission.admit(batch(0, 1, "1", "2"), 0)
    out, left = admission.admit(batch(0, 2, "2", "3"), 0)
    other, _ = admission.admit(batch(1, 3, "2"), 0)  # the same id from another source is its own
    assert [m[2] for b in out for m in b.messages] == ["3"] and left == 2
    assert len(other) == 1 and admission.total_events == 4


def test_admission_holds_for_reordering_and_reports_what_left():
    reorder = EventTimeReorderer("t", 100)
    admission = Admission(2, reorder=reorder, dedup=IdDeduplicator())

    def timed(source, stamp, t, event_id):
        return Batch(source, "u", stamp, 0, [("message", '{"t": %d}' % t, event_id, True)])

    out, left = admission.admit(timed(0, 1_000, 20, "a"), now_ns=1_000)
    assert out == [] and left == 0 and admission.holding
    out, left = admission.admit(timed(1, 2_000, 10, "b"), now_ns=2_000)
    out, left = admission.admit(timed(1, 3_000, 30, "b"), now_ns=3_000)  # a repeated id: dropped at once
    assert out == [] and left == 1
    out, left = admission.release(now_ns=1_000 + 100_000_000)
    assert [b.messages[0][2] for b in out] == ["b", "a"] and left == 2, "event-time order, both released"
    assert [b.first_number for b in out] == [1, 2]


def test_take_back_uncounts_what_was_numbered_but_not_handed_out():
    admission = Admission(2)
    chunk, _ = admission.admit(batch(0, 1, "a", "b", "c"), 0)
    more, _ = admission.admit(batch(1, 2, "x"), 0)
    admission.take_back(chunk + more, 0, 1)  # only "a" went out
    assert admission.total_events == 1 and admission.delivered == [1, 0]
