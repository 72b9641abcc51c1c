"""One `fanin load` process: holds its share of the connections for the run's duration.

Each connection slot runs the engine's `SSEStream` with a `LoadObserver` that turns the
engine's hooks and delivered batches into `LoadMetrics`. A slot whose stream ends cleanly
(after delivering events) opens a fresh one, like a new user, so the concurrency holds; a
stream the engine gives up on leaves its slot empty (counted as failed). A 100 ms ticker
measures event-loop lag (client saturation) and calls `progress` once a second."""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from typing import Callable

from fanin.load.kinds import LoadFailure
from fanin.load.lean_http import LeanSession
from fanin.measure.loss import LossTracker
from fanin.load.result import ALL_FAILED, RunResult, Window
from fanin.measure.metrics import LoadMetrics, record_corrected
from fanin.measure.observer import LoadObserver, make_load_session, rss_bytes
from fanin.stream import Request, SSEStream, StreamConfig

__all__ = ["LoadPlan", "LoadRunner", "TICK_S", "OPENING_AT_ONCE"]

TICK_S = 0.1
OPENING_AT_ONCE = 256  # requests waiting for response headers at once (as the engine's FanIn)


@dataclass
class LoadPlan:
    """What one process does: which slots (global indices), when each starts, what to send."""

    requests: list[Request]  # one per target URL; slot i uses requests[i % len(requests)]
    config: StreamConfig
    slots: list[int]
    start_offsets: list[float]  # seconds after the start, per slot
    total_slots: int
    duration: float
    latency_path: tuple[str, ...] | None = None
    latency_unit: str = "auto"
    warmup: float = 0.0  # seconds: gap/latency/lag histograms and rates start after this
    tick_s: float = TICK_S  # event-loop lag probe interval
    sequence: str | None = None  # delivery accounting: "id", "data PATH", or None (off)
    seq_field: tuple[str, ...] | None = None  # the path with "data PATH"
    http_client: str = "lean"  # lean (fanin.load.lean_http) or aiohttp (the engine's session)


class LoadRunner:
    """Runs a LoadPlan to its end (duration reached, stop() called, or every slot given up
    before any stream opened) and returns its RunResult."""

    def __init__(self, plan: LoadPlan, progress: Callable[[LoadMetrics, float], None] | None = None):
        self.plan = plan
        self.progress = progress
        self.metrics = LoadMetrics()
        self.loss = (LossTracker(self.metrics, plan.total_slots, plan.seq_field)
                     if plan.sequence is not None else None)
        self.observer = LoadObserver(self.metrics, plan.total_slots, plan.latency_path, plan.latency_unit,
                                     loss=self.loss)
        self._open_gate: asyncio.Semaphore | None = None  # made in run(), inside the loop
        self.stopping = False
        self._stop = asyncio.Event()
        self.cpu_percents: list[float] = []
        self.window = {"from_s": 0.0, "events": 0, "bytes": 0}  # counts at the start of the measured window
        self._gc_done = False
        self._last_start = max(plan.start_offsets, default=0.0)
        self._shown = [(r.secrets, r.display_url) for r in plan.requests]  # once per request, not per stream
        self._slots_left = len(plan.slots)
        self._all_slots_done = asyncio.Event()

    def stop(self, interrupted: bool = False) -> None:
        self._stop.set()

    async def _slot(self, session, slot: int, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            index = slot % len(self.plan.requests)
            request, shown = self.plan.requests[index], self._shown[index]
            while not self.stopping:
                if self.loss is not None:
                    self.loss.new_stream(slot)
                stream = SSEStream(session, slot, request, self.plan.config, self.observer,
                                   open_gate=self._open_gate, shown=shown)
                try:
                    report = await stream.run(self.observer.deliver)
                except Exception as exc:  # a bug, not a server fault: count it rather than lose the slot silently
                    message = stream.secrets.scrub(f"load client error: {exc.__class__.__name__}: {exc}")
                    self.observer.on_failure(slot, LoadFailure.CLIENT, message)
                    self.observer.on_end(slot, "failed")
                    return
                if report.status != "completed" or report.events == 0:
                    return  # failed for good, or a clean end with nothing (e.g. 204): leave the slot empty
        finally:
            # Counted here rather than by waiting on every task: asyncio.wait() would hang a
            # callback list on each of 100,000 tasks.
            self._slots_left -= 1
            if not self._slots_left:
                self._all_slots_done.set()

    async def _ticker(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        lag = self.metrics.hist["lag"].pending
        tick = self.plan.tick_s
        tick_us = int(tick * 1e6)
        next_second = start + 1.0
        cpu_prev, wall_prev = time.process_time(), time.monotonic()
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            now = loop.time()
            record_corrected(lag, max(0, int((now - before - tick) * 1e6)), tick_us)
            self.metrics.sample_active(time.time())
            if self.plan.warmup and not self.window["from_s"] and now - start >= self.plan.warmup:
                self._end_warmup(now - start)
            if now >= next_second:
                next_second = max(next_second + 1.0, now + 0.5)  # a starved loop skips, never bursts
                if not self._gc_done:
                    # Thousands of long-lived stream objects make each full GC pass walk them
                    # all (0.5-1 s pauses at 10,000 streams). Once a second while streams open,
                    # move everything alive into the permanent generation, out of its way.
                    gc.freeze()
                    all_open = self.metrics.active >= len(self.plan.slots)
                    self._gc_done = all_open or now - start > self._last_start + 10
                cpu, wall = time.process_time(), time.monotonic()
                self.cpu_percents.append(100 * (cpu - cpu_prev) / max(wall - wall_prev, 1e-9))
                cpu_prev, wall_prev = cpu, wall
                if self.progress is not None:
                    self.metrics.flush()
                    self.progress(self.metrics, now - start)

    def _end_warmup(self, elapsed: float) -> None:
        """Start the measured window: steady-state histograms, rates and CPU from here on."""
        m = self.metrics
        m.flush()
        for name in ("gap", "latency", "lag"):
            m.hist[name].hist.reset()
        self.window = {"from_s": elapsed, "events": m.events, "bytes": m.bytes}
        self.cpu_percents.clear()
        self._cpu_start = time.process_time()

    async def _wait_for_end(self, tasks: list[asyncio.Task], start: float) -> str | None:
        """Until the duration is reached or stop() is called; sooner when every slot gave up
        without any stream having opened (a URL that cannot open: waiting is pointless)."""
        loop = asyncio.get_running_loop()
        stop_wait = asyncio.ensure_future(self._stop.wait())
        slots_done = asyncio.ensure_future(self._all_slots_done.wait()) if tasks else None
        waits = [stop_wait] + ([slots_done] if slots_done else [])
        try:
            while True:
                left = self.plan.duration - (loop.time() - start)
                if left <= 0:
                    return None
                done, _ = await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done:
                    return None
                if slots_done is not None and slots_done in done:
                    if self.metrics.connections_opened == 0:
                        return ALL_FAILED
                    waits = [stop_wait]  # streams ran and ended: measure to the end as before
                    slots_done = None
                if not done:
                    return None
        finally:
            stop_wait.cancel()
            if slots_done is not None:
                slots_done.cancel()

    async def run(self) -> RunResult:
        plan = self.plan
        loop = asyncio.get_running_loop()
        session = LeanSession() if plan.http_client == "lean" else make_load_session()
        # Like FanIn: at most OPENING_AT_ONCE requests wait for their response headers at
        # once. 100,000 requests in flight together leave the allocator at their peak.
        self._open_gate = asyncio.Semaphore(OPENING_AT_ONCE)
        try:
            rss_base = rss_bytes()
            self._cpu_start = time.process_time()
            start = loop.time()
            tasks = [
                asyncio.create_task(self._slot(session, slot, delay))
                for slot, delay in zip(plan.slots, plan.start_offsets)
            ]
            ticker = asyncio.create_task(self._ticker(start))
            stopped_by = await self._wait_for_end(tasks, start)
            elapsed = loop.time() - start
            cpu_seconds = time.process_time() - self._cpu_start
            # Freeze before teardown so closing connections is not counted as errors.
            self.observer.frozen = True
            self.stopping = True
            rss_end = rss_bytes()
            ticker.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.wait([*tasks, ticker], timeout=15)
        finally:
            await session.close()
        cpu = self.cpu_percents or [0.0]
        client = {
            "workers": 1,
            "cpu_percent_max": round(max(cpu), 1),
            "cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
            "cpu_seconds": round(cpu_seconds, 3),  # in the measured window (after --warmup)
            "rss_bytes": rss_end,
            "rss_baseline_bytes": rss_base,
            "rss_growth_bytes": max(0, rss_end - rss_base),
        }
        gc.unfreeze()
        if self.loss is not None:
            self.metrics.loss_listed = self.loss.listed()
        window = Window(
            from_s=round(self.window["from_s"], 3),
            events=self.metrics.events - self.window["events"],
            bytes=self.metrics.bytes - self.window["bytes"],
        )
        return RunResult([self.metrics.snapshot()], client, elapsed, window, stopped_by=stopped_by)
