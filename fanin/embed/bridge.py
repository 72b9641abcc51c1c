"""Run engine coroutines from synchronous code, including gevent-patched code (Dify).

Why: `import dify_plugin` patches the process with gevent, so "threads" are greenlets on
one OS thread, and two tool invocations that each call `asyncio.run()` collide. Here ONE
asyncio loop runs on ONE real OS thread (gevent's original `_thread`), shared by every
caller. Items travel back through a per-call channel; a caller waiting for items sleeps
on a gevent-aware wakeup (a libev/libuv async watcher of the caller's hub), so the hub
keeps running (heartbeats, other invocations) while it waits. Without gevent the same
channel wakes a plain thread.

Closing the iterator (generator close, GeneratorExit, an exception in the caller) or
passing the deadline cancels the coroutine on the loop and waits for it to finish, so
its connections are closed before the call returns.

Entry points: `iterate` (items of an async generator, e.g. FanIn.stream_batches), `feed`
(items a coroutine hands to a callback, e.g. SSEStream.run's deliver), `run` (await one
coroutine), `call` (a plain function on the loop thread, e.g. to read state that
callbacks on the loop thread keep, as fanin.locust's recorders do). Nothing starts at import: the loop thread
starts on the first get_bridge(), and again in a forked child (Locust's --processes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from fanin.errors import FaninError
from fanin.events import Batch

__all__ = ["Bridge", "BridgeDeadline", "DEFAULT_LIMIT", "count_events", "get_bridge", "gevent_active"]

T = TypeVar("T")
_CANCEL_GRACE = 10.0  # seconds a cancelled coroutine gets to close its connections
DEFAULT_LIMIT = 8192  # events waiting in one channel before its producer pauses


class BridgeDeadline(FaninError):
    """The call ran past its deadline and was cancelled."""


def _monkey():
    return sys.modules.get("gevent.monkey")


def gevent_active() -> bool:
    """True when gevent has patched threading (as `import dify_plugin` does)."""
    monkey = _monkey()
    return monkey is not None and monkey.is_module_patched("threading")


def _original(module: str, name: str):
    monkey = _monkey()
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return getattr(__import__(module), name)


def _start_real_thread(target: Callable[[], None]) -> None:
    _original("_thread", "start_new_thread")(target, ())


class _RealThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor (aiohttp resolves names through it). Under gevent a
    pooled "thread" would be a greenlet of a hub that never runs on the loop's thread, so
    each job gets a short-lived real thread instead; nothing lingers after the job."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)

        _start_real_thread(run)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


class _BridgeLoop(asyncio.SelectorEventLoop):
    """Resolves names with the original (unpatched) getaddrinfo: gevent's version would
    start a hub and a resolver thread pool inside each short-lived executor thread, and
    those pool threads would outlive the call."""

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        return await self.run_in_executor(None, _original("socket", "getaddrinfo"), host, port, family, type,
                                          proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return await self.run_in_executor(None, _original("socket", "getnameinfo"), sockaddr, flags)


class _Waker:
    """Wakes one waiting consumer from another OS thread."""

    def __init__(self) -> None:
        if gevent_active():
            import gevent.event
            from gevent import get_hub

            self._event = gevent.event.Event()
            self._watcher = get_hub().loop.async_()
            self._watcher.start(self._event.set)
            self.notify = self._watcher.send  # thread-safe by design
        else:
            import threading

            self._event = threading.Event()
            self._watcher = None
            self.notify = self._event.set

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float | None) -> None:
        self._event.wait(timeout)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None


def count_events(item: Any) -> int:
    """How many events one hand-off carries: a Batch is one network read of one source,
    a list (FanIn.stream_batches) is summed, anything else counts as one."""
    kind = type(item)
    if kind is Batch:
        return len(item)
    if kind is list:
        return sum(len(part) if type(part) is Batch else 1 for part in item) or 1
    return 1


class _Channel:
    """Loop thread -> consumer hand-off: a deque of (item, events) plus a coalesced wakeup
    per loop tick.

    Backpressure counts events, not hand-offs (one hand-off can carry thousands): once
    `limit` events wait, the producer pauses until the consumer has taken them. Only the
    loop thread touches `waiting` and `space`: the consumer reports what it took with
    call_soon_threadsafe, so no count is shared between threads and no release is lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.items: deque = deque()
        self.done = False
        self.error: BaseException | None = None
        self.result: Any = None
        self.waker = _Waker()
        self._wake_scheduled = False
        self.waiting = 0  # events put and not yet reported taken (loop thread only)
        self.space = asyncio.Event()  # made up front: a drain can never find it missing
        self.space.set()

    # producer side (loop thread)
    def _flush_wake(self) -> None:
        self._wake_scheduled = False
        self.waker.notify()

    def wake_soon(self) -> None:
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon(self._flush_wake)

    async def put(self, item: Any, events: int) -> None:
        self.items.append((item, events))
        self.waiting += events
        self.wake_soon()
        while self.waiting >= self.limit:
            self.space.clear()
            await self.space.wait()

    def _taken(self, events: int) -> None:
        self.waiting -= events
        if self.waiting < self.limit:
            self.space.set()

    def finish(self, error: BaseException | None = None, result: Any = None) -> None:
        self.error = error
        self.result = result
        self.done = True
        self.waker.notify()

    # consumer side
    def take_all(self) -> list:
        """Every waiting item, oldest first; tells the producer how many events left."""
        items = self.items
        taken = [items.popleft() for _ in range(len(items))]
        if taken:
            self.loop.call_soon_threadsafe(self._taken, sum(events for _, events in taken))
        return [item for item, _ in taken]


class _HubTurns:
    """Gives the gevent hub a turn when the consuming greenlet has run BUDGET seconds
    without one.

    Why: a greenlet that consumes a fast stream finds items waiting on every pass, so it
    never blocks, and nothing else on its hub runs (heartbeats, other invocations, Locust's
    timers, its own output being written). The work it does between two items (the tool's
    or the locustfile's code) counts too, since the clock is read on every pass. A turn is a
    sleep on a timer, not sleep(0): sleep(0) only queues a callback that the hub may run
    again before it polls any socket (under Dify, sleep(0) turns still held a paced
    invocation beside a fast one back by up to 0.75 s; timer turns did not)."""

    BUDGET = 0.004  # seconds of work between turns (plus at most one item's processing)

    def __init__(self) -> None:
        import gevent

        self._sleep = gevent.sleep
        self.last = time.monotonic()

    def maybe(self, now: float) -> None:
        if now - self.last >= self.BUDGET:
            self._sleep(0.000_001)  # a timer: the hub runs a full loop iteration (I/O included)
            self.last = time.monotonic()


class Bridge:
    """One asyncio loop on one real OS thread, shared by every caller of this process."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        lock = _original("_thread", "allocate_lock")()
        lock.acquire()
        box: dict[str, Any] = {}

        def run_loop() -> None:
            loop = _BridgeLoop(_original("selectors", "DefaultSelector")())
            loop.set_default_executor(_RealThreadExecutor())
            asyncio.set_event_loop(loop)
            box["loop"] = loop
            box["thread_id"] = _original("_thread", "get_ident")()
            lock.release()
            try:
                loop.run_forever()
            finally:
                loop.close()

        _start_real_thread(run_loop)
        lock.acquire()  # a real lock: held for the few microseconds the loop needs to start
        self.loop: asyncio.AbstractEventLoop = box["loop"]
        self.thread_id: int = box["thread_id"]

    @property
    def alive(self) -> bool:
        return os.getpid() == self._pid and not self.loop.is_closed()

    def iterate(self, make_agen: Callable[[], AsyncIterator[T]], *, deadline: float | None = None,
                limit: int = DEFAULT_LIMIT, count: Callable[[Any], int] = count_events) -> Iterator[T]:
        """Items of the async generator `make_agen()` (called on the loop thread), yielded to
        the caller as they arrive. At most `limit` events (as `count` weighs each item) wait
        in between; the producer pauses past that. `deadline` is a time.monotonic() value,
        checked before every item: past it the generator is cancelled and BridgeDeadline
        raised. Closing this iterator early cancels the generator and returns once it has
        cleaned up. Under gevent the consuming greenlet gives its hub a turn every few
        milliseconds, however fast items come."""

        async def pump(put: Callable[[T], Awaitable[None]]) -> None:
            agen = make_agen()
            try:
                async for item in agen:
                    await put(item)
            finally:
                await agen.aclose()

        return self.feed(pump, deadline=deadline, limit=limit, count=count)

    def feed(self, produce: Callable[[Callable[[T], Awaitable[None]]], Awaitable[Any]], *,
             deadline: float | None = None, limit: int = DEFAULT_LIMIT,
             count: Callable[[Any], int] = count_events) -> Iterator[T]:
        """The callback-style entry point: `produce(put)` runs on the loop thread and hands
        items over with `await put(item)` (e.g. as the `deliver` callback of
        SSEStream.run); they are yielded to the caller as in iterate(), with the same
        bound, deadline, cancellation and hub turns."""
        channel = _Channel(self.loop, max(1, limit))

        async def put(item: T) -> None:
            await channel.put(item, count(item))

        return self._consume(channel, lambda: produce(put), deadline)

    def run(self, make_coro: Callable[[], Awaitable[T]], *, deadline: float | None = None) -> T:
        """Await `make_coro()` on the loop thread and return its result (or raise its error).
        The caller waits without holding its gevent hub; if the caller is interrupted
        (a greenlet killed, KeyboardInterrupt) the coroutine is cancelled and has finished
        before this returns."""
        channel = _Channel(self.loop, 1)

        async def once() -> Any:
            return await make_coro()

        for _ in self._consume(channel, once, deadline):
            pass
        return channel.result

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the plain function `fn(*args)` on the loop thread and return its result: the
        entry point for callback-style consumers (recorders, observers) whose state lives on
        the loop thread, e.g. to take a snapshot of it."""

        async def direct() -> T:
            return fn(*args)

        return self.run(direct)

    def _consume(self, channel: _Channel, body: Callable[[], Awaitable[Any]], deadline: float | None):
        task_box: dict[str, asyncio.Task] = {}

        async def runner() -> None:
            try:
                result = await body()
            except asyncio.CancelledError:
                channel.finish()
                raise
            except BaseException as exc:  # handed to the consumer, raised there
                channel.finish(error=exc)
            else:
                channel.finish(result=result)

        def on_done(_task: asyncio.Task) -> None:
            if not channel.done:  # cancelled before it ever ran
                channel.finish()

        def start() -> None:
            task = self.loop.create_task(runner())
            task.add_done_callback(on_done)
            task_box["task"] = task

        def cancel() -> None:
            task = task_box.get("task")
            if task is not None and not task.done():
                task.cancel()

        def past_deadline() -> BridgeDeadline:
            return BridgeDeadline("the call ran past its deadline and was stopped")

        def generator() -> Iterator[Any]:
            turns = _HubTurns() if gevent_active() else None
            monotonic = time.monotonic
            self.loop.call_soon_threadsafe(start)
            finished = False
            try:
                while True:
                    channel.waker.clear()
                    if channel.items:
                        for item in channel.take_all():
                            now = monotonic()
                            if deadline is not None and now >= deadline:
                                raise past_deadline()
                            if turns is not None:
                                turns.maybe(now)
                            yield item
                        continue
                    if channel.done:
                        if channel.items:  # the last items landed between the two checks
                            continue
                        finished = True
                        break
                    timeout = None
                    if deadline is not None:
                        timeout = deadline - monotonic()
                        if timeout <= 0:
                            raise past_deadline()
                    channel.waker.wait(timeout)
                    if turns is not None:
                        turns.last = monotonic()  # waiting gave the hub its turn
                if channel.error is not None:
                    error = channel.error
                    channel.error = None
                    raise error
            finally:
                if not finished:
                    self.loop.call_soon_threadsafe(cancel)
                    grace_end = monotonic() + _CANCEL_GRACE
                    while not channel.done and monotonic() < grace_end:
                        channel.waker.clear()
                        channel.take_all()  # a producer paused on a full channel must see the cancel
                        if channel.done:
                            break
                        channel.waker.wait(min(0.5, grace_end - monotonic()))
                channel.items.clear()
                channel.waker.close()

        return generator()


_bridge: Bridge | None = None
# Made at import (cheap, starts nothing): creating it on first use was itself a race, and
# two OS threads could each make a lock and start a loop.
_bridge_lock = _original("_thread", "allocate_lock")()


def _after_fork_in_child() -> None:
    """A forked child has no loop thread, and a lock held at the fork would stay held."""
    global _bridge, _bridge_lock
    _bridge = None
    _bridge_lock = _original("_thread", "allocate_lock")()


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_bridge() -> Bridge:
    """The process-wide bridge, started on first use (and again in a forked child)."""
    global _bridge
    bridge = _bridge
    if bridge is not None and bridge.alive:
        return bridge
    with _bridge_lock:
        if _bridge is None or not _bridge.alive:
            _bridge = Bridge()
        return _bridge
