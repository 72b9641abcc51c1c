"""fanin.locust's loop-thread side: what the engine's hooks record while Locust users hold
streams, and the once-a-second hand-over to gevent.

Everything here runs on the bridge's loop thread only (the engine calls the observer
there, and gevent code reaches the state through `Bridge.call(recorder.take)`), so no lock
is needed and nothing per event ever enters gevent. Per-event values (inter-event gap,
end-to-end latency) go into fanin.load's HDR histograms, exactly as `fanin load` records
them; rare per-connection facts (connect, first event, connection end) are queued as
Locust request records."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fanin.measure.metrics import LoadMetrics, Recorder
from fanin.measure.observer import LoadObserver

__all__ = ["LocustObserver", "LoopRecorder", "CONNECT", "FIRST_EVENT", "STREAM", "GAP", "LATENCY", "FOLDED"]

# What each Locust entry measures: type "SSE", name "<name> [<measure>]".
CONNECT = "connect"  # request sent -> response accepted (200, text/event-stream)
FIRST_EVENT = "first event"  # request sent -> first event of that connection
STREAM = "stream"  # one connection's life, recorded when it ends (a failure names the kind)
GAP = "gap"  # time between consecutive events of one connection (one sample per event)
LATENCY = "latency"  # arrival wall clock minus the event's own send timestamp
FOLDED = (("gap", GAP), ("latency", LATENCY))  # histograms folded into Locust once a second

# (measure, name, response time ms, response length, failure text or None)
Record = tuple[str, str, float, int, str | None]


class LocustObserver(LoadObserver):
    """One hold()/stream() call: fanin load's observer (same metrics, same cost per event)
    plus a Locust record for each connect, first event and connection end."""

    def __init__(self, recorder: "LoopRecorder", name: str, latency_path: tuple[str, ...] | None) -> None:
        super().__init__(recorder.metrics_for(name), 1, latency_path, "auto")
        self.records = recorder.records
        self.name = name
        self.attempt_ns = time.monotonic_ns()
        self.connection_bytes = 0

    def _connection_ended(self, failure: str | None) -> None:
        lifetime_ms = (time.monotonic_ns() - self.open_ns[0]) / 1e6
        self.records.append((STREAM, self.name, lifetime_ms, self.connection_bytes, failure))

    def on_connect(self, source: int, connect_ns: int) -> None:
        if self.connected[source]:  # reconnect=always after a clean end: that connection ended well
            self._connection_ended(None)
        super().on_connect(source, connect_ns)
        self.connection_bytes = 0
        self.records.append((CONNECT, self.name, connect_ns / 1e6, 0, None))

    def on_bytes(self, source: int, n: int) -> None:
        self.m.bytes += n
        self.connection_bytes += n

    def on_failure(self, source: int, kind: str, message: str) -> None:
        if self.connected[source]:
            self._connection_ended(f"{kind}: {message}")
        else:
            waited_ms = (time.monotonic_ns() - self.attempt_ns) / 1e6
            self.records.append((CONNECT, self.name, waited_ms, 0, f"{kind}: {message}"))
        super().on_failure(source, kind, message)

    def on_reconnect(self, source: int) -> None:
        super().on_reconnect(source)
        self.attempt_ns = time.monotonic_ns()

    def on_end(self, source: int, status: str) -> None:
        if self.connected[source] and status == "completed":
            self._connection_ended(None)
        super().on_end(source, status)

    async def deliver(self, batch) -> None:
        if not self.last_ns[0]:
            self.records.append((FIRST_EVENT, self.name, (batch.arrival_ns - self.open_ns[0]) / 1e6, 0, None))
        await super().deliver(batch)


class LoopRecorder:
    """This process's measurements: one LoadMetrics per stats name and the Locust records
    queued since the last take()."""

    def __init__(self) -> None:
        self.metrics: dict[str, LoadMetrics] = {}
        self.records: list[Record] = []

    def metrics_for(self, name: str) -> LoadMetrics:
        metrics = self.metrics.get(name)
        if metrics is None:
            metrics = self.metrics[name] = LoadMetrics()
        return metrics

    def take(self) -> dict[str, Any]:
        """Everything new since the last call, for gevent: the queued records, per stats name
        the new gap/latency samples as (measure, name, [(microseconds, count)...]), and a cumulative snapshot
        of every histogram (what a worker sends its master)."""
        records = self.records.copy()
        self.records.clear()  # in place: live observers keep a reference to this list
        folds: list[tuple[str, str, list[tuple[int, int]]]] = []
        now = time.time()
        for name, metrics in self.metrics.items():
            for hist_name, measure in FOLDED:
                fresh = _take_pending(metrics.hist[hist_name])
                if fresh:
                    folds.append((measure, name, fresh))
            metrics.sample_active(now)  # the run over time (--sse-html's charts)
        snapshot = {name: metrics.snapshot() for name, metrics in self.metrics.items()}
        return {"records": records, "folds": folds, "snapshot": snapshot}


def _take_pending(recorder: Recorder) -> list[tuple[int, int]]:
    """The values recorded since the last flush, as (µs, count) pairs, and folded into the
    histogram on the way (one Counter pass, as Recorder.flush itself would make)."""
    fresh = Counter(recorder.pending)
    recorder.pending.clear()  # in place: the observers append to this very list
    if recorder.zeros:
        fresh[0] += recorder.zeros
        recorder.zeros = 0
    for value, n in fresh.items():
        recorder.record(value, n)
    return list(fresh.items())
