"""What a load face records per stream: `LoadObserver` turns the engine's hooks and delivered
batches into `LoadMetrics` with as little work per event as possible (`fanin load` and
fanin.locust use the same one), plus the load session and the process's own measurements."""

from __future__ import annotations

import os
import time

import aiohttp
import orjson

from fanin.extract import get_path
from fanin.measure.metrics import LoadMetrics
from fanin.stream import StreamObserver

__all__ = ["LoadObserver", "make_load_session", "rss_bytes", "guess_unit_ns", "UNIT_NS"]

UNIT_NS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}


def rss_bytes() -> int:
    """This process's resident memory now (psutil when installed, else /proc, else the peak)."""
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def guess_unit_ns(value: float) -> float:
    """Nanoseconds per unit for an epoch timestamp, judged by its size (auto --latency-unit)."""
    value = abs(value)
    if value >= 1e17:
        return 1.0
    if value >= 1e14:
        return 1e3
    if value >= 1e11:
        return 1e6
    return 1e9


class LoadObserver(StreamObserver):
    """Engine hooks and delivered batches -> LoadMetrics, with as little work per event as possible."""

    def __init__(self, metrics: LoadMetrics, slots: int, latency_path: tuple[str, ...] | None, latency_unit: str,
                 loss=None):
        self.m = metrics
        self.loss = loss  # delivery accounting (fanin.measure.loss.LossTracker), when the events are numbered
        self.connected = bytearray(slots)
        self.open_ns = [0] * slots  # request start of the current connection
        self.last_ns = [0] * slots  # arrival of the last read with events (0: none yet)
        self.frozen = False  # set at the end of the run: teardown is not measured
        self.latency_path = latency_path
        self.unit_ns = None if latency_unit == "auto" else UNIT_NS[latency_unit]
        self._connect = metrics.hist["connect"].pending
        self._ttfe = metrics.hist["ttfe"].pending
        self._gap_rec = metrics.hist["gap"]
        self._gap = self._gap_rec.pending
        self._latency = metrics.hist["latency"].pending

    # -- engine hooks
    def on_connect(self, source: int, connect_ns: int) -> None:
        if self.frozen:
            return
        m = self.m
        m.connections_opened += 1
        self._connect.append(connect_ns // 1000)
        if not self.connected[source]:  # (after a clean end with --reconnect always it still is)
            self.connected[source] = 1
            m.active += 1
            if m.active > m.peak_active:
                m.peak_active = m.active
        self.open_ns[source] = time.monotonic_ns() - connect_ns
        self.last_ns[source] = 0

    def on_bytes(self, source: int, n: int) -> None:
        self.m.bytes += n

    def on_failure(self, source: int, kind: str, message: str) -> None:
        if self.frozen:
            return
        m = self.m
        kind = str(kind)  # a FailureKind as a plain str: orjson takes only exact str as a key
        m.errors[kind] += 1
        if kind not in m.error_examples:
            m.error_examples[kind] = message
        if self.connected[source]:
            self.connected[source] = 0
            m.active -= 1
            m.stream_errors += 1
            if self.loss is not None:
                self.loss.dropped(source)
        else:
            m.connections_failed += 1

    def on_reconnect(self, source: int) -> None:
        if not self.frozen:
            self.m.reconnects += 1

    def on_end(self, source: int, status: str) -> None:
        if self.frozen:
            return
        m = self.m
        if self.connected[source]:
            self.connected[source] = 0
            m.active -= 1
        if status == "completed":
            m.streams_completed += 1
        elif status == "failed":
            m.streams_failed += 1

    # -- delivered events (one fanin.events.Batch per network read of one source)
    async def deliver(self, batch) -> None:
        if self.frozen:
            return
        source = batch.source
        arrival = batch.arrival_ns
        n = len(batch.messages)
        self.m.events += n
        last = self.last_ns[source]
        if last:
            self._gap.append((arrival - last) // 1000)
        else:
            self._ttfe.append((arrival - self.open_ns[source]) // 1000)
        if n > 1:  # the rest arrived in the same read: gap 0
            self._gap_rec.zeros += n - 1
        self.last_ns[source] = arrival
        if self.loss is not None:
            self.loss.batch(source, batch.messages, arrival)
        if self.latency_path is not None:
            self._record_latency(batch.messages, batch.wall_ns)

    def _record_latency(self, messages: list, wall_ns: int) -> None:
        """Arrival wall clock minus the send timestamp read from each event's JSON data."""
        loads, path, out, m = orjson.loads, self.latency_path, self._latency, self.m
        for message in messages:  # (type, data, id, own_id)
            try:
                value = get_path(loads(message[1]), path)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    value = None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                m.latency_missing += 1
                continue
            unit = self.unit_ns
            if unit is None:
                unit = self.unit_ns = guess_unit_ns(value)
            latency = (wall_ns - int(value * unit)) // 1000
            if latency < 0:
                m.latency_negative += 1
                latency = 0
            out.append(latency)


def make_load_session() -> aiohttp.ClientSession:
    """Like the engine's session (no connection cap) but without trust_env: a load test goes
    straight to the URLs the user gave, never through a proxy from the environment, and
    skipping the per-request proxy/.netrc lookups is what lets thousands of streams open fast."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False, auto_decompress=True
    )
