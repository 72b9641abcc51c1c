"""End to end under the REAL plugin runtime: `python -m main` in the SDK's serverless mode
(gevent-patched, Flask on gevent's WSGI server), with real invocations POSTed to /invoke,
several at once, and the streamed session messages read back."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for
from tests.serverproc import serverless_plugin

ROOT = Path(__file__).resolve().parents[1]
WRONG_KEY = "app-definitely-wrong-31337"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "BLOCK_PRIVATE_NETWORKS"}
    with serverless_plugin(tmp_path_factory.mktemp("plugin") / "plugin.log", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def sse_server():
    with ServerThread() as server:
        yield server


class Invocation:
    """One POST /invoke, read as it streams: messages with their arrival times."""

    def __init__(self, base: str, tool: str, params: dict) -> None:
        self.raw = b""
        self.messages: list[dict] = []
        self.times: list[float] = []
        self.started = time.monotonic()
        body = {"event": "request", "session_id": str(uuid.uuid4()),
                "data": {"type": "tool", "action": "invoke_tool", "user_id": "user-e2e", "provider": "sse_fanin",
                         "tool": tool, "credentials": {}, "tool_parameters": params}}
        request = urllib.request.Request(base + "/invoke", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            buffer = b""
            while chunk := response.read1(65536):
                self.raw += chunk
                buffer += chunk
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    if block.strip():
                        self.messages.append(json.loads(block))
                        self.times.append(time.monotonic())

    @property
    def payloads(self) -> list[dict]:
        return [m["data"]["data"] for m in self.messages if m["data"]["type"] == "stream"]

    @property
    def text(self) -> str:
        return "".join(p["message"]["text"] for p in self.payloads if p["type"] == "text")

    @property
    def variables(self) -> dict:
        return {p["message"]["variable_name"]: p["message"]["variable_value"]
                for p in self.payloads if p["type"] == "variable"}

    @property
    def errors(self) -> list[dict]:
        return [m["data"]["data"] for m in self.messages if m["data"]["type"] == "error"]


def run_concurrently(calls: list[tuple]) -> list[Invocation]:
    results: list = [None] * len(calls)

    def call(index: int) -> None:
        try:
            results[index] = Invocation(*calls[index])
        except BaseException as exc:  # reported by the assertion below
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for result in results:
        assert isinstance(result, Invocation), result
    return results


def test_eight_concurrent_fan_ins_and_two_chatflows(plugin, sse_server):
    base, _ = plugin
    urls = [f"{sse_server.url('/stream?count=200')}&tag=e2e{k}-{i}" for k in range(8) for i in range(3)]
    calls = [(base, "sse_request", {"url": "\n".join(urls[3 * k : 3 * k + 3]), "max_events": 1000})
             for k in range(8)]
    queries = ["第一个问题 🚀", "second question ✅ 二"]
    calls += [(base, "dify_chatflow_sse", {"api_base": sse_server.url("/v1"), "api_key": "app-test",
                                           "query": q}) for q in queries]
    results = run_concurrently(calls)
    for result in results[:8]:
        v = result.variables
        assert not result.errors, result.errors
        assert v["status"] == "completed" and v["total_events"] == 600, v.get("error")
        assert result.text == v["answer"] and len(v["events"]) == 600
        assert result.payloads[-1]["type"] == "json" and result.payloads[-1]["message"]["json_object"]["status"] \
            == "completed"
    for query, result in zip(queries, results[8:]):
        v = result.variables
        expected = dify_answer_for(query, "user-e2e")
        assert result.text == v["answer"] == expected
        assert expected.encode("utf-8") in result.raw  # byte for byte on the wire, no escapes
        assert v["conversation_id"].startswith("conv-") and v["status"] == "completed"
    conversations = {r.variables["conversation_id"] for r in results[8:]}
    assert len(conversations) == 2


def test_text_streams_live_and_the_hub_stays_responsive(plugin, sse_server):
    base, _ = plugin
    slow = {}

    def run_slow() -> None:
        slow["call"] = Invocation(base, "sse_request", {"url": sse_server.url("/stream?count=20&rate=20"),
                                                        "output_mode": "extract"})

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(0.3)
    health = urllib.request.urlopen(base + "/health", timeout=5).read()  # served while the tool runs
    thread.join(30)
    call = slow["call"]
    assert health == b"OK"
    text_times = [t for t, m in zip(call.times, call.messages)
                  if m["data"]["type"] == "stream" and m["data"]["data"]["type"] == "text"]
    assert len(text_times) >= 5  # many separate text messages, not one at the end
    assert text_times[0] < call.times[-1] - 0.3  # the first text came well before the end
    assert call.variables["total_events"] == 20


def test_wrong_key_fails_clearly_and_never_shows_the_key(plugin, sse_server):
    base, _ = plugin
    call = Invocation(base, "dify_chatflow_sse", {"api_base": sse_server.url("/v1"), "api_key": WRONG_KEY,
                                                  "query": "hello"})
    assert len(call.errors) == 1
    assert "refused the API key" in call.errors[0]["message"] and "401" in call.errors[0]["message"]
    assert WRONG_KEY.encode() not in call.raw


def test_total_failure_and_metadata_refusal_fail_the_node(plugin, sse_server):
    base, _ = plugin
    call = Invocation(base, "sse_request", {"url": "http://169.254.169.254/latest/meta-data/"})
    assert len(call.errors) == 1 and "cloud-metadata" in call.errors[0]["message"]
    call = Invocation(base, "sse_request", {"url": sse_server.url("/stream?status=404"), "auth_type": "bearer",
                                            "auth_token": "tok-e2e-secret"})
    assert len(call.errors) == 1 and "404" in call.errors[0]["message"]
    assert b"tok-e2e-secret" not in call.raw


def test_app_types_pause_and_huge_outputs_under_the_real_runtime(plugin, sse_server):
    """New Agent, a paused chatflow and a 4.5 MB answer through `python -m main`: no text
    twice, and every message line the plugin writes stays under Dify's 5 MiB limit."""
    base, _ = plugin
    v1 = sse_server.url("/v1")
    agent, paused, big = run_concurrently([
        (base, "dify_chatflow_sse", {"api_base": v1, "api_key": "app-test-agent", "query": "agent ✅"}),
        (base, "dify_chatflow_sse", {"api_base": v1, "api_key": "app-test", "query": "[pause] wait"}),
        (base, "dify_chatflow_sse", {"api_base": v1, "api_key": "app-test", "query": "[big] x"}),
    ])
    assert agent.text == agent.variables["answer"] == dify_answer_for("agent ✅", "user-e2e")
    assert paused.variables["status"] == "paused" and paused.variables["form_token"]
    assert "waiting for a person" in paused.variables["note"]
    assert big.variables["status"] == "completed" and "[truncated by sse_fanin" in big.variables["answer"]
    lines = big.raw.split(b"\n\n")
    assert max(len(line) for line in lines) < 5 * 1024 * 1024 and len(big.raw) > 12_000_000


def test_resume_and_stop_under_the_real_runtime(plugin, sse_server):
    """The resume GET and the stop POST run from gevent greenlets through the bridge too."""
    base, _ = plugin
    v1 = sse_server.url("/v1")
    dropped, hung = run_concurrently([
        (base, "dify_chatflow_sse", {"api_base": v1, "api_key": "app-test-workflow", "app_type": "workflow",
                                     "query": "[drop] [drop-continue] go on"}),
        (base, "dify_chatflow_sse", {"api_base": v1, "api_key": "app-test", "query": "[hang] stop me",
                                     "user": "grace", "max_duration": 1}),
    ])
    assert dropped.text == dropped.variables["answer"] == dify_answer_for("[drop] [drop-continue] go on", "user-e2e")
    assert dropped.variables["status"] == "completed"
    assert hung.variables["status"] == "partial" and "max_duration" in hung.variables["error"]
    stops = json.loads(urllib.request.urlopen(sse_server.url("/v1/test/stops"), timeout=10).read())
    assert {"kind": "chat", "task_id": hung.variables["task_id"], "user": "grace", "auth": True} in stops
