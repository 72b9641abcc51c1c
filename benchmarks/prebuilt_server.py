"""A loopback SSE server for the fan-in benchmark that costs the client nothing to wait
for: each body (N events of SIZE bytes with ids) is built once, then written in 64 KiB
chunks, so what the benchmark measures is the client.

    python benchmarks/prebuilt_server.py PORT     # GET /s/<k>?events=3000&size=64
"""

from __future__ import annotations

import sys

from aiohttp import web

CHUNK = 64 * 1024
_bodies: dict[tuple[int, int], bytes] = {}


def body(events: int, size: int) -> bytes:
    key = (events, size)
    if key not in _bodies:
        pad = b"x" * max(0, size - 8)
        _bodies[key] = b"".join(b"id: %d\ndata: %08d%s\n\n" % (i, i, pad) for i in range(1, events + 1))
    return _bodies[key]


async def stream(request: web.Request) -> web.StreamResponse:
    data = body(int(request.query.get("events", "3000")), int(request.query.get("size", "64")))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    resp.content_length = len(data)
    await resp.prepare(request)
    for offset in range(0, len(data), CHUNK):
        await resp.write(data[offset: offset + CHUNK])
    await resp.write_eof()
    return resp


def main() -> None:
    app = web.Application()
    app.router.add_get("/s/{k}", stream)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
