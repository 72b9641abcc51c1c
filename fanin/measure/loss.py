"""Delivery accounting for push streams: where each event carries a sequence number (its SSE
id with `--seq-ids`, or a number in its JSON data with `--seq-field PATH`), count per stream
the events lost (gaps), delivered twice (duplicates) or late (reordered), and how long a
stream took to deliver again after its connection dropped.

The hot path is one int() and one compare per event: the next expected number is `last + 1`.
Only a stream that shows a gap keeps anything more (the missing ranges, so that a late
arrival is told from a duplicate). Counts land in the run's `LoadMetrics` counters (summed
exactly across worker processes); the streams with any anomaly are listed, worst first."""

from __future__ import annotations

import time

import orjson

from fanin.extract import get_path
from fanin.measure.metrics import LoadMetrics

__all__ = ["LossTracker", "MAX_RANGES", "MAX_LISTED"]

MAX_RANGES = 64  # missing ranges remembered per stream (older ones: a late arrival counts as a duplicate)
MAX_LISTED = 1000  # streams with anomalies kept per process for the report


class LossTracker:
    """Per-slot sequence state for one process's slots."""

    def __init__(self, metrics: LoadMetrics, slots: int, field: tuple[str, ...] | None = None) -> None:
        self.m = metrics
        self.field = field  # None: the event id is the number
        self.last = [-1] * slots  # last in-order number; -1: no number seen on this stream yet
        self.missing: dict[int, list[list[int]]] = {}  # slot -> [[low, high], ...] counted lost
        self.per_slot: dict[int, list[int]] = {}  # slot -> [lost, duplicates, reordered]
        self.drop_ns = [0] * slots  # when the slot's connection dropped (0: not dropped)

    # -- the slot's life
    def new_stream(self, slot: int) -> None:
        """A fresh stream (a new user, no Last-Event-ID): its numbers start again."""
        self.last[slot] = -1
        self.missing.pop(slot, None)
        self.drop_ns[slot] = 0

    def dropped(self, slot: int) -> None:
        """The slot's open stream failed: time the resume from now."""
        self.drop_ns[slot] = time.monotonic_ns()

    # -- per delivered batch
    def batch(self, slot: int, messages: list, arrival_ns: int) -> None:
        if self.drop_ns[slot]:
            self.m.hist["resume"].pending.append((arrival_ns - self.drop_ns[slot]) // 1000)
            self.drop_ns[slot] = 0
        last = self.last[slot]
        field = self.field
        for message in messages:  # (type, data, id, own_id)
            try:
                if field is None:
                    if not message[3]:
                        raise ValueError
                    seq = int(message[2])
                else:
                    seq = get_path(orjson.loads(message[1]), field)
                    if isinstance(seq, str):
                        seq = int(seq)
                    elif not isinstance(seq, int) or isinstance(seq, bool):
                        raise ValueError
            except (ValueError, TypeError, orjson.JSONDecodeError):
                self.m.seq_missing += 1
                continue
            if seq == last + 1 or last < 0:
                if last < 0:
                    self.m.seq_streams += 1
                last = seq
                continue
            last = self._anomaly(slot, seq, last)
        self.last[slot] = last

    def _anomaly(self, slot: int, seq: int, last: int) -> int:
        """A number other than the next: a gap (returns the new last), or an old one."""
        m = self.m
        counts = self.per_slot.get(slot)
        if counts is None:
            if len(self.per_slot) >= MAX_LISTED:
                counts = [0, 0, 0]  # counted in the totals, not listed
            else:
                counts = self.per_slot[slot] = [0, 0, 0]
        if seq > last:
            lost = seq - last - 1
            m.lost += lost
            counts[0] += lost
            ranges = self.missing.setdefault(slot, [])
            ranges.append([last + 1, seq - 1])
            if len(ranges) > MAX_RANGES:
                del ranges[0]
            return seq
        for index, (low, high) in enumerate(self.missing.get(slot, ())):
            if low <= seq <= high:  # one that was counted lost arrived late
                ranges = self.missing[slot]
                pieces = [r for r in ([low, seq - 1], [seq + 1, high]) if r[0] <= r[1]]
                ranges[index:index + 1] = pieces
                m.lost -= 1
                m.reordered += 1
                counts[0] -= 1
                counts[2] += 1
                return last
        m.duplicates += 1
        counts[1] += 1
        return last

    def listed(self) -> list[list[int]]:
        """[slot, lost, duplicates, reordered] of each stream with an anomaly."""
        return [[slot, *counts] for slot, counts in self.per_slot.items() if any(counts)]


def delivery_section(metrics: LoadMetrics, listed: list[list[int]], source: str) -> dict:
    """The report's `delivery` section (present only when numbers were tracked)."""
    worst = sorted(listed, key=lambda r: (-(r[1] + r[2] + r[3]), r[0]))
    resume = metrics.hist["resume"].summary_ms()
    return {
        "sequence": source,
        "streams_tracked": metrics.seq_streams,
        "streams_with_anomalies": len(worst),
        "lost": metrics.lost,
        "duplicates": metrics.duplicates,
        "reordered": metrics.reordered,
        "events_without_number": metrics.seq_missing,
        "resume_ms": resume,
        "worst_streams": [{"slot": r[0], "lost": r[1], "duplicates": r[2], "reordered": r[3]} for r in worst[:20]],
    }
