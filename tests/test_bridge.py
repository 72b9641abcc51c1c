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
