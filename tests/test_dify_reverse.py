"""The app picker (`dify_app`, reverse invocation) under the SDK's real runtime, with the
test playing the plugin daemon's side:

- serverless: `python -m main` POSTs each backwards call to
  `{DIFY_PLUGIN_DAEMON_URL}/backwards-invocation/transaction`; a loopback aiohttp app
  answers with the daemon's `backwards_response` lines;
- stdio (INSTALL_METHOD=local): the plugin writes its `invoke` session message to stdout and
  the test writes the daemon's lines to the plugin's stdin, two calls interleaved.

The app events come from the built-in Dify-like server's sequences (fanin.server.dify)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for, dify_app_events
from loopback_apps import serve
from test_dify_e2e import Invocation, run_concurrently
from tests.serverproc import serverless_plugin as start_serverless_plugin

ROOT = Path(__file__).resolve().parents[1]
APPS = {"app-agent": "agent", "app-chatflow": "advanced-chat", "app-workflow": "workflow",
        "app-completion": "completion", "app-chat": "chat"}
DENIED = "permission denied, you need to enable app access in plugin manifest"
USER = "user-e2e"


STORAGE: dict[str, str] = {}   # the daemon's plugin storage (hex values, as the SDK sends them)


def storage_replies(request: dict, request_id: str) -> list[dict]:
    """The daemon's answers to the SDK's storage calls (get / set / exist / del)."""
    opt, key = request["opt"], request["key"]
    if opt == "set":
        STORAGE[key] = request["value"]
        value: object = "ok"
    elif opt == "get":
        if key not in STORAGE:
            return [{"backwards_request_id": request_id, "event": "error", "message": "key not found", "data": None}]
        value = STORAGE[key]
    elif opt == "exist":
        value = key in STORAGE
    else:
        STORAGE.pop(key, None)
        value = "ok"
    return [{"backwards_request_id": request_id, "event": "response", "message": "", "data": {"data": value}},
            {"backwards_request_id": request_id, "event": "end", "message": "", "data": None}]


def daemon_replies(request: dict, request_id: str) -> list[dict]:
    """The `data` of each backwards_response the daemon sends for one app call."""
    if request["app_id"] not in APPS:
        return [{"backwards_request_id": request_id, "event": "error", "message": DENIED, "data": None}]
    query = request.get("query") or request["inputs"].get("query", "")
    events = dify_app_events(APPS[request["app_id"]], query, USER)
    return ([{"backwards_request_id": request_id, "event": "response", "message": "stream", "data": e}
             for e in events] + [{"backwards_request_id": request_id, "event": "end", "message": "", "data": None}])


@pytest.fixture(scope="module")
def daemon():
    """The daemon's serverless transaction endpoint on loopback; records each call."""
    calls: list[dict] = []

    async def transaction(request: web.Request) -> web.StreamResponse:
        session_id = request.headers["Dify-Plugin-Session-ID"]
        message = orjson.loads((await request.read()).strip())
        invoke = message["data"]["data"]
        calls.append({"session_id": session_id, "event": message["event"], "kind": message["data"]["type"],
                      "type": invoke["type"], "request_id": invoke["backwards_request_id"],
                      "request": invoke["request"]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"\n\n")   # the daemon's heartbeat
        answer = storage_replies if invoke["type"] == "storage" else daemon_replies
        for reply in answer(invoke["request"], invoke["backwards_request_id"]):
            line = {"session_id": session_id, "event": "backwards_response", "data": reply}
            await response.write(orjson.dumps(line) + b"\n\n")
            await asyncio.sleep(0.002)
        return response

    app = web.Application()
    app.router.add_post("/backwards-invocation/transaction", transaction)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}", calls


@pytest.fixture(scope="module")
def serverless_plugin(daemon, tmp_path_factory):
    env = dict(os.environ, DIFY_PLUGIN_DAEMON_URL=daemon[0])
    with start_serverless_plugin(tmp_path_factory.mktemp("reverse") / "plugin.log", env=env) as (base, _proc):
        yield base


def picked(app_id: str, **inputs) -> dict:
    return {"app_id": app_id, "inputs": inputs, "files": []}


def test_serverless_two_concurrent_calls_and_the_answer_engine(serverless_plugin, daemon):
    _, calls = daemon
    agent, flow, paused = run_concurrently([
        (serverless_plugin, "dify_app", {"app": picked("app-agent", lang="en"), "query": "agent 你好",
                                         "conversation_id": "conv-7"}),
        (serverless_plugin, "dify_app", {"app": picked("app-chatflow"), "query": "[message-end-first] [files] q"}),
        (serverless_plugin, "dify_app", {"app": picked("app-chatflow"), "query": "[pause] wait"}),
    ])
    # the New Agent's closing message is the answer, not shown a second time
    assert agent.text == agent.variables["answer"] == dify_answer_for("agent 你好", USER)
    assert flow.text == flow.variables["answer"] == dify_answer_for("[message-end-first] [files] q", USER)
    assert flow.variables["status"] == "completed" and flow.variables["files"][0]["id"] == "file-1"
    assert paused.variables["status"] == "paused" and paused.variables["form_token"].startswith("form-tok-")
    requests = {c["request"]["query"]: c for c in calls}
    call = requests["agent 你好"]
    assert call["event"] == "session" and call["kind"] == "invoke" and call["type"] == "app"
    assert call["request"] == {"app_id": "app-agent", "query": "agent 你好",
                               "inputs": {"lang": "en", "query": "agent 你好"},
                               "response_mode": "streaming", "conversation_id": "conv-7", "user": None}
    assert len({c["request_id"] for c in calls}) == len(calls) >= 3


def test_serverless_conversation_remembered_in_the_plugin_storage(serverless_plugin, daemon):
    _, calls = daemon
    params = {"app": picked("app-chatflow"), "query": "remember me", "remember_conversation": True,
              "show_progress": True}
    first = Invocation(serverless_plugin, "dify_app", params)
    assert not first.errors and first.variables["conversation_id"] == "conv-1"
    progress = "".join(p["message"]["variable_value"] for p in first.payloads if p["type"] == "variable"
                       and p["message"]["variable_name"] == "progress" and p["message"]["stream"])
    assert [orjson.loads(line)["event"] for line in progress.splitlines()][:2] == ["node_started", "node_finished"]
    assert first.text == first.variables["answer"] == dify_answer_for("remember me", USER)
    assert any(c["type"] == "storage" and c["request"]["opt"] == "set" for c in calls)
    Invocation(serverless_plugin, "dify_app", {**params, "query": "and again"})
    app_calls = [c["request"] for c in calls if c["type"] == "app" and c["request"].get("query") in
                 ("remember me", "and again")]
    assert [c["conversation_id"] for c in app_calls] == [None, "conv-1"]
    explicit = Invocation(serverless_plugin, "dify_app", {**params, "query": "mine", "conversation_id": "conv-9"})
    assert not explicit.errors
    assert [c["request"]["conversation_id"] for c in calls if c["type"] == "app"
            and c["request"].get("query") == "mine"] == ["conv-9"]


def test_serverless_api_key_tool_remembers_the_conversation_too(serverless_plugin, daemon):
    with ServerThread() as server:
        params = {"api_base": server.url("/v1"), "api_key": "app-test-chat", "query": "first",
                  "remember_conversation": True}
        first = Invocation(serverless_plugin, "dify_chatflow_sse", params)
        second = Invocation(serverless_plugin, "dify_chatflow_sse", {**params, "query": "second"})
    assert not first.errors and not second.errors
    assert second.variables["conversation_id"] == first.variables["conversation_id"] != ""
    summaries = [p["message"]["json_object"] for p in second.payloads if p["type"] == "json"]
    assert summaries[-1]["conversation_from"] == "memory"


def test_serverless_workflow_and_completion_calls(serverless_plugin, daemon):
    _, calls = daemon
    flow = Invocation(serverless_plugin, "dify_app", {"app": picked("app-workflow", query="总结"),
                                                     "inputs": '{"extra": 1}'})
    assert flow.text == flow.variables["answer"] == dify_answer_for("总结", USER)
    assert calls[-1]["request"] == {"app_id": "app-workflow", "inputs": {"query": "总结", "extra": 1},
                                    "response_mode": "streaming", "user": None}
    done = Invocation(serverless_plugin, "dify_app", {"app": picked("app-completion"), "app_type": "completion",
                                                     "query": "[stopped] write"})
    assert done.variables["status"] == "completed"
    assert done.variables["answer"] == dify_answer_for("[stopped] write", USER)


def test_serverless_error_reply_fails_with_one_line(serverless_plugin):
    call = Invocation(serverless_plugin, "dify_app", {"app": picked("app-unknown"), "query": "hi"})
    assert len(call.errors) == 1
    message = call.errors[0]["message"]
    assert "permission denied" in message and "manifest must enable app access" in message and "\n" not in message


def test_picker_value_is_required():
    from tools.app_invoke_core import plan_app_call

    with pytest.raises(ValueError, match="app: pick an app"):
        plan_app_call({"query": "x"})
    call = plan_app_call({"app": picked("a1", lang="en", query="from picker"), "inputs": '{"lang": "zh"}',
                          "query": "mine", "conversation_id": " c1 "})
    assert (call.method, call.inputs, call.conversation_id) == ("chat", {"lang": "zh", "query": "from picker"}, "c1")


# --------------------------------------------------------------------------- stdio


class StdioPlugin:
    """`python -m main` in local (stdio) mode; stdout is read on a thread, line by line."""

    def __init__(self) -> None:
        env = dict(os.environ, INSTALL_METHOD="local")
        self.proc = subprocess.Popen([sys.executable, "-m", "main"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.messages: list[dict] = []
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            raw = raw.strip()
            if raw.startswith(b"{"):
                with self.lock:
                    self.messages.append(json.loads(raw))
                    self.lock.notify_all()

    def send(self, line: dict) -> None:
        self.proc.stdin.write(json.dumps(line).encode() + b"\n")
        self.proc.stdin.flush()

    def invoke(self, params: dict) -> str:
        session_id = str(uuid.uuid4())
        self.send({"session_id": session_id, "event": "request", "data": {
            "type": "tool", "action": "invoke_tool", "user_id": USER, "provider": "sse_fanin", "tool": "dify_app",
            "credentials": {}, "tool_parameters": params}})
        return session_id

    def wait_for(self, predicate, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if found:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; last messages: {self.messages[-3:]}"
                self.lock.wait(left)

    def session(self, session_id: str) -> list[dict]:
        return [m["data"] for m in self.messages if m.get("event") == "session" and m.get("session_id") == session_id]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _invoke_of(session_id: str):
    return lambda m: (m.get("event") == "session" and m.get("session_id") == session_id
                      and m["data"].get("type") == "invoke")


def _ended(session_id: str):
    return lambda m: (m.get("event") == "session" and m.get("session_id") == session_id
                      and m["data"].get("type") in ("end", "error"))


def outputs_of(messages: list[dict]) -> tuple[str, dict, list[dict]]:
    stream = [m["data"] for m in messages if m["type"] == "stream"]
    text = "".join(s["message"]["text"] for s in stream if s["type"] == "text")
    variables = {s["message"]["variable_name"]: s["message"]["variable_value"] for s in stream
                 if s["type"] == "variable"}
    return text, variables, [m for m in messages if m["type"] == "error"]


def test_stdio_two_interleaved_calls_routed_by_request_id_and_an_error():
    plugin = StdioPlugin()
    try:
        first = plugin.invoke({"app": picked("app-agent"), "query": "one 一"})
        second = plugin.invoke({"app": picked("app-workflow"), "query": "[reasoning] two 二"})
        denied = plugin.invoke({"app": picked("app-unknown"), "query": "three"})
        invokes = {s: plugin.wait_for(_invoke_of(s))[0]["data"]["data"] for s in (first, second, denied)}
        time.sleep(0.2)   # the SDK registers its reader just after writing the invoke message
        replies = {s: daemon_replies(i["request"], i["backwards_request_id"]) for s, i in invokes.items()}
        for index in range(max(len(r) for r in replies.values())):   # interleaved, as the daemon may send them
            for session_id, reply in replies.items():
                if index < len(reply):
                    plugin.send({"session_id": session_id, "conversation_id": None, "message_id": None,
                                 "app_id": None, "endpoint_id": None, "context": {}, "event": "backwards_response",
                                 "data": reply[index]})
        for session_id in (first, second, denied):
            plugin.wait_for(_ended(session_id))
        text, v, errors = outputs_of(plugin.session(first))
        assert not errors and text == v["answer"] == dify_answer_for("one 一", USER)
        text, v, errors = outputs_of(plugin.session(second))
        assert not errors and text == v["answer"] == dify_answer_for("[reasoning] two 二", USER)
        assert v["reasoning"] == "First, read the question. Then answer." and v["workflow_run_id"]
        _, _, errors = outputs_of(plugin.session(denied))
        assert len(errors) == 1 and "permission denied" in json.dumps(errors[0])
    finally:
        plugin.close()
