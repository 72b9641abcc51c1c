"""`fanin load --mode requests`: one process sending request-style SSE calls (an LLM's chat
completion, a Dify app's chat-messages) and measuring each one.

Each request is sent once, its stream read to the end (or `--stop-on`), and measured: time to
first token, the gaps between tokens, time per output token, end-to-end latency. It is never
re-sent (a failure is a failed request, counted by kind), since a resent POST would run the
remote model twice and measure something else.

Load models, as in k6 and GuideLLM:
- closed loop: `users` each send their next request when the last one ends;
- open loop: requests become due at `rate` per second (constant spacing, or Poisson with a
  seeded generator). A due request starts unless `max_in_flight` are running; then it is
  counted as not started (never queued, never hidden), and the schedule never catches up.
How late the open loop started each request (client scheduling slip) is kept in `start_delay`.

Requests started during the warm-up are run but not measured. After the sending phase ends
(`limit` measured requests issued, or `duration` reached), running requests get `grace` to
finish; the rest are cancelled and counted as interrupted (at once when Ctrl-C or SIGTERM
stopped the run). When the first requests all fail before any stream opened (a URL that
cannot open), the run ends early rather than fail the same way for its whole duration."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson

from fanin.extract import get_path
from fanin.load.apis import ApiReader, reader_for
from fanin.load.dataset import RequestSource
from fanin.load.kinds import CANNOT_OPEN, LoadFailure
from fanin.measure.metrics import LoadMetrics, record_corrected
from fanin.load.result import ALL_FAILED, RunResult, Window
from fanin.load.runner import TICK_S
from fanin.measure.observer import UNIT_NS, guess_unit_ns, make_load_session, rss_bytes
from fanin.load.slo import RequestTimes, Slo, meets_all
from fanin.load.tokenizer import TokenCounter, load_tokenizer
from fanin.stream import SSEStream, StreamConfig, StreamObserver

__all__ = ["RequestPlan", "RequestProbe", "RequestRunner", "next_gap"]


@dataclass
class RequestPlan:
    source: RequestSource
    config: StreamConfig  # reconnect "never", retries 0 (see the module docstring)
    users: int | None = None  # closed loop
    rate: float | None = None  # open loop, requests per second
    offset: float = 0.0  # open loop: the first request is due this long after the start (--workers)
    arrival: str = "constant"  # constant | poisson
    seed: int | None = None
    max_in_flight: int = 1000
    limit: int | None = None  # measured requests to issue
    duration: float | None = None  # seconds of sending (warm-up included)
    warmup: float = 0.0
    grace: float = 30.0
    extract: tuple[str, ...] | None = None
    usage: tuple[str, ...] | None = None
    slos: list[Slo] = field(default_factory=list)
    tick_s: float = TICK_S
    latency_path: tuple[str, ...] | None = None  # a send timestamp in each event's JSON
    latency_unit: str = "auto"
    api: str | None = None  # read events as this API (apis.py); None: --extract / --usage-field / raw data
    tokenizer: str | None = None  # count tokens with this tokenizer.json
    burstiness: float = 1.0  # gamma arrivals' shape (arrival "gamma")
    ramp_up: float | None = None  # open loop: the rate rises over this long
    ramp_strategy: str = "linear"  # linear | exponential
    ramp_start_rate: float = 0.0  # the rate at the start of the ramp
    user_ramp_up: float | None = None  # closed loop: users start spread over this long
    max_concurrency: int | None = None  # open loop: due requests wait for one of these places


def next_gap(rng: random.Random, arrival: str, rate: float, burstiness: float) -> float:
    """Seconds to the next due request at `rate` per second: constant spacing, Poisson
    (exponential gaps), or gamma gaps of shape `burstiness` and mean 1/rate, as vLLM's bench
    draws them (1 is Poisson; below 1 burstier, above 1 more regular)."""
    if arrival == "poisson":
        return rng.expovariate(rate)
    if arrival == "gamma":
        return rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
    return 1.0 / rate


class RequestProbe(StreamObserver):
    """Everything measured about one request: the engine's hooks plus its delivered batches."""

    __slots__ = ("extract", "usage_path", "start_ns", "first_event_ns", "first_ns", "last_ns", "tokens",
                 "events", "bytes", "gaps", "usage", "failure", "connect_ns", "latency_path", "unit_ns", "latencies",
                 "reader", "counter", "chunks", "second_ns", "input_usage", "api_error")

    def __init__(self, extract: tuple[str, ...] | None, usage_path: tuple[str, ...] | None,
                 latency_path: tuple[str, ...] | None = None, unit_ns: float | None = None,
                 reader: ApiReader | None = None, counter: TokenCounter | None = None) -> None:
        self.reader = reader  # an API's reader: text, usage and errors where that API puts them
        self.counter = counter  # --tokenizer: tokens per content chunk; None: one per chunk
        self.chunks = 0  # content chunks (each a token unless counted by the tokenizer)
        self.second_ns = 0  # arrival of the second token (the first chunk's, when it held two)
        self.input_usage: int | None = None
        self.api_error: str | None = None
        self.extract = extract
        self.usage_path = usage_path
        self.latency_path = latency_path
        self.unit_ns = unit_ns  # None: judged from the first value (auto)
        self.latencies: list[int] = []  # arrival wall clock - the event's send stamp, µs
        self.start_ns = time.monotonic_ns()
        self.first_event_ns = self.first_ns = self.last_ns = 0
        self.tokens = self.events = self.bytes = 0
        self.gaps: list[int] = []  # microseconds between consecutive tokens
        self.usage: int | None = None
        self.failure: tuple[str, str] | None = None
        self.connect_ns: int | None = None

    def on_connect(self, source: int, connect_ns: int) -> None:
        self.connect_ns = connect_ns

    def on_bytes(self, source: int, n: int) -> None:
        self.bytes += n

    def on_failure(self, source: int, kind: str, message: str) -> None:
        self.failure = (kind, message)

    async def deliver(self, batch) -> None:
        arrival = batch.arrival_ns
        if not self.first_event_ns:
            self.first_event_ns = arrival
        extract, usage_path, latency_path = self.extract, self.usage_path, self.latency_path
        self.events += len(batch.messages)
        if self.reader is not None:
            self._deliver_api(batch)
            return
        counter = self.counter
        for message in batch.messages:  # (type, data, id, own_id)
            data = message[1]
            if extract is None and usage_path is None and latency_path is None:
                is_token = bool(data)
            else:
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:  # [DONE], pings, plain text
                    obj = None
                if usage_path is not None and obj is not None:
                    used = get_path(obj, usage_path)
                    if isinstance(used, int) and not isinstance(used, bool):
                        self.usage = used
                if latency_path is not None and obj is not None:
                    sent = get_path(obj, latency_path)
                    if isinstance(sent, (int, float)) and not isinstance(sent, bool):
                        if self.unit_ns is None:
                            self.unit_ns = guess_unit_ns(sent)
                        self.latencies.append(max(0, (batch.wall_ns - int(sent * self.unit_ns)) // 1000))
                if extract is None:
                    is_token = bool(data)
                else:
                    value = get_path(obj, extract) if obj is not None else None
                    is_token = isinstance(value, str) and value != ""
                    if is_token and counter is not None:
                        data = value
            if is_token:
                self._content(arrival, counter.count(data) if counter is not None else 1)

    def _content(self, arrival: int, n: int) -> None:
        """A chunk carrying text arrived, worth `n` tokens: the first one is time to first
        token; the second token may arrive with it (a batched first chunk) or later."""
        if self.chunks:
            self.gaps.append((arrival - self.last_ns) // 1000)
        else:
            self.first_ns = arrival
        if not self.second_ns and self.tokens + n >= 2:
            self.second_ns = arrival
        self.last_ns = arrival
        self.tokens += n
        self.chunks += 1

    def _deliver_api(self, batch) -> None:
        reader, counter, latency_path = self.reader, self.counter, self.latency_path
        arrival = batch.arrival_ns
        for message in batch.messages:
            try:
                obj = orjson.loads(message[1])
            except orjson.JSONDecodeError:  # [DONE], keep-alives, plain text
                continue
            if type(obj) is not dict:
                continue
            text, used, used_in, error = reader.parse(obj)  # type: ignore[union-attr]
            if used is not None:
                self.usage = used
            if used_in is not None:
                self.input_usage = used_in
            if error is not None and self.api_error is None:
                self.api_error = error
            if latency_path is not None:
                sent = get_path(obj, latency_path)
                if isinstance(sent, (int, float)) and not isinstance(sent, bool):
                    if self.unit_ns is None:
                        self.unit_ns = guess_unit_ns(sent)
                    self.latencies.append(max(0, (batch.wall_ns - int(sent * self.unit_ns)) // 1000))
            if text is not None:
                self._content(arrival, counter.count(text) if counter is not None else 1)


class RequestRunner:
    """Runs a RequestPlan to its end and returns its RunResult."""

    def __init__(self, plan: RequestPlan, progress: Callable[[LoadMetrics, float], None] | None = None) -> None:
        self.plan = plan
        self.progress = progress
        self.metrics = LoadMetrics()
        self.in_flight = 0
        self.issued = 0  # measured requests issued (open loop: due, started or not)
        self.stopping = False
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.cpu_percents: list[float] = []
        self.interrupted = False
        self.opened_any = False
        self.open_failures = 0  # requests that failed before a stream opened (warm-up included)
        self.all_failed = False
        # this many attempts failed in a way that says the URL cannot open (kinds.CANNOT_OPEN),
        # and not one stream opened: stop
        self.give_up_after = max(3, plan.users or 1)
        self.reader = reader_for(plan.api)
        self.counter = load_tokenizer(plan.tokenizer)
        self.waiting = 0  # open loop: due requests waiting for a --max-concurrency place
        self._slots = asyncio.Semaphore(plan.max_concurrency) if plan.max_concurrency else None

    def stop(self, interrupted: bool = False) -> None:
        self.interrupted = self.interrupted or interrupted
        self._stop.set()

    # ------------------------------------------------------------------ one request
    async def _one(self, session, measured: bool, due: float | None) -> None:
        m = self.metrics
        loop = asyncio.get_running_loop()
        if due is not None and measured:
            m.hist["start_delay"].pending.append(max(0, int((loop.time() - due) * 1e6)))
        slots = self._slots
        if slots is not None:
            self.waiting += 1
            try:
                await slots.acquire()
            except asyncio.CancelledError:
                if measured:
                    m.requests_interrupted += 1
                raise
            finally:
                self.waiting -= 1
        try:
            if due is not None and measured:  # from due to sent: the schedule's slip plus the wait for a place
                m.hist["queue"].pending.append(max(0, int((loop.time() - due) * 1e6)))
            await self._send(session, measured)
        finally:
            if slots is not None:
                slots.release()

    async def _send(self, session, measured: bool) -> None:
        plan, m = self.plan, self.metrics
        probe = RequestProbe(plan.extract, plan.usage, plan.latency_path,
                             None if plan.latency_unit == "auto" else UNIT_NS[plan.latency_unit],
                             self.reader, self.counter)
        stream = SSEStream(session, 0, plan.source.next(), plan.config, probe)
        self.in_flight += 1
        m.active += 1
        if m.active > m.peak_active:
            m.peak_active = m.active
        probe.start_ns = time.monotonic_ns()
        try:
            report = await stream.run(probe.deliver)
            status, error, kind = report.status, report.error, report.kind
        except asyncio.CancelledError:
            if measured:
                m.requests_interrupted += 1
            raise
        except Exception as exc:  # a bug, not a server fault: count it, never lose it
            status, error, kind = "failed", f"load client error: {exc.__class__.__name__}: {exc}", None
            probe.failure = (LoadFailure.CLIENT, error)
        finally:
            self.in_flight -= 1
            m.active -= 1
        end_ns = time.monotonic_ns()
        if probe.connect_ns is not None:
            self.opened_any = True
        elif probe.failure is not None and probe.failure[0] in CANNOT_OPEN and not self.opened_any:
            self.open_failures += 1
            if self.open_failures >= self.give_up_after:
                self.all_failed = True
                self._stop.set()
        if not measured:
            m.requests_warmup += 1
            return
        self._record(probe, status, error, kind, end_ns)

    def _fail(self, kind: str, message: str | None) -> None:
        kind = str(kind)  # a FailureKind as a plain str: orjson takes only exact str as a key
        m = self.metrics
        m.requests_failed += 1
        m.errors[kind] += 1
        if kind not in m.error_examples:
            m.error_examples[kind] = message or kind

    def _record(self, probe: RequestProbe, status: str, error: str | None, kind: str | None, end_ns: int) -> None:
        plan, m = self.plan, self.metrics
        m.events += probe.events
        m.bytes += probe.bytes
        if probe.latencies:
            m.hist["latency"].pending.extend(probe.latencies)
        if probe.connect_ns is not None:
            m.connections_opened += 1
            m.hist["connect"].pending.append(probe.connect_ns // 1000)
        elif status != "completed" or probe.failure:
            m.connections_failed += 1
        if probe.first_event_ns:
            m.hist["ttfe"].pending.append((probe.first_event_ns - probe.start_ns) // 1000)
        if status != "completed":
            failure, message = probe.failure or (kind or LoadFailure.OTHER, error)
            if probe.connect_ns is not None:
                m.stream_errors += 1
            self._fail(failure, message)
            return
        if probe.api_error is not None:
            self._fail(LoadFailure.API_ERROR, f"the stream carried an error: {probe.api_error}")
            return
        if not probe.chunks:
            self._fail(LoadFailure.NO_TOKENS, f"the stream ended without a token ({probe.events} events"
                       + (f", none with text at {'.'.join(plan.extract)})" if plan.extract
                          else f", none with {plan.api} text)" if plan.api else ")"))
            return
        tokens = probe.tokens
        if probe.counter is not None:
            m.tokens_by_tokenizer += 1
        elif plan.usage is not None:
            if probe.usage is None:
                m.usage_missing += 1
                m.tokens_by_chunks += 1
            else:
                tokens = probe.usage
                m.tokens_by_usage += 1
        elif probe.reader is not None and probe.usage is not None and probe.usage > 0:
            tokens = probe.usage  # the server's own count beats counting chunks
            m.tokens_by_usage += 1
        else:
            m.tokens_by_chunks += 1
        if probe.input_usage is not None:
            m.input_tokens += probe.input_usage
        ttft = (probe.first_ns - probe.start_ns) // 1000
        e2e = (end_ns - probe.start_ns) // 1000
        tpot = (e2e - ttft) / (tokens - 1) if tokens > 1 else None
        m.hist["ttft"].pending.append(ttft)
        m.hist["e2e"].pending.append(e2e)
        if tpot is not None:
            m.hist["tpot"].pending.append(int(tpot))
        m.hist["itl"].pending.extend(probe.gaps)
        if probe.second_ns:
            m.hist["ttst"].pending.append((probe.second_ns - probe.first_ns) // 1000)
        if tokens > 1 and e2e > ttft:  # per-user output speed: 1 / TPOT, in thousandths of a token/s
            m.hist["user_tps"].pending.append(int((tokens - 1) * 1e9 / (e2e - ttft)))
        m.tokens += tokens
        m.requests_completed += 1
        if meets_all(plan.slos, RequestTimes(ttft, e2e, tpot, probe.gaps)):
            m.goodput += 1

    def _spawn(self, session, measured: bool, due: float | None) -> None:
        task = asyncio.create_task(self._one(session, measured, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ load models
    def _sending(self, now: float) -> bool:
        if self.stopping or self._stop.is_set():
            return False
        if self.deadline is not None and now >= self.deadline:
            return False
        return self.plan.limit is None or self.issued < self.plan.limit

    async def _user(self, session, index: int = 0) -> None:
        loop = asyncio.get_running_loop()
        ramp = self.plan.user_ramp_up
        if ramp and index:  # --ramp-up: user i starts i/U of the way through it
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=ramp * index / (self.plan.users or 1))
                return
            except TimeoutError:
                pass
        while True:
            now = loop.time()
            if not self._sending(now):
                return
            measured = now >= self.warm_end
            if measured:
                self.issued += 1
            await self._one(session, measured, None)

    async def _schedule(self, session) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        rng = random.Random(plan.seed)
        due = self.start + plan.offset
        k = 0
        while self._sending(due):
            wait = due - loop.time()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=wait)
                    return
                except TimeoutError:
                    pass
            measured = due >= self.warm_end
            if measured:
                self.issued += 1
            if self.in_flight + self.waiting >= plan.max_in_flight:
                if measured:
                    self.metrics.requests_not_started += 1
            else:
                self._spawn(session, measured, due)
            k += 1
            if plan.arrival == "constant" and not plan.ramp_up:
                due = self.start + plan.offset + k / plan.rate  # no drift from adding up rounded gaps
            else:
                due += next_gap(rng, plan.arrival, self._rate_at(due - self.start), plan.burstiness)

    def _rate_at(self, t: float) -> float:
        """The open loop's rate `t` seconds into the run (--ramp-up: rising to --request-rate)."""
        plan = self.plan
        ramp = plan.ramp_up
        if not ramp or t >= ramp or plan.ramp_start_rate <= 0:
            return plan.rate  # type: ignore[return-value]
        start, end, f = plan.ramp_start_rate, plan.rate, max(t, 0.0) / ramp
        if plan.ramp_strategy == "exponential":
            return start * (end / start) ** f
        return start + (end - start) * f

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        lag = self.metrics.hist["lag"].pending
        tick = self.plan.tick_s
        tick_us = int(tick * 1e6)
        next_second = self.start + 1.0
        cpu_prev, wall_prev = time.process_time(), time.monotonic()
        warm = self.plan.warmup <= 0
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            now = loop.time()
            lateness = max(0, int((now - before - tick) * 1e6))
            if now >= self.warm_end:
                if not warm:  # the measured window starts: lag and CPU from here on
                    warm = True
                    self.cpu_start = time.process_time()
                    self.cpu_percents.clear()
                else:
                    record_corrected(lag, lateness, tick_us)
            self.metrics.sample_active(time.time())
            if now >= next_second:
                next_second = max(next_second + 1.0, now + 0.5)
                cpu, wall = time.process_time(), time.monotonic()
                if warm:
                    self.cpu_percents.append(100 * (cpu - cpu_prev) / max(wall - wall_prev, 1e-9))
                cpu_prev, wall_prev = cpu, wall
                if self.progress is not None:
                    self.metrics.flush()
                    self.progress(self.metrics, now - self.start)

    async def run(self) -> RunResult:
        plan = self.plan
        loop = asyncio.get_running_loop()
        session = make_load_session()
        gc.freeze()  # the imports and the prepared requests: out of every GC pass
        try:
            rss_base = rss_bytes()
            self.start = loop.time()
            self.warm_end = self.start + plan.warmup
            self.deadline = self.start + plan.duration if plan.duration else None
            self.cpu_start = time.process_time()
            ticker = asyncio.create_task(self._ticker())
            if plan.users:
                senders = [asyncio.create_task(self._user(session, i)) for i in range(plan.users)]
            else:
                senders = [asyncio.create_task(self._schedule(session))]
            stop_wait = asyncio.create_task(self._stop.wait())
            all_sent = asyncio.ensure_future(asyncio.wait(senders))
            timeout = None if self.deadline is None else plan.duration + 0.05
            await asyncio.wait([all_sent, stop_wait], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            # Closed-loop users finish their current request; in the open loop the running ones.
            self.stopping = True
            running = [t for t in senders if not t.done()] + list(self._tasks)
            if running and not self.interrupted:
                await asyncio.wait(running, timeout=plan.grace)
            still = [t for t in senders if not t.done()] + list(self._tasks)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=15)
            stop_wait.cancel()
            all_sent.cancel()
            end = loop.time()
            cpu_seconds = time.process_time() - self.cpu_start
            rss_end = rss_bytes()
            ticker.cancel()
            await asyncio.wait([ticker, stop_wait, all_sent], timeout=5)
        finally:
            await session.close()
            gc.unfreeze()
        cpu = self.cpu_percents or [0.0]
        m = self.metrics
        client = {
            "workers": 1,
            "cpu_percent_max": round(max(cpu), 1),
            "cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
            "cpu_seconds": round(cpu_seconds, 3),
            "rss_bytes": rss_end,
            "rss_baseline_bytes": rss_base,
            "rss_growth_bytes": max(0, rss_end - rss_base),
        }
        elapsed = end - self.start
        window = Window(from_s=round(min(plan.warmup, elapsed), 3), events=m.events, bytes=m.bytes)
        return RunResult([m.snapshot()], client, elapsed, window, stopped_by=ALL_FAILED if self.all_failed else None)
