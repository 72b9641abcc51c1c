"""The built-in SSE server (fanin/server/), read with plain aiohttp so these tests do not
depend on the fanin engine: exact ids, sizes, faults, resume, raw bytes, echo, stats."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid

import aiohttp
import orjson
import pytest

from fanin.server.app import ServerThread, build_app
from fanin.server.command import add_serve_arguments

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_blocks(body: bytes) -> list[dict[str, str]]:
    """Complete SSE blocks of a body this server wrote (LF line ends, no comments mixed in)."""
    blocks = []
    complete, _, _ = body.rpartition(b"\n\n")
    for raw_block in complete.split(b"\n\n"):
        fields: dict[str, str] = {}
        for line in raw_block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            blocks.append(fields)
    return blocks


async def fetch(url: str, *, method: str = "GET", headers: dict | None = None,
                data: bytes | None = None) -> tuple[aiohttp.ClientResponse, bytes, bool]:
    """Status/headers, the body bytes received, and whether the body ended abnormally."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers, data=data) as resp:
            body = bytearray()
            truncated = False
            try:
                async for chunk in resp.content.iter_any():
                    body.extend(chunk)
            except aiohttp.ClientPayloadError:
                truncated = True
            return resp, bytes(body), truncated


async def wait_until(predicate, what: str, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- /stream basics


async def test_ids_are_exact_and_in_order(sse_server):
    resp, body, truncated = await fetch(sse_server.url("/stream?count=250"))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert not truncated
    blocks = parse_blocks(body)
    assert [int(b["id"]) for b in blocks] == list(range(1, 251))
    assert all(int(b["data"].split(" ")[0]) == int(b["id"]) for b in blocks)
    assert all(len(b["data"]) == 16 for b in blocks)   # default size


async def test_many_chunks_keep_count_and_size(sse_server):
    # 5000 events of 64 bytes span several 64 KiB writes and four digit-length groups
    resp, body, truncated = await fetch(sse_server.url("/stream?count=5000&size=64"))
    blocks = parse_blocks(body)
    assert not truncated
    assert [int(b["id"]) for b in blocks] == list(range(1, 5001))
    assert {len(b["data"]) for b in blocks} == {64}
    assert body.endswith(b"\n\n")


async def test_start_ids_off_event_type_and_retry(sse_server):
    _, body, _ = await fetch(sse_server.url("/stream?count=3&start=41&event=tick&retry=250"))
    assert body.startswith(b"retry: 250\n\n")
    blocks = parse_blocks(body)
    assert [b["id"] for b in blocks] == ["41", "42", "43"]
    assert {b["event"] for b in blocks} == {"tick"}

    _, body, _ = await fetch(sse_server.url("/stream?count=3&ids=0&size=2"))
    assert body == b"data: 1 \n\ndata: 2 \n\ndata: 3 \n\n"


async def test_paced_streams_share_a_ticker_and_deliver_everything(sse_server):
    urls = [sse_server.url(f"/stream?count=5&rate=100&n={i}") for i in range(20)]
    results = await asyncio.gather(*(fetch(u) for u in urls))
    for _, body, truncated in results:
        assert not truncated
        assert [b["id"] for b in parse_blocks(body)] == ["1", "2", "3", "4", "5"]


async def test_paced_streams_still_flow_after_the_ticker_went_idle(fresh_server):
    """The shared clock stops when its last stream leaves; a later run at the same rate
    must start it again without streams waiting on ticks from its first life."""
    _, body, _ = await fetch(fresh_server.url("/stream?count=200&rate=200&run=first"))
    assert len(parse_blocks(body)) == 200  # the clock has ticked ~200 times
    await asyncio.sleep(0.1)  # long enough for the idle clock to stop
    started = time.monotonic()
    _, body, _ = await fetch(fresh_server.url("/stream?count=2&rate=200&run=second"))
    assert [b["id"] for b in parse_blocks(body)] == ["1", "2"]
    # Two ticks are 10 ms; a clock restarted from zero would first owe ~200 ticks (1 s).
    assert time.monotonic() - started < 0.5


async def test_ts_data_is_compact_json_with_send_time(sse_server):
    before = time.time()
    _, body, _ = await fetch(sse_server.url("/stream?count=3&ts=1&size=64"))
    after = time.time()
    blocks = parse_blocks(body)
    assert len(blocks) == 3
    for number, block in enumerate(blocks, start=1):
        data = orjson.loads(block["data"])
        assert list(data) == ["seq", "ts", "pad"]
        assert data["seq"] == number
        assert before - 1 <= data["ts"] <= after + 1
        assert set(data["pad"]) <= {"x"}
        assert len(block["data"]) == 64
        assert ", " not in block["data"] and ": " not in block["data"]   # compact


async def test_resume_from_last_event_id_header(sse_server):
    _, body, _ = await fetch(sse_server.url("/stream?count=10"), headers={"Last-Event-ID": "7"})
    assert [b["id"] for b in parse_blocks(body)] == ["8", "9", "10"]
    _, body, _ = await fetch(sse_server.url("/stream?count=10"), headers={"Last-Event-ID": "10"})
    assert body == b""


# --------------------------------------------------------------------------- faults


async def test_abort_every_truncates_mid_event_and_resume_continues(sse_server):
    url = sse_server.url("/stream?count=10&abort_every=4&size=20")
    seen: list[int] = []
    last_id = None
    for expected_truncated in (True, True, False):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        _, body, truncated = await fetch(url, headers=headers)
        assert truncated is expected_truncated
        blocks = parse_blocks(body)
        ids = [int(b["id"]) for b in blocks]
        seen.extend(ids)
        last_id = str(ids[-1])
        if truncated:
            assert len(ids) == 4
            tail = body.rpartition(b"\n\n")[2]
            next_id = ids[-1] + 1
            full_next = b"id: %d\ndata: %d " % (next_id, next_id) + b"x" * (19 - len(str(next_id))) + b"\n\n"
            assert tail and full_next.startswith(tail) and len(tail) < len(full_next)
    assert seen == list(range(1, 11))


async def test_close_after_ends_cleanly_with_more_on_reconnect(sse_server):
    url = sse_server.url("/stream?count=10&close_after=3")
    _, body, truncated = await fetch(url)
    assert not truncated
    assert [b["id"] for b in parse_blocks(body)] == ["1", "2", "3"]
    _, body, truncated = await fetch(url, headers={"Last-Event-ID": "3"})
    assert not truncated
    assert [b["id"] for b in parse_blocks(body)] == ["4", "5", "6"]


@pytest.mark.parametrize("status", [401, 404, 429, 500, 503])
async def test_status_answers_with_a_short_text_body(sse_server, status):
    resp, body, _ = await fetch(sse_server.url(f"/stream?status={status}"))
    assert resp.status == status
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert body.decode().startswith(str(status)) and body.count(b"\n") == 1


async def test_status_204_has_no_body_and_retry_after_is_sent(sse_server):
    resp, body, _ = await fetch(sse_server.url("/stream?status=204"))
    assert resp.status == 204 and body == b""
    resp, _, _ = await fetch(sse_server.url("/stream?status=503&retry_after=7"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "7"


async def test_fail_first_fails_then_streams(sse_server):
    url = sse_server.url(f"/stream?count=2&fail_first=2&status=429&tag={uuid.uuid4().hex}")
    statuses = []
    for _ in range(3):
        resp, body, _ = await fetch(url)
        statuses.append(resp.status)
    assert statuses == [429, 429, 200]
    assert [b["id"] for b in parse_blocks(body)] == ["1", "2"]

    resp, _, _ = await fetch(sse_server.url(f"/stream?fail_first=1&tag={uuid.uuid4().hex}"))
    assert resp.status == 503   # default failure status


async def test_content_type_override(sse_server):
    resp, body, _ = await fetch(sse_server.url("/stream?count=2&content_type=text/plain"))
    assert resp.headers["Content-Type"] == "text/plain"
    assert len(parse_blocks(body)) == 2


async def test_stall_keeps_connection_open_with_heartbeats(fresh_server):
    async with aiohttp.ClientSession() as session:
        async with session.get(fresh_server.url("/stream?count=5&stall_after=2&heartbeat=0.02")) as resp:
            body = bytearray()
            while body.count(b":\n") < 2:
                body.extend(await resp.content.readany())
            assert [b["id"] for b in parse_blocks(bytes(body))] == ["1", "2"]
            assert fresh_server.stats.open_streams == 1
    await wait_until(lambda: fresh_server.stats.open_streams == 0, "the stalled stream to close")


async def test_line_forever_sends_one_endless_line(sse_server):
    async with aiohttp.ClientSession() as session:
        async with session.get(sse_server.url("/stream?line_forever=1")) as resp:
            received = bytearray()
            while len(received) < 1024 * 1024:
                received.extend(await resp.content.readany())
    assert received.startswith(b"data: x")
    assert b"\n" not in received and b"\r" not in received


async def test_bad_parameters_get_one_line_400(sse_server):
    for query in ("count=abc", "rate=-1", "status=99", "event=a%0Ab"):
        resp, body, _ = await fetch(sse_server.url(f"/stream?{query}"))
        assert resp.status == 400, query
        assert body.count(b"\n") == 1, query


# --------------------------------------------------------------------------- /raw /echo /redirect /


async def test_raw_chunk_1_delivers_exact_bytes_in_separate_reads(sse_server):
    payload = "\ufeffdata: caf\u00e9\r\n\rdata: b\r\n\r\n:c\n".encode()
    b64 = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    async with aiohttp.ClientSession() as session:
        async with session.get(sse_server.url(f"/raw?b64={b64}&chunk=1&pause_ms=2")) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            reads = [chunk async for chunk in resp.content.iter_any()]
    assert b"".join(reads) == payload
    assert len(reads) > 1


async def test_raw_post_body_one_write_and_abort(sse_server):
    payload = b"data: whole\n\ndata: cut"
    resp, body, truncated = await fetch(sse_server.url("/raw?content_type=text/plain"), method="POST", data=payload)
    assert (resp.headers["Content-Type"], body, truncated) == ("text/plain", payload, False)
    b64 = base64.urlsafe_b64encode(payload).decode()
    _, body, truncated = await fetch(sse_server.url(f"/raw?b64={b64}&abort=1"))
    assert truncated and body == payload


async def test_echo_reports_method_headers_query_and_body(sse_server):
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache",
               "Last-Event-ID": "42", "Authorization": "Bearer t0k3n"}
    resp, body, _ = await fetch(sse_server.url("/echo?a=1"), method="POST", headers=headers,
                                data='{"q": "hé"}'.encode())
    assert resp.status == 200
    (block,) = parse_blocks(body)
    report = orjson.loads(block["data"])
    assert report["method"] == "POST" and report["path"] == "/echo" and report["query"] == {"a": "1"}
    assert report["body"] == '{"q": "hé"}'
    for name, value in headers.items():
        assert report["headers"][name] == value


async def test_redirect_is_followed_to_a_stream(sse_server):
    resp, body, _ = await fetch(sse_server.url("/redirect?to=/stream%3Fcount%3D2"))
    assert resp.status == 200 and len(resp.history) == 1 and resp.history[0].status == 302
    assert [b["id"] for b in parse_blocks(body)] == ["1", "2"]
    resp, _, _ = await fetch(sse_server.url("/redirect?to=http://elsewhere/"))
    assert resp.status == 400


async def test_help_lists_the_endpoints(sse_server):
    _, body, _ = await fetch(sse_server.url("/"))
    for path in ("/stream", "/raw", "/echo", "/redirect", "/stats"):
        assert path.encode() in body


# --------------------------------------------------------------------------- stats, lifecycle


async def test_stats_follow_open_streams_and_last_event_ids(fresh_server):
    stats = fresh_server.stats
    async with aiohttp.ClientSession() as session:
        async with session.get(fresh_server.url("/stream?count=0&rate=50"),
                               headers={"Last-Event-ID": "12"}) as resp:
            await resp.content.readany()
            assert stats.open_streams == 1
            async with session.get(fresh_server.url("/stats")) as stats_resp:
                snapshot = await stats_resp.json()
            assert snapshot["open_streams"] == 1
            assert snapshot["last_event_ids"] == ["12"]
            assert snapshot["total_requests"] == 1   # /stats does not count itself
        # leaving the block closes the connection; the server must notice
        await wait_until(lambda: stats.open_streams == 0, "open_streams to return to 0")
        async with session.get(fresh_server.url("/stats")) as stats_resp:
            assert (await stats_resp.json())["open_streams"] == 0
    assert stats.last_event_ids == ["12"] and stats.streams_started == 1


async def test_fast_endless_stream_closed_by_client_is_released(fresh_server):
    async with aiohttp.ClientSession() as session:
        async with session.get(fresh_server.url("/stream?count=0&size=64")) as resp:
            for _ in range(10):
                await resp.content.readany()
    await wait_until(lambda: fresh_server.stats.open_streams == 0, "the endless stream to close")


def test_thread_stops_promptly_with_streams_open():
    server = ServerThread(count=3)   # build_app defaults reach /stream
    server.start()

    async def open_two_endless_then_stop():
        _, body, _ = await fetch(server.url("/stream"))
        assert [b["id"] for b in parse_blocks(body)] == ["1", "2", "3"]
        async with aiohttp.ClientSession() as session:
            endless = [await session.get(server.url(f"/stream?count=0&rate={r}")) for r in (0, 5)]
            await wait_until(lambda: server.stats.open_streams == 2, "two open streams")
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            assert time.monotonic() - started < 5
            for resp in endless:
                resp.close()

    asyncio.run(open_two_endless_then_stop())
    assert not server._thread.is_alive()


def test_build_app_rejects_unknown_defaults():
    with pytest.raises(TypeError):
        build_app(cuont=3)


def test_serve_prints_one_line_and_exits_0_on_ctrl_c():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args([]).port == 8765
    code = ("import argparse, sys; from fanin.server.command import add_serve_arguments, run_serve\n"
            "p = argparse.ArgumentParser(); add_serve_arguments(p)\n"
            "sys.exit(run_serve(p.parse_args(['--port', '0'])))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.startswith("fanin serve: listening on http://127.0.0.1:")
        assert "/stream" in line and "/raw" in line and "/echo" in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err
