"""fanin.embed.bridge: one shared loop thread hands items to synchronous callers, cancels on
close and on deadline, and (in a subprocess, since patching is process-wide) keeps the
gevent hub running while greenlets wait."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fanin.embed.bridge import BridgeDeadline, get_bridge
from fanin.merge import FanIn
from fanin.server.app import ServerThread
from fanin.stream import Request
from tests.serverproc import server_process

ROOT = Path(__file__).resolve().parents[1]


async def _numbers(n: int, delay: float = 0.0):
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        yield i


def test_iterate_yields_every_item_in_order():
    assert list(get_bridge().iterate(lambda: _numbers(5000))) == list(range(5000))


def test_one_loop_thread_is_shared_by_every_caller():
    bridge = get_bridge()
    assert get_bridge() is bridge
    results: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        results[k] = list(get_bridge().iterate(lambda: _numbers(300, 0.0005)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(results[k] == list(range(300)) for k in range(8))
    assert get_bridge().thread_id == bridge.thread_id


def test_run_returns_the_result_and_raises_the_error():
    async def add(a, b):
        await asyncio.sleep(0.01)
        return a + b

    async def boom():
        raise ValueError("bad thing, one line")

    assert get_bridge().run(lambda: add(2, 3)) == 5
    with pytest.raises(ValueError, match="bad thing"):
        get_bridge().run(boom)


def test_closing_the_iterator_cancels_the_coroutine_before_returning():
    cleaned = threading.Event()

    async def endless():
        try:
            i = 0
            while True:
                await asyncio.sleep(0.001)
                yield i
                i += 1
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself awaits, like closing a session
            cleaned.set()

    items = get_bridge().iterate(endless)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert cleaned.is_set()  # set before close() returned, not later


def test_deadline_cancels_and_raises():
    cleaned = threading.Event()

    async def slow():
        try:
            yield 1
            await asyncio.sleep(60)
            yield 2
        finally:
            cleaned.set()

    got = []
    started = time.monotonic()
    with pytest.raises(BridgeDeadline):
        for item in get_bridge().iterate(slow, deadline=time.monotonic() + 0.3):
            got.append(item)
    assert got == [1]
    assert cleaned.is_set()
    assert time.monotonic() - started < 10


def test_slow_consumer_gets_everything_and_producer_is_held_back():
    produced = []

    async def fast():
        for i in range(50):
            produced.append(i)
            yield i

    got = []
    for item in get_bridge().iterate(fast, limit=4):
        if item == 0:
            time.sleep(0.2)  # meanwhile the producer refills at most `limit` more items
            assert len(produced) <= 2 * 4 + 1
        got.append(item)
    assert got == list(range(50))


def test_closing_early_closes_the_engine_connections():
    with ServerThread() as server:
        fan = FanIn([Request(url=server.url("/stream?count=0&rate=200"))])
        events = get_bridge().iterate(fan.stream)
        seen = 0
        for _ in events:
            seen += 1
            if seen >= 5:
                break
        events.close()
        assert fan.summary is not None  # the engine finished its cleanup before close() returned
        deadline = time.monotonic() + 5
        while server.stats.snapshot()["open_streams"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats.snapshot()["open_streams"] == 0


GEVENT_SCRIPT = r"""
import json, sys, time
from gevent import monkey
monkey.patch_all()
import asyncio, gevent, threading
sys.path.insert(0, sys.argv[1])
from fanin.embed.bridge import get_bridge, gevent_active
from fanin.merge import FanIn
from fanin.server.app import ServerThread
from fanin.stream import Request

real_get_ident = monkey.get_original("_thread", "get_ident")
report = {"gevent_active": gevent_active()}

async def numbers(n, delay):
    for i in range(n):
        await asyncio.sleep(delay)
        yield i

ticks = [0]
def ticker():
    while True:
        gevent.sleep(0.005)
        ticks[0] += 1
tick = gevent.spawn(ticker)

results = {}
def consumer(k):
    results[k] = list(get_bridge().iterate(lambda: numbers(100, 0.002)))
started = time.monotonic()
gevent.joinall([gevent.spawn(consumer, k) for k in range(6)], timeout=30)
report["elapsed"] = time.monotonic() - started
report["all_items"] = all(results.get(k) == list(range(100)) for k in range(6))
report["ticks"] = ticks[0]
report["loop_thread_differs"] = get_bridge().thread_id != real_get_ident()

cleaned = []
async def endless():
    try:
        while True:
            await asyncio.sleep(0.001)
            yield 1
    finally:
        cleaned.append(True)
it = get_bridge().iterate(endless)
next(it); it.close()
report["closed_cleanly"] = cleaned == [True]

with ServerThread() as server:
    urls = [server.url(f"/stream?count=200&tag={i}") for i in range(3)]
    fan = FanIn([Request(url=u) for u in urls])
    total = sum(1 for _ in get_bridge().iterate(fan.stream))
    report["engine_events"] = total
    report["engine_status"] = fan.summary.status
    report["localhost"] = sum(1 for _ in get_bridge().iterate(
        FanIn([Request(url=server.url("/stream?count=7").replace("127.0.0.1", "localhost"))]).stream))
    import os
    threads_before = len(os.listdir("/proc/self/task"))
    for _ in range(20):  # each resolves a name on a short-lived real thread and connects
        list(get_bridge().iterate(FanIn([Request(url=server.url("/stream?count=2").replace(
            "127.0.0.1", "localhost"))]).stream))
    gevent.sleep(0.2)
    report["os_threads_grew"] = len(os.listdir("/proc/self/task")) - threads_before
print(json.dumps(report))
"""


def test_under_gevent_greenlets_share_the_loop_and_the_hub_keeps_running():
    proc = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, str(ROOT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["gevent_active"] is True
    assert report["all_items"] is True
    assert report["loop_thread_differs"] is True
    # 6 callers x 100 items x 2 ms run concurrently (~0.2 s+), and the hub ticked meanwhile
    assert report["ticks"] >= 10
    assert report["closed_cleanly"] is True
    assert report["engine_events"] == 600 and report["engine_status"] == "completed"
    assert report["localhost"] == 7  # name resolution works from the loop thread under gevent
    assert report["os_threads_grew"] <= 0  # no thread outlives its invocation


# ---------------------------------------------------------------- issue 12 defects

async def _endless_fast():
    i = 0
    while True:
        yield i
        i += 1
        if i % 256 == 0:
            await asyncio.sleep(0)


def test_deadline_is_checked_on_every_pass_even_when_items_keep_coming():
    """The channel never empties (the consumer is slower than the producer), so a deadline
    checked only while waiting on an empty channel would never fire."""
    started = time.monotonic()
    seen = 0
    with pytest.raises(BridgeDeadline):
        for _ in get_bridge().iterate(_endless_fast, deadline=started + 0.3):
            seen += 1
            time.sleep(0.0002)  # slower than the producer: items are always waiting
            assert time.monotonic() - started < 20, "the deadline never fired"
    assert seen > 0
    assert time.monotonic() - started < 10


def test_first_fill_never_hangs_under_a_tiny_switch_interval():
    """The producer fills the channel to its bound on its first put while the consumer
    drains at the same moment: no interleaving may leave both sides waiting. Many short
    trials with thread switches forced every microsecond, for about two seconds. The shape
    matters: the first item wakes the consumer, and the item that fills the channel lands
    while it is awake and draining (before the fix about one trial in 200 hung)."""

    async def three():
        yield 0
        await asyncio.sleep(0)  # the consumer is woken for item 0 ...
        yield 1  # ... and drains while this put fills the channel
        yield 2

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    trials = 0
    try:
        stop = time.monotonic() + 2.0
        while time.monotonic() < stop:
            got = list(get_bridge().iterate(three, limit=2, deadline=time.monotonic() + 5))
            assert got == [0, 1, 2]  # a hang ends in BridgeDeadline after 5 s
            trials += 1
    finally:
        sys.setswitchinterval(old)
    assert trials > 100


def test_the_channel_bound_counts_events_not_hand_offs():
    """A paused consumer of FanIn.stream_batches on a fast server (its own process): each
    hand-off carries a whole network read, thousands of events. The channel lets at most
    DEFAULT_LIMIT events wait, so the process grows by little while the consumer sleeps
    (about 350 MiB in 2 s when the bound counted 1,024 hand-offs)."""
    import psutil

    me = psutil.Process()
    with server_process() as base:
        fan = FanIn([Request(url=base + "/stream?count=0&size=8")])
        batches = get_bridge().iterate(fan.stream_batches)
        next(batches)
        before = me.memory_info().rss
        time.sleep(2.0)  # the consumer is paused; the producer fills what it may
        grown = me.memory_info().rss - before
        batches.close()
    # engine queue (8,192 events) + bridge channel (8,192 events) + reads in flight
    assert grown < 64 * 1024 * 1024, f"RSS grew {grown / 2**20:.0f} MiB while the consumer was paused"


def test_two_threads_starting_the_bridge_at_once_get_one_loop():
    """Each trial reloads the module (a fresh process state) and lets 12 threads call
    get_bridge() together, switches forced every microsecond."""
    import importlib

    import fanin.embed.bridge as module

    old = sys.getswitchinterval()
    distinct = set()
    try:
        sys.setswitchinterval(1e-6)
        for _ in range(40):
            fresh = importlib.reload(module)
            barrier = threading.Barrier(12)
            got: list = []

            def start() -> None:  # the threads are joined inside this turn of the loop
                barrier.wait()  # noqa: B023
                got.append(fresh.get_bridge())  # noqa: B023

            threads = [threading.Thread(target=start) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            loops = {id(b) for b in got}
            distinct.add(len(loops))
            for bridge in {id(b): b for b in got}.values():
                bridge.loop.call_soon_threadsafe(bridge.loop.stop)
    finally:
        sys.setswitchinterval(old)
        importlib.reload(module)
    assert distinct == {1}


FORK_SCRIPT = r"""
import os, sys, json
sys.path.insert(0, sys.argv[1])
import fanin.embed.bridge as module
parent = module.get_bridge()
with module._bridge_lock:  # another thread is starting the bridge at the moment of the fork
    pid = os.fork()
    if pid == 0:
        import signal
        signal.alarm(10)  # a deadlocked child dies instead of hanging the test
        child = module.get_bridge()
        ok = child is not parent and child.alive and module.get_bridge() is child
        os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child_status": status}))
"""


def test_a_fork_while_the_bridge_lock_is_held_gives_the_child_its_own_bridge():
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(ROOT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"child_status": 0}


STARVE_SCRIPT = r"""
import json, sys, time
from gevent import monkey
monkey.patch_all()
import asyncio, gevent
sys.path.insert(0, sys.argv[1])
from fanin.embed.bridge import get_bridge

async def endless():  # like FanIn.stream_batches on a fast server: a big list per read
    read = list(range(2000))
    while True:
        yield read
        await asyncio.sleep(0)

late = []
def ticker():
    for _ in range(20):
        t = time.monotonic()
        gevent.sleep(0.01)
        late.append(time.monotonic() - t - 0.01)

def consumer():
    stop = time.monotonic() + 1.5
    n = 0
    for _ in get_bridge().iterate(endless):
        n += 1
        sum(range(20000))  # slower than the producer: items are always waiting, it never blocks
        if time.monotonic() > stop:
            break
    return n

tick = gevent.spawn(ticker)
eat = gevent.spawn(consumer)
gevent.joinall([tick, eat], timeout=30)
print(json.dumps({"consumed": eat.value, "ticks": len(late), "worst_late": max(late) if late else None}))
"""


def test_a_greenlet_on_a_fast_stream_leaves_the_hub_its_turns():
    """A greenlet whose queue never empties must still let its hub run timers: the 10 ms
    ticker beside it keeps ticking (before the fix it did not tick until the consumer
    stopped)."""
    proc = subprocess.run([sys.executable, "-c", STARVE_SCRIPT, str(ROOT)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["consumed"] > 100
    assert report["ticks"] == 20
    assert report["worst_late"] < 0.3, report  # a turn every few ms; generous for a busy machine


def test_feed_hands_over_what_a_callback_producer_puts_and_call_runs_on_the_loop_thread():
    """The callback-style entry points fanin.locust uses: `feed(produce)` where the engine
    calls `put` (as SSEStream.run calls deliver), and `call(fn)` on the loop thread."""

    async def produce(put):
        for i in range(2000):
            await put([i])  # lists count as their length toward the bound
        return "done"

    got = [item[0] for item in get_bridge().feed(produce, limit=16)]
    assert got == list(range(2000))
    assert get_bridge().call(threading.get_ident) == get_bridge().thread_id
