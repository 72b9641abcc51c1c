"""Output is bounded by input (issue 19, class 4).

A hostile loopback server sends shapes built to amplify: one long id (or one at the cap, of
control characters, which JSON spells in 6 bytes each) followed by many tiny events that all
repeat it, a long event type, control-character and invalid-UTF-8 data, empty events. For each,
what the NDJSON and text writers, the `fanin stream` command and the Dify `sse_request` tool
produce must stay within the stated bound of what the source received:

    records x (one empty record) + 14 x bytes received + ID_ECHO_ALLOWANCE

(6 for what JSON escaping does to the event's own bytes, 8 for the ids events inherit), and
the shapes that would pass it fail the source with one too_large line instead.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from fanin.cli.writers import NdjsonWriter, TextWriter
from fanin.embed.netguard import AddressGuard
from fanin.errors import FailureKind
from fanin.events import Event, dumps
from fanin.merge import FanIn
from fanin.parser import DEFAULT_MAX_ID_SIZE, ID_ECHO_ALLOWANCE, ID_ECHO_FACTOR
from fanin.stream import Request, StreamConfig, StreamObserver
from loopback_apps import serve
from tools.sse_core import ToolFailure, plan_sse_request, run_sse_request

ROOT = Path(__file__).resolve().parent.parent
ESCAPE = 6  # JSON spells a control character \u00XX: the most one received byte can become
CAP = DEFAULT_MAX_ID_SIZE
CTRL = "\x01"

SHAPES: dict[str, bytes] = {
    # the shape: a 256 KiB id, then 999 events that repeat it (x968 before)
    "long_id": b"id: " + b"i" * 256 * 1024 + b"\ndata: 0\n\n" + b"".join(b"data: %d\n\n" % n for n in range(1, 1000)),
    # an id at the cap, of control characters (6 KiB in JSON), repeated by 50,000 empty events
    "cap_id_control": b"id: " + (CTRL * CAP).encode() + b"\n\n" + b"data\n\n" * 50_000,
    "cap_id_plain": b"id: " + b"a" * CAP + b"\n\n" + b"data\n\n" * 50_000,
    # repeated, but on events big enough to carry it: allowed, and still within the bound
    "cap_id_carried": b"id: " + (CTRL * CAP).encode() + b"\n\n" + (b"data: " + b"y" * 800 + b"\n\n") * 400,
    "own_ids_control": (b"id: " + (CTRL * 1000).encode() + b"\ndata\n\n") * 300,
    "long_type": b"event: " + b"t" * 256 * 1024 + b"\ndata: 0\n\n" + b"data: 1\n\n" * 1000,
    "cap_type_control": (b"event: " + (CTRL * CAP).encode() + b"\ndata\n\n") * 300,
    "control_data": (b"data: " + (CTRL * 60_000).encode() + b"\n\n") * 5,
    "invalid_utf8_data": (b"data: " + b"\xff" * 60_000 + b"\n\n") * 5,
    "empty_events": b"data\n\n" * 50_000,
}
EVENTS = {"cap_id_carried": 400, "own_ids_control": 300, "cap_type_control": 300, "control_data": 5,
          "invalid_utf8_data": 5, "empty_events": 50_000}
FAILING = {"long_id": "SSE event id longer than the limit", "long_type": "SSE event type longer than the limit",
           "cap_id_control": "repeated on events too small", "cap_id_plain": "repeated on events too small"}


async def _shape(request: web.Request) -> web.StreamResponse:
    body = SHAPES[request.match_info["name"]]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        for offset in range(0, len(body), 65536):
            await resp.write(body[offset: offset + 65536])
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client gave up on a hostile shape, as it should
    return resp


@pytest.fixture(scope="module")
def base():
    app = web.Application()
    app.router.add_get("/shape/{name}", _shape)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}/shape"


def bound(url: str, records: int, received: int) -> int:
    """The stated bound on NDJSON bytes for `records` events from `received` bytes."""
    empty = dumps(Event(0, url, "message", "", "", 0, time.time_ns(), event_number=max(records, 1)))
    return records * len(empty) + (ESCAPE + ID_ECHO_FACTOR) * received + ID_ECHO_ALLOWANCE


class _Received(StreamObserver):
    def __init__(self) -> None:
        self.received = 0

    def on_bytes(self, source: int, n: int) -> None:
        self.received += n


async def _through_the_writers(url: str):
    received = _Received()
    fan = FanIn([Request(url=url)], StreamConfig(retries=0), observer=received)
    ndjson, text = io.BytesIO(), io.StringIO()
    ndjson_writer, text_writer = NdjsonWriter(ndjson), TextWriter(1, text)
    async for chunk in fan.stream_batches():
        ndjson_writer.batch(chunk)
        text_writer.batch(chunk)
    ndjson_writer.summary(fan.summary)
    return fan.summary, received.received, len(ndjson.getvalue()), len(text.getvalue().encode())


@pytest.mark.parametrize("shape", SHAPES)
def test_ndjson_and_text_are_bounded_by_what_was_received(base, shape):
    url = f"{base}/{shape}"
    summary, received, ndjson_out, text_out = asyncio.run(_through_the_writers(url))
    report = summary.sources[0]
    print(f"{shape}: received {received} B, ndjson {ndjson_out} B (x{ndjson_out / received:.1f}),"
          f" text {text_out} B (x{text_out / received:.2f}), {summary.total_events} events, {report.status}")
    assert 0 < received <= len(SHAPES[shape])
    assert ndjson_out <= bound(url, summary.total_events, received), shape
    assert text_out <= 3 * received  # data as it came (U+FFFD: 3 bytes for one invalid byte), one LF each
    if shape in FAILING:
        assert report.status == "failed" and report.kind == FailureKind.TOO_LARGE, report
        assert FAILING[shape] in report.error and "\n" not in report.error and len(report.error) < 300
    else:
        assert report.status == "completed", report
        assert summary.total_events == EVENTS[shape]


@pytest.mark.parametrize("shape", ["long_id", "cap_id_control"])
@pytest.mark.parametrize("fmt", ["ndjson", "text"])
def test_fanin_stream_output_is_bounded(base, shape, fmt):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    url = f"{base}/{shape}"
    result = subprocess.run([sys.executable, "-m", "fanin", "stream", url, "--format", fmt, "--retries", "0"],
                            capture_output=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 1, result.stderr[-2000:]
    sent = len(SHAPES[shape])  # at least what the client received
    events = result.stdout.count(b'"type":"event"') if fmt == "ndjson" else result.stdout.count(b"\n")
    assert len(result.stdout) <= bound(url, events, sent)
    assert len(result.stderr) < 1000 and FAILING[shape].encode() in result.stderr


def _dify_output_bytes(outputs) -> int:
    size = 0
    for output in outputs:
        if output[0] == "text":
            size += len(output[1].encode())
        elif output[0] == "variable":
            size += len(orjson.dumps(output[2]))
        else:
            size += len(orjson.dumps(output[1]))
    return size


@pytest.mark.parametrize("mode", ["data", "ndjson"])
@pytest.mark.parametrize("shape", ["long_id", "cap_id_control", "cap_id_carried", "cap_type_control"])
def test_dify_sse_request_output_is_bounded(base, shape, mode):
    """Everything the tool hands Dify: the live text, every variable and the summary. In ndjson
    mode the records go out twice (the live text and `events`), hence twice the bound."""
    url = f"{base}/{shape}"
    plan = plan_sse_request({"url": url, "output_mode": mode, "max_events": 1_000_000, "retry_attempts": 0,
                             "max_duration": 60})
    try:
        outputs = list(run_sse_request(plan, guard=AddressGuard()))
    except ToolFailure as exc:  # the source failed before its first event
        assert shape in FAILING and FAILING[shape] in str(exc) and len(str(exc)) < 500
        return
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    size = _dify_output_bytes(outputs)
    sent = len(SHAPES[shape])
    print(f"{shape}/{mode}: sent {sent} B, tool output {size} B (x{size / sent:.1f})")
    assert size <= 2 * bound(url, variables["total_events"], sent) + 64 * 1024
    if shape in FAILING:
        assert FAILING[shape] in variables["error"]
