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


@pytest.mark.parametrize("key,path,body,kinds", [
    ("app-test-chat", "/v1/chat-messages", {"query": "q"}, ["message", "message_end"]),
    ("app-test-agent-chat", "/v1/chat-messages", {"query": "q"}, ["agent_thought", "agent_message", "message_end"]),
    ("app-test-agent", "/v1/chat-messages", {"query": "q"},
     ["agent_thought", "agent_message", "message", "message_end"]),
    ("app-test-completion", "/v1/completion-messages", {"inputs": {"query": "q"}}, ["message", "message_end"]),
    ("app-test-workflow", "/v1/workflows/run", {"inputs": {"query": "q"}},
     ["workflow_started", "node_started", "node_finished", "text_chunk", "workflow_finished"]),
])
def test_each_app_type_sends_its_documented_sequence(server, key, path, body, kinds):
    status, _, raw = post(server.url(path), {**body, "user": "u", "response_mode": "streaming"}, key=key)
    seen = []
    for event in data_events(raw):
        if event["event"] not in seen:
            seen.append(event["event"])
    assert status == 200 and seen == kinds


def test_wrong_route_gets_difys_app_type_errors(server):
    for key, path, code in [("app-test-workflow", "/v1/chat-messages", "not_chat_app"),
                            ("app-test-chat", "/v1/workflows/run", "not_workflow_app"),
                            ("app-test-chat", "/v1/completion-messages", "app_unavailable")]:
        status, _, raw = post(server.url(path), {"query": "q", "inputs": {}, "user": "u",
                                                 "response_mode": "streaming"}, key=key)
        assert status == 400 and orjson.loads(raw)["code"] == code


def test_terminal_orders_pause_and_resume_endpoint(server):
    body = {"user": "u", "response_mode": "streaming"}
    _, _, raw = post(server.url("/v1/chat-messages"), {**body, "query": "x"})
    assert [e["event"] for e in data_events(raw)][-2:] == ["workflow_finished", "message_end"]
    _, _, raw = post(server.url("/v1/chat-messages"), {**body, "query": "[message-end-first] x"})
    assert [e["event"] for e in data_events(raw)][-2:] == ["message_end", "workflow_finished"]
    _, _, raw = post(server.url("/v1/chat-messages"), {**body, "query": "[pause] x"})
    events = data_events(raw)
    assert [e["event"] for e in events][-2:] == ["human_input_required", "workflow_paused"]
    run_id = events[-1]["data"]["workflow_run_id"]

    async def get(path):
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url(path), headers={"Authorization": f"Bearer {DIFY_TEST_KEY}"}) as resp:
                return resp.status, await resp.read()

    status, raw = get_bridge().run(lambda: get(f"/v1/workflow/{run_id}/events?user=u"))
    assert status == 200 and data_events(raw)[-1]["event"] == "workflow_paused"
    status, _ = get_bridge().run(lambda: get(f"/v1/workflow/{run_id}/events?user=someone-else"))
    assert status == 404
