"""Recorded Dify streams (tests/fixtures/dify/*.sse) replayed byte-exact through the built-in
Dify server's raw mode, in whole and in 7-byte and 1-byte writes, into the app tool; and the
same events, parsed as the SDK hands them over, into the app picker's core."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import orjson
import pytest

from fanin.parser import SSEParser
from fanin.server.app import ServerThread
from tools.app_invoke_core import plan_app_call, run_app_call
from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.common import ToolFailure

FIXTURES = Path(__file__).parent / "fixtures" / "dify"
CONV = "45701982-8118-4bc5-8e9b-64562b4555f2"
RUN = "fdc0b6b5-2f2b-4c0c-9b1f-1f4b8e2c1c3a"
CHATFLOW = "今天晴，最高 25°C。"

# name: (app_type, answer, status, more expected variables) or (app_type, error it fails with)
EXPECTED = {
    "chat": ("chatflow", "你好！ iPhone 13 Pro Max came out in 2021。", "completed", {"conversation_id": CONV}),
    "agent_chat": ("chatflow", "Here is your cat 🐱", "completed", {}),
    "new_agent": ("chatflow", "The capital of France is Paris.", "completed", {}),
    "chatflow_finished_first": ("chatflow", CHATFLOW, "completed", {"workflow_run_id": RUN}),
    "chatflow_message_end_first": ("chatflow", CHATFLOW, "completed", {"workflow_run_id": RUN}),
    "workflow": ("workflow", "Bonjour le monde", "completed", {"outputs": {"result": "Bonjour le monde"}}),
    "completion": ("completion", "Short summary.", "completed", {"conversation_id": ""}),
    "chatflow_pause": ("chatflow", "Draft ready.", "paused", {"form_token": "hit-7Qm2", "workflow_run_id": RUN}),
    "chatflow_error_mid_stream": ("chatflow", "the Dify workflow failed: [openai] Rate limit reached"),
    "chat_error": ("chatflow", "the Dify app reported an error (provider_quota_exceeded)"),
}


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def record(server, payload: bytes, chunk: int) -> str:
    request = urllib.request.Request(server.url(f"/v1/test/recordings?chunk={chunk}"), data=payload, method="POST")
    return orjson.loads(urllib.request.urlopen(request, timeout=10).read())["id"]


def test_every_fixture_has_an_expectation_and_covers_pings():
    names = sorted(p.stem for p in FIXTURES.glob("*.sse"))
    assert names == sorted(EXPECTED)
    assert all(b"event: ping\n\n" in (FIXTURES / f"{n}.sse").read_bytes() for n in names)


def test_raw_mode_replays_the_bytes_exactly(server):
    payload = (FIXTURES / "chatflow_finished_first.sse").read_bytes()
    key = record(server, payload, 7)
    request = urllib.request.Request(server.url(f"/v1/raw/{key}/chat-messages"), data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream") and response.read() == payload


@pytest.mark.parametrize("chunk", [0, 7, 1])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_stream_through_the_app_tool(server, name, chunk):
    app_type, *expected = EXPECTED[name]
    key = record(server, (FIXTURES / f"{name}.sse").read_bytes(), chunk)
    plan = plan_chatflow({"api_base": server.url(f"/v1/raw/{key}"), "api_key": "app-any", "app_type": app_type,
                          "query": "q"}, "rec-user")
    if len(expected) == 1:
        with pytest.raises(ToolFailure, match=re.escape(expected[0])):
            list(run_chatflow(plan))
        return
    answer, status, more = expected
    outputs = list(run_chatflow(plan))
    text = "".join(o[1] for o in outputs if o[0] == "text")
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    assert text == variables["answer"] == answer and variables["status"] == status
    for field, value in more.items():
        assert variables[field] == value


def sdk_events(name: str) -> list[dict]:
    """The fixture's events as the SDK's reverse invocation yields them: the `data:` objects
    (pings are not dispatched)."""
    parser = SSEParser()
    return [orjson.loads(m.data) for m in parser.feed((FIXTURES / f"{name}.sse").read_bytes())]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_events_through_the_app_picker(name):
    app_type, *expected = EXPECTED[name]
    call = plan_app_call({"app": {"app_id": "app-1", "inputs": {}, "files": []}, "query": "q",
                          "app_type": app_type})
    if len(expected) == 1:
        with pytest.raises(ToolFailure, match=re.escape(expected[0])):
            list(run_app_call(call, lambda _call: sdk_events(name)))
        return
    answer, status, more = expected
    outputs = list(run_app_call(call, lambda _call: sdk_events(name)))
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    assert "".join(o[1] for o in outputs if o[0] == "text") == variables["answer"] == answer
    assert variables["status"] == status and all(variables[k] == v for k, v in more.items())
