"""`fanin load`'s lean stream client (fanin/load/lean_http.py) where it does its own work:
the request it writes, the response head it keeps and bounds, interim responses, names
resolved once, backpressure, and the failures it raises before a body starts. Raw TCP
servers on 127.0.0.1. (The hostile-body cases run on it too: tests/test_hostile_bodies.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from fanin.events import Event
from fanin.load.lean_http import MAX_HEADER_BYTES, MAX_HEADERS, PAUSE_AT, LeanSession
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@contextlib.asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[int, list[bytes]]]:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            await script(reader, writer, head)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await server.wait_closed()


def replies(raw: bytes) -> Script:
    """A server script that answers every request with `raw`, then closes."""
    async def script(reader, writer, head):
        writer.write(raw)
        await writer.drain()
    return script


async def fan_in(url: str, **config) -> tuple[list[str], object]:
    fan = FanIn([Request(url)], StreamConfig(default_retry_ms=10, max_backoff=0.05, **config),
                connector_factory=LeanSession)
    events = []
    async with asyncio.timeout(20), contextlib.aclosing(fan.stream()) as items:
        async for item in items:
            if isinstance(item, Event):
                events.append(item.data)
    return events, fan.summary.sources[0]


async def test_the_request_is_what_the_engine_asked_for():
    async def script(reader, writer, head):
        body = await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        writer.write(SSE_HEAD + b"Content-Length: 14\r\n\r\ndata: " + body[:6] + b"\n\n")
        await writer.drain()

    async with raw_server(script) as (port, heads):
        request = Request(f"http://127.0.0.1:{port}/p/q?a=1", method="POST", json={"k": 1},
                          headers={"X-Test": "yes"}, params=[("b", "2 3")])
        fan = FanIn([request], StreamConfig(retries=0), connector_factory=LeanSession)
        async with asyncio.timeout(20), contextlib.aclosing(fan.stream()) as items:
            got = [i.data async for i in items if isinstance(i, Event)]
    head = heads[0].decode()
    assert head.startswith("POST /p/q?a=1&b=2+3 HTTP/1.1\r\n")
    lines = head.split("\r\n")
    assert f"Host: 127.0.0.1:{port}" in lines and "X-Test: yes" in lines
    assert "Accept: text/event-stream" in lines and "Content-Type: application/json" in lines
    assert "Content-Length: 7" in lines and any(line.startswith("User-Agent: fanin/") for line in lines)
    assert got == ['{"k":1'] and fan.summary.sources[0].status == "completed"


async def test_interim_responses_are_skipped_and_repeated_headers_joined():
    script = replies(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: identity\r\n"
                     b"Content-Encoding: identity\r\nX-Dropped: 1\r\n\r\ndata: one\n\n")
    async with raw_server(script) as (port, _):
        session = LeanSession()
        resp = await session.request("GET", f"http://127.0.0.1:{port}/")
        assert resp.status == 200 and resp.reason == "OK"
        assert dict(resp.headers) == {"content-type": "text/event-stream", "content-encoding": "identity, identity"}
        assert resp.headers.get("Content-Type") == "text/event-stream" and "X-DROPPED" not in resp.headers
        assert await resp.read() == b"data: one\n\n" and await resp.read() == b""  # ended by the close
        resp.release()
        await session.close()


@pytest.mark.parametrize("case", ["too_many", "too_large"])
async def test_a_head_without_bounds_is_refused(case):
    async def script(reader, writer, head):
        writer.write(SSE_HEAD)
        if case == "too_many":
            writer.write(b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)))
        else:
            writer.write(b"X-Big: " + b"v" * (MAX_HEADER_BYTES + 1) + b"\r\n")
        await writer.drain()
        await reader.read()  # never ends the head: holds the connection until the client gives up

    async with raw_server(script) as (port, _):
        async with asyncio.timeout(4):
            events, report = await fan_in(f"http://127.0.0.1:{port}/", retries=0)
    assert events == [] and report.status == "failed" and report.kind == "network"
    assert ("more than 128 response headers" if case == "too_many" else "response head over 64 KiB") in report.error


async def test_a_close_before_the_head_and_a_garbled_head_fail_as_network_errors():
    async def closes(reader, writer, head):
        pass

    async def garbled(reader, writer, head):
        writer.write(b"HTTP/1.1 2xx OK\r\n\r\n")
        await writer.drain()

    for script, words in ((closes, "ServerDisconnectedError"), (garbled, "malformed HTTP response")):
        async with raw_server(script) as (port, _):
            events, report = await fan_in(f"http://127.0.0.1:{port}/", retries=0)
        assert report.status == "failed" and report.kind == "network" and words in report.error, report.error


async def test_a_refused_port_is_refused_and_a_bad_name_a_network_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    _, report = await fan_in(f"http://127.0.0.1:{port}/", retries=0)
    assert report.kind == "refused" and "connection refused" in report.error
    _, report = await fan_in("http://no-such-host.invalid/", retries=0)
    assert report.kind == "network" and report.status == "failed"


async def test_a_name_is_resolved_once_for_every_stream():
    async with raw_server(replies(SSE_HEAD + b"\r\ndata: x\n\n")) as (port, heads):
        session = LeanSession()
        calls = []
        real = session.loop.getaddrinfo

        async def counting(*args, **kwargs):
            calls.append(args[0])
            return await real(*args, **kwargs)

        session.loop.getaddrinfo = counting  # type: ignore[method-assign]
        try:
            responses = await asyncio.gather(*(session.request("GET", f"http://localhost:{port}/")
                                               for _ in range(20)))
        finally:
            del session.loop.getaddrinfo
        assert [r.status for r in responses] == [200] * 20 and calls == ["localhost"]
        assert all(b"Host: localhost:%d" % port in h for h in heads)
        await session.close()
        assert all(r.transport is None for r in responses)


async def test_a_consumer_that_does_not_read_pauses_the_connection_and_loses_nothing():
    total = PAUSE_AT * 8

    async def script(reader, writer, head):
        writer.write(SSE_HEAD + b"Content-Length: %d\r\n\r\n" % total)
        for _ in range(total // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()

    async with raw_server(script) as (port, _):
        session = LeanSession()
        resp = await session.request("GET", f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.5)  # the server writes; nobody reads
        buffered = len(resp._buffer)
        assert PAUSE_AT <= buffered < total  # paused, not everything taken in
        got = 0
        while chunk := await resp.read(65536):
            got += len(chunk)
        assert got == total
        resp.release()
        await session.close()


async def test_a_cut_body_is_a_payload_error_after_the_bytes_that_came():
    async with raw_server(replies(SSE_HEAD + b"Content-Length: 100\r\n\r\ndata: one\n\n")) as (port, _):
        session = LeanSession()
        resp = await session.request("GET", f"http://127.0.0.1:{port}/")
        assert resp.content_length == 100
        assert await resp.read() == b"data: one\n\n"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        await session.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl, as the OS ships it)."""
    import subprocess

    where = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(where / "key.pem"),
                    "-out", str(where / "cert.pem")], check=True, capture_output=True, timeout=60)
    return where / "cert.pem", where / "key.pem"


async def test_https_is_verified_like_aiohttp_and_streams_once_trusted(tls_files, monkeypatch):
    import ssl

    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader, writer):
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(SSE_HEAD + b"Content-Length: 11\r\n\r\ndata: one\n\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        for factory in (LeanSession, None):  # an unknown certificate fails both clients the same way
            fan = FanIn([Request(url)], StreamConfig(retries=0), connector_factory=factory)
            async with asyncio.timeout(20), contextlib.aclosing(fan.stream()) as items:
                assert [i async for i in items if isinstance(i, Event)] == []
            assert fan.summary.sources[0].kind == "tls", fan.summary.sources[0].error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, as any CA the system has
        events, report = await fan_in(url, retries=0)
        assert events == ["one"] and report.status == "completed"
    finally:
        server.close()
        await server.wait_closed()
