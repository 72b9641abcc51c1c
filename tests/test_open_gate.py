"""Opening many sources: at most OPENING_AT_ONCE requests wait for their response headers
at a time (the transient objects of 10,000 simultaneous attempts kept RSS high), every
source still opens, and the connect timeout does not run while a source waits its turn."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from fanin import merge
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig


async def _slow_headers_server(state: dict) -> web.AppRunner:
    async def handle(request: web.Request) -> web.StreamResponse:
        state["waiting"] += 1
        state["most"] = max(state["most"], state["waiting"])
        await asyncio.sleep(0.3)  # headers come late: the request holds its place meanwhile
        state["waiting"] -= 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: hi\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state["port"] = runner.addresses[0][1]
    return runner


async def test_openings_wait_their_turn_and_all_open(monkeypatch):
    monkeypatch.setattr(merge, "OPENING_AT_ONCE", 3)
    state = {"waiting": 0, "most": 0}
    runner = await _slow_headers_server(state)
    try:
        url = f"http://127.0.0.1:{state['port']}/"
        # 24 sources, 3 at a time, 0.3 s each: the last ones wait ~2.1 s for a place, past
        # the 1.5 s connect timeout, which must only count once a place is held.
        fan = FanIn([Request(url) for _ in range(24)], StreamConfig(connect_timeout=1.5, retries=0))
        async with asyncio.timeout(30):
            async with contextlib.aclosing(fan.stream()) as items:
                data = [item.data async for item in items]
    finally:
        await runner.cleanup()
    assert state["most"] == 3
    assert data == ["hi"] * 24
    assert fan.summary.status == "completed"
