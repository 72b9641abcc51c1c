"""What lets `fanin load` hold very many streams: at most 256 requests wait for their
response headers at once (the rest queue in the client), as in the engine's FanIn, so that
opening 100,000 streams never holds 100,000 half-open requests; every stream still opens."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from fanin.cli.main import main as fanin_main
from fanin.load.runner import OPENING_AT_ONCE
from tests.loopback_apps import serve


def slow_headers_app(seen: dict) -> web.Application:
    async def stream(request: web.Request) -> web.StreamResponse:
        seen["waiting"] += 1
        seen["most"] = max(seen["most"], seen["waiting"])
        await asyncio.sleep(0.3)  # slow to answer: the requests pile up
        seen["waiting"] -= 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"id: 1\ndata: x\n\n")
        for _ in range(300):  # held open until the client goes (the server's shutdown waits for handlers)
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.1)
        return resp

    app = web.Application()
    app.router.add_get("/stream", stream)
    return app


def test_at_most_256_requests_wait_for_headers_and_all_open(tmp_path, capsys):
    seen = {"waiting": 0, "most": 0}
    with serve(slow_headers_app(seen)) as port:
        report_path = tmp_path / "r.json"
        code = fanin_main(["load", f"http://127.0.0.1:{port}/stream", "-c", str(OPENING_AT_ONCE + 44), "-d", "2s",
                           "--no-progress", "--json", str(report_path)])
        capsys.readouterr()
    report = json.loads(report_path.read_text())
    assert code == 0
    assert 200 < seen["most"] <= OPENING_AT_ONCE  # they piled up, and never past the gate (300 without)
    assert report["connections"]["peak_active"] == OPENING_AT_ONCE + 44
    assert report["errors"]["total"] == 0
