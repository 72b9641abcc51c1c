"""The built-in server's Dify-app-like endpoints (fanin/server/dify.py) speak the real
event catalogue and Dify's error bodies."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from fanin.embed.bridge import get_bridge
from fanin.server.app import ServerThread
from fanin.server.dify import DIFY_TEST_KEY, dify_answer_for


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def post(url: str, body: dict, key: str = DIFY_TEST_KEY) -> tuple[int, str, bytes]:
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    return get_bridge().run(go)


def data_events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_chat_messages_stream_has_the_real_event_catalogue(server):
    status, ctype, raw = post(server.url("/v1/chat-messages"),
                              {"query": "你好 👋", "user": "u", "inputs": {}, "response_mode": "streaming"})
    assert status == 200 and ctype.startswith("text/event-stream")
    assert b"event: ping\n\n" in raw
    kinds = [e["event"] for e in data_events(raw)]
    for kind in ("workflow_started", "node_started", "node_finished", "message", "workflow_finished", "message_end"):
        assert kind in kinds
    answer = "".join(e["answer"] for e in data_events(raw) if e["event"] == "message")
    assert answer == dify_answer_for("你好 👋", "u")
    assert "你好 👋".encode() in raw  # raw UTF-8 on the wire, not \u escapes


def test_workflow_run_streams_text_chunks(server):
    status, _, raw = post(server.url("/v1/workflows/run"),
                          {"inputs": {"query": "q"}, "user": "u", "response_mode": "streaming"})
    events = data_events(raw)
    assert status == 200 and "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk") == \
        dify_answer_for("q", "u")
    assert events[-1]["event"] == "workflow_finished" and events[-1]["data"]["status"] == "succeeded"


def test_bad_key_and_bad_request_get_dify_error_bodies(server):
    status, _, raw = post(server.url("/v1/chat-messages"), {"query": "x", "user": "u"}, key="app-nope")
    assert status == 401 and orjson.loads(raw) == {"code": "unauthorized", "message": "Access token is invalid",
                                                   "status": 401}
    status, _, raw = post(server.url("/v1/chat-messages"), {"user": "u", "response_mode": "streaming"})
    assert status == 400 and orjson.loads(raw)["code"] == "invalid_param"


def test_error_event_mid_stream(server):
    _, _, raw = post(server.url("/v1/chat-messages"), {"query": "[error]", "user": "u", "response_mode": "streaming"})
    last = data_events(raw)[-1]
    assert last["event"] == "error" and {"code", "message", "status"} <= set(last)


def test_open_dify_streams_are_counted_in_stats(server):
    """Like every streaming route, the Dify-app ones show in /stats while they are open."""

    async def go():
        async with aiohttp.ClientSession() as session:
            body = {"query": "[slow] hello", "user": "u", "response_mode": "streaming"}
            async with session.post(server.url("/v1/chat-messages"), json=body,
                                    headers={"Authorization": f"Bearer {DIFY_TEST_KEY}"}) as resp:
                await resp.content.readline()
                during = server.stats.open_streams
                await resp.read()
        return during

    assert get_bridge().run(go) == 1
    assert server.stats.open_streams == 0
