"""One hostile source cannot disorder the others under --order-by (issue 19, class 9).

Source 0 opens with stamps no clock gives (`"9"*400`, 1e40, the year 9999, before 1970); source
1 is honest, stamping each of its 25 events as it sends it, over about two seconds, longer than
the reorder window. Before, the far-future stamp sorted after everything: when it left, every
honest event still to come was flagged late, and one honest pair went out of order. Now such
stamps count as no stamp (the events keep their arrival time and are all delivered) and the
source gets one warning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from fanin.events import Event
from fanin.reorder import EventTimeReorderer
from loopback_apps import serve

ROOT = Path(__file__).resolve().parent.parent
HONEST_EVENTS = 25
HOSTILE_STAMPS = [b'"' + b"9" * 400 + b'"', b"1" + b"0" * 40, b'"9999-12-31T00:00:00"', b"-1"]


async def _hostile(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for index, stamp in enumerate(HOSTILE_STAMPS):
        await resp.write(b'data: {"hostile": %d, "ts": %s}\n\n' % (index, stamp))
    return resp


async def _honest(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await asyncio.sleep(0.05)
    for n in range(HONEST_EVENTS):
        await resp.write(b"data: " + orjson.dumps({"n": n, "ts": time.time()}) + b"\n\n")
        await asyncio.sleep(0.08)
    return resp


@pytest.fixture(scope="module")
def base():
    app = web.Application()
    app.router.add_get("/hostile", _hostile)
    app.router.add_get("/honest", _honest)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_hostile_source_cannot_make_honest_events_late(base):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    result = subprocess.run(
        [sys.executable, "-m", "fanin", "stream", f"{base}/hostile", f"{base}/honest", "--order-by", "ts",
         "--reorder-window", "1000", "--format", "ndjson"], capture_output=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    events = [r for r in map(orjson.loads, result.stdout.splitlines()) if r["type"] == "event"]
    honest = [e for e in events if e["source"] == 1]
    hostile = [e for e in events if e["source"] == 0]
    assert [orjson.loads(e["data"])["n"] for e in honest] == list(range(HONEST_EVENTS))
    assert not any(e.get("late") for e in honest), [e["event_number"] for e in honest if e.get("late")]
    stamps = [orjson.loads(e["data"])["ts"] for e in honest]
    assert stamps == sorted(stamps)
    assert sorted(orjson.loads(e["data"])["hostile"] for e in hostile) == [0, 1, 2, 3]  # none dropped
    warnings = [line for line in result.stderr.decode().splitlines() if "plausible event time" in line]
    assert len(warnings) == 1 and warnings[0].startswith("fanin: source 0 (") and "'99999" in warnings[0], warnings
    assert len(warnings[0]) < 400


def _event(source: int, data: bytes, wall_ns: int) -> Event:
    return Event(source, f"http://s{source}", "message", data.decode(), "", wall_ns, wall_ns)


def test_the_plausible_range_and_one_warning_per_source(caplog):
    now = time.time_ns()
    reorderer = EventTimeReorderer("ts", 0)
    day = 86_400
    stamps = [b'"' + b"9" * 400 + b'"', b"1" + b"0" * 40, b"-1", b'"1969-12-31T23:59:59Z"',
              b"%d" % (now // 10**9 + day + 60)]
    with caplog.at_level(logging.WARNING, logger="fanin"):
        reorderer.push([_event(0, b'{"ts": %s}' % s, now) for s in stamps])
        reorderer.push([_event(1, b'{"ts": %s}' % s, now) for s in stamps[:2]])
        kept = [b"%d" % (now // 10**9 + day - 60), b"0", b"12.5", b'"2026-01-01T00:00:00Z"']
        reorderer.push([_event(2, b'{"ts": %s}' % s, now) for s in kept])  # plausible: skew, relative, ISO
    assert reorderer.implausible == {0: len(stamps), 1: 2}
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["fanin: source 0", "fanin: source 1"]
    released = reorderer.flush()
    assert len(released) == len(stamps) + 2 + len(kept)  # nothing dropped
