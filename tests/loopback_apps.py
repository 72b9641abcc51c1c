"""Small aiohttp apps for the hardening tests, all on 127.0.0.1: a header echo with a
redirector, an HTTP forward proxy that records every target and never leaves loopback, and a
hostile server that sends back every secret it received, in every place a client may quote it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from fanin.embed.bridge import get_bridge

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


async def _start(runner: web.AppRunner) -> int:
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)  # bursts of connections are accepted, not re-sent SYNs
    await site.start()
    return runner.addresses[0][1]


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[int]:
    """Run `app` on 127.0.0.1 (on the bridge's loop thread); yields its port."""
    runner = web.AppRunner(app)
    port = get_bridge().run(lambda: _start(runner))
    try:
        yield port
    finally:
        get_bridge().run(runner.cleanup)


@contextlib.contextmanager
def serve_raw(reply: Callable[[bytes], bytes]) -> Iterator[int]:
    """A TCP server that answers each request with `reply(request head)`, sent as it is (e.g.
    a malformed status line, which aiohttp quotes in its exception together with the URL)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(reply(head))
            await writer.drain()
        writer.close()

    async def start():
        return await asyncio.start_server(handle, "127.0.0.1", 0)

    server = get_bridge().run(start)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        async def stop():
            server.close()
            await server.wait_closed()

        get_bridge().run(stop)


def garbled_status(head: bytes) -> bytes:
    """A status line aiohttp cannot parse, carrying the whole request head back."""
    return b"HTTP/1.1 9x9 " + head.replace(b"\r\n", b" ") + b"\r\nContent-Length: 0\r\n\r\n"


def echo_app(name: str) -> web.Application:
    """`/echo`: one SSE event whose data is the request as this server saw it (its name, the
    method, every header, the body). `/to?url=U&status=S`: a redirect to U (status S, 302)."""

    async def echo(request: web.Request) -> web.StreamResponse:
        seen = {"server": name, "method": request.method, "headers": {str(k): v for k, v in request.headers.items()},
                "body": (await request.read()).decode("utf-8", "replace")}
        return web.Response(body=b"data: " + orjson.dumps(seen) + b"\n\n", content_type="text/event-stream")

    async def to(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "302")), headers={"Location": request.query["url"]})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/to", to)
    return app


def forward_proxy_app(seen: list[str]) -> web.Application:
    """An HTTP forward proxy for plain http:// targets. Every target is recorded in `seen`.
    Loopback targets are forwarded; any other target is never contacted: the proxy answers
    for it with a fake metadata stream, so a guard that let it through shows up as a run that
    completed with "metadata"."""

    async def forward(request: web.Request) -> web.StreamResponse:
        target = URL(str(request.url))
        seen.append(str(target))
        if target.host not in LOOPBACK_HOSTS:
            return web.Response(body=b'data: {"AccessKeyId": "FAKE-METADATA"}\n\n', content_type="text/event-stream")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-authorization")}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(request.method, target, headers=headers, data=await request.read(),
                                       allow_redirects=False, proxy=None) as upstream:
                out = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items()
                    if k.lower() in ("content-type", "location", "content-encoding")})
                await out.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def _echo_of(request: web.Request) -> str:
    """Everything secret-bearing the client sent: the request target as sent (percent-encoded
    query) and every header value."""
    return " ".join([request.raw_path] + [f"{k}: {v}" for k, v in request.headers.items()])


def hostile_app(closed_port: int) -> web.Application:
    """Sends back what it received: in a 401 body (padded so the 300-character excerpt cut
    falls inside the first secret), in a 401 body of 4-byte characters (so the cut also falls
    past the bytes a naive excerpt would read), in the reason phrase, in a Content-Type
    header, in a redirect Location to a closed port, and in an unparsable redirect Location."""

    async def body(request: web.Request) -> web.Response:
        echo = _echo_of(request)
        token = request.headers.get("Authorization") or request.headers.get("X-Api-Key") or ""
        padding = "p" * max(0, 290 - echo.find(token))  # the token starts at character 290
        return web.Response(status=401, text=padding + echo)

    async def wide_body(request: web.Request) -> web.Response:
        # 284 four-byte characters: the Authorization value starts before character 300 and
        # runs past byte 1200, the most a 300-character excerpt needs without secrets.
        return web.Response(status=401, text="\U0001F512" * 284 + " " + request.headers.get("Authorization", "")
                            + " " + _echo_of(request))

    async def reason(request: web.Request) -> web.Response:
        return web.Response(status=401, reason=_echo_of(request)[:4000])

    async def ctype(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"data: x\n\n", headers={"Content-Type": "text/html; echo=" + _echo_of(request)})

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={
            "Location": f"http://127.0.0.1:{closed_port}/leak?echo={quote(_echo_of(request), safe='')}"})

    async def bad_location(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "http://[bad " + _echo_of(request)})

    app = web.Application()
    for path, handler in (("/body", body), ("/wide", wide_body), ("/reason", reason), ("/ctype", ctype),
                          ("/redirect", redirect), ("/badlocation", bad_location)):
        app.router.add_route("*", path, handler)
    return app


HOSTILE_PATHS = ("/body", "/wide", "/reason", "/ctype", "/redirect", "/badlocation")


def hostile_dify_app() -> web.Application:
    """A Dify-like app API whose streaming answer is an `error` event quoting the API key back."""

    async def chat(request: web.Request) -> web.Response:
        event = {"event": "error", "code": "invalid_key",
                 "message": f"key {request.headers.get('Authorization', '')} is not valid here"}
        return web.Response(body=b"data: " + orjson.dumps(event) + b"\n\n", content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat-messages", chat)
    return app
