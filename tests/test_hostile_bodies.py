"""Hostile response bodies (hardening issue, round 3, classes 1-3), from raw TCP servers on
127.0.0.1 that write exactly the bytes each case needs:

1. a broken chunked body (a chunk size of `zz`) fails the source at once as a protocol
   error, while the server still holds the connection open; retried by the usual rules;
2. every content coding the standard names is decoded (stacked, repeated, `x-gzip`,
   `deflate`, `br`), anything else fails by name, and a small compressed body cannot
   expand in memory;
3. a body framed only by the connection's close, cut inside an event, is a cut (reconnect
   with Last-Event-ID), not a clean end.

Every case runs twice: on the engine's aiohttp session and on `fanin load`'s lean client
(fanin/load/lean_http.py), which must fail each one with the same kind."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fanin.decoding import SUPPORTED
from fanin.load.lean_http import LeanSession
from fanin.events import Event
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=10, max_backoff=0.05)
SESSIONS: dict[str, object] = {"factory": None}  # None: the engine's own aiohttp session


@pytest.fixture(autouse=True, params=["aiohttp", "lean"])
def client(request):
    """Which HTTP client the case runs on (see the module docstring)."""
    SESSIONS["factory"] = LeanSession if request.param == "lean" else None
    yield request.param
    SESSIONS["factory"] = None
Script = Callable[[asyncio.StreamWriter, bytes, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[str, list[bytes]]]:
    """Runs `script(writer, request head, connection number)` for each connection; yields
    the URL and the request heads received."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            await script(writer, head, len(heads))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", heads
    finally:
        server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await server.wait_closed()


async def run(url: str, config: StreamConfig | None = None, **kw):
    kw.setdefault("connector_factory", SESSIONS["factory"])
    fan = FanIn([Request(url)], config or StreamConfig(**FAST), **kw)
    events: list[Event] = []
    async with asyncio.timeout(30):  # a hang fails the test instead of holding the suite
        async with contextlib.aclosing(fan.stream()) as items:
            async for item in items:
                if isinstance(item, Event):
                    events.append(item)
    assert fan.summary is not None
    return [e.data for e in events], fan.summary.sources[0]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"


# ------------------------------------------------------------------ 1. a broken chunked body

async def test_a_broken_chunk_size_fails_at_once_as_a_protocol_error():
    release = asyncio.Event()

    async def script(writer, head, n):
        writer.write(SSE_CHUNKED + b"\r\n" + chunk(b"id: 1\ndata: one\n\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"zz\r\ndata: two\n\n\r\n")
        await writer.drain()
        await release.wait()  # the connection stays open: the client must not wait for its close

    async with raw_server(script) as (url, heads):
        try:
            data, report = await run(url, StreamConfig(retries=0, **FAST))
        finally:
            release.set()
    assert data == ["one"]
    assert report.status == "failed" and report.kind == "protocol"
    assert report.error.startswith(f"malformed response body from {url}") and "chunk" in report.error
    assert "\n" not in report.error and len(heads) == 1


async def test_a_broken_chunk_is_retried_and_resumes_by_id():
    async def script(writer, head, n):
        if n == 1:
            writer.write(SSE_CHUNKED + b"\r\n" + chunk(b"id: 1\ndata: one\n\n"))
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"zz\r\n")
        else:
            writer.write(SSE_CHUNKED + b"\r\n" + chunk(b"id: 2\ndata: two\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    assert data == ["one", "two"] and report.status == "completed" and report.reconnects == 1
    assert b"last-event-id: 1\r\n" in heads[1].lower()


# ------------------------------------------------------------------ 2. content codings

EVENTS = b"".join(b"id: %d\ndata: event %d\n\n" % (i, i) for i in range(1, 51))
WANT = [f"event {i}" for i in range(1, 51)]


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def _brotli(data: bytes) -> bytes:
    import brotli

    return brotli.compress(data)


CODINGS = {  # name: (Content-Encoding header lines, encoder applied to the body)
    "gzip": ([b"gzip"], gzip.compress),
    "x-gzip": ([b"x-gzip"], gzip.compress),
    "GZIP upper case": ([b"GZIP"], gzip.compress),
    "gzip, gzip": ([b"gzip, gzip"], lambda b: gzip.compress(gzip.compress(b))),
    "two headers": ([b"gzip", b"gzip"], lambda b: gzip.compress(gzip.compress(b))),
    "deflate, gzip": ([b"deflate, gzip"], lambda b: gzip.compress(_deflate(b))),
    "deflate": ([b"deflate"], _deflate),
    "raw deflate": ([b"deflate"], _raw_deflate),
    "identity, gzip": ([b"identity, gzip"], gzip.compress),
    "two gzip members": ([b"gzip"], lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:])),
}
if "br" in SUPPORTED:
    CODINGS["br"] = ([b"br"], _brotli)
    CODINGS["gzip, br"] = ([b"gzip, br"], lambda b: _brotli(gzip.compress(b)))


def coded_response(lines: list[bytes], body: bytes, *, chunked: bool = True) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    head += b"".join(b"Content-Encoding: %s\r\n" % line for line in lines)
    if chunked:
        pieces = [body[i:i + 97] for i in range(0, len(body), 97)]  # odd pieces: codings cut anywhere
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize("name", sorted(CODINGS))
async def test_every_standard_coding_is_decoded(name):
    lines, encode = CODINGS[name]

    async def script(writer, head, n):
        writer.write(coded_response(lines, encode(EVENTS)))
        await writer.drain()

    async with raw_server(script) as (url, _):
        data, report = await run(url)
    assert data == WANT and report.status == "completed" and report.error is None


@pytest.mark.parametrize("coding", ["compress", "zstd-unknown", "gzip, compress"])
async def test_a_coding_we_cannot_decode_fails_by_name(coding):
    async def script(writer, head, n):
        writer.write(coded_response([coding.encode()], b"\x1f\x9d binary"))
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    assert data == [] and report.status == "failed" and report.kind == "encoding"
    assert repr(coding.split(", ")[-1]) in report.error and "cannot be decoded" in report.error
    assert len(heads) == 1 and report.reconnects == 0, "the same body would come back: not retried"


async def test_corrupt_gzip_fails_clearly():
    async def script(writer, head, n):
        writer.write(coded_response([b"gzip"], gzip.compress(EVENTS)[:20] + b"not gzip at all" * 20))
        await writer.drain()

    async with raw_server(script) as (url, _):
        data, report = await run(url)
    assert report.status == "failed" and report.kind == "encoding" and "bad gzip data" in report.error


async def test_a_gzip_body_cut_inside_its_data_is_a_cut():
    async def script(writer, head, n):
        packed = gzip.compress(EVENTS)
        writer.write(coded_response([b"gzip"], packed[: len(packed) - 12]))  # the gzip trailer is missing
        await writer.drain()

    async with raw_server(script) as (url, _):
        data, report = await run(url, StreamConfig(retries=0, **FAST))
    assert report.kind == "truncated" and "stopped before its end" in report.error


async def test_a_small_compressed_body_cannot_expand_in_memory():
    """A decompression bomb: 64 MiB of one endless line, gzip twice, sent as a few KiB.
    The decoded bytes meet the parser's max_line_size piece by piece: the source fails as
    too large, and the client never held the expansion."""
    bomb = gzip.compress(gzip.compress(b"data: " + b"a" * (64 * 1024 * 1024), 9), 9)
    assert len(bomb) < 200_000

    async def script(writer, head, n):
        writer.write(coded_response([b"gzip, gzip"], bomb, chunked=False))
        await writer.drain()

    async with raw_server(script) as (url, _):
        tracemalloc.start()
        try:
            data, report = await run(url, StreamConfig(max_line_size=1024 * 1024, **FAST))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert report.status == "failed" and report.kind == "too_large"
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 1 MiB line limit"


# ------------------------------------------------------------------ 3. a cut close-delimited body

CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


async def test_a_close_delimited_body_cut_inside_an_event_reconnects():
    async def script(writer, head, n):
        if n == 1:
            writer.write(CLOSE_DELIMITED + b"".join(b"id: %d\ndata: e%d\n\n" % (i, i) for i in range(1, 5))
                         + b"id: 5\ndata: e5 cut he")
        else:
            writer.write(CLOSE_DELIMITED + b"id: 5\ndata: e5\n\n")
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    assert data == ["e1", "e2", "e3", "e4", "e5"], "the partial event is dropped, then resumed"
    assert report.status == "completed" and report.reconnects == 1
    assert b"last-event-id: 4\r\n" in heads[1].lower()


async def test_a_close_delimited_cut_names_itself_when_retries_are_spent():
    async def script(writer, head, n):
        writer.write(CLOSE_DELIMITED + b"data: one\n\ndata: tw")
        await writer.drain()

    async with raw_server(script) as (url, _):
        data, report = await run(url, StreamConfig(retries=0, **FAST))
    assert data == ["one"] and report.status == "failed" and report.kind == "truncated"
    assert "ended inside an event" in report.error


async def test_a_close_delimited_body_that_ends_between_events_is_a_clean_end():
    async def script(writer, head, n):
        writer.write(CLOSE_DELIMITED + b"data: one\n\ndata: two\n\n")
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    assert data == ["one", "two"] and report.status == "completed" and report.reconnects == 0 and len(heads) == 1


async def test_a_framed_body_ending_inside_an_event_is_the_servers_choice():
    """With chunked framing the end is proven: a last unfinished event is dropped, as the
    standard says, and the source completes."""
    async def script(writer, head, n):
        writer.write(SSE_CHUNKED + b"\r\n" + chunk(b"data: one\n\ndata: unfinished") + b"0\r\n\r\n")
        await writer.drain()

    async with raw_server(script) as (url, _):
        data, report = await run(url)
    assert data == ["one"] and report.status == "completed" and report.reconnects == 0


async def test_requests_ask_only_for_codings_that_can_be_decoded():
    async def script(writer, head, n):
        writer.write(coded_response([], EVENTS))
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    asked = next(line for line in heads[0].decode().split("\r\n") if line.lower().startswith("accept-encoding:"))
    codings = {c.strip() for c in asked.split(":", 1)[1].split(",")}
    assert codings == set(SUPPORTED) - {"x-gzip"} and data == WANT


async def test_an_empty_encoded_body_is_a_clean_end():
    async def script(writer, head, n):
        writer.write(coded_response([b"gzip"], b""))
        await writer.drain()

    async with raw_server(script) as (url, heads):
        data, report = await run(url)
    assert data == [] and report.status == "completed" and report.reconnects == 0 and len(heads) == 1


async def test_a_broken_chunk_is_a_protocol_error_with_aiohttps_pure_python_parser_too():
    """AIOHTTP_NO_EXTENSIONS=1 (no C parser) hands the reader the parser's own error."""
    import json
    import os
    import sys

    client = (
        "import asyncio, contextlib, json, sys\n"
        "from fanin.merge import FanIn\n"
        "from fanin.stream import Request, StreamConfig\n"
        "async def main():\n"
        "    fan = FanIn([Request(sys.argv[1])], StreamConfig(retries=0))\n"
        "    async with contextlib.aclosing(fan.stream()) as items:\n"
        "        n = len([i async for i in items if type(i).__name__ == 'Event'])\n"
        "    s = fan.summary.sources[0]\n"
        "    print(json.dumps([n, s.kind, s.error]))\n"
        "asyncio.run(main())\n"
    )
    release = asyncio.Event()

    async def script(writer, head, n):
        writer.write(SSE_CHUNKED + b"\r\n" + chunk(b"data: one\n\n"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"zz\r\n")
        await writer.drain()
        await release.wait()

    async with raw_server(script) as (url, _):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", client, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, AIOHTTP_NO_EXTENSIONS="1"))
        try:
            async with asyncio.timeout(60):
                out, err = await proc.communicate()
        finally:
            release.set()
    events, kind, error = json.loads(out)
    assert events == 1 and kind == "protocol" and "chunk" in error, err.decode()[-500:]
