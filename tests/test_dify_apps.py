"""The app tool's logic (tools/chatflow_core.py) against the built-in Dify-like server, one
case per app type and per documented ending, in-process (no Dify import)."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for
from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.message_size import LINE_LIMIT
from tools.common import ToolFailure


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def call(server, query, key="app-test", app_type="chatflow", user="user-9", **extra):
    plan = plan_chatflow({"api_base": server.url("/v1"), "api_key": key, "app_type": app_type, "query": query,
                          **extra}, user)
    outputs = list(run_chatflow(plan))
    text = "".join(o[1] for o in outputs if o[0] == "text")
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    summary = outputs[-1][1]
    assert outputs[-1][0] == "json"
    return text, variables, summary, plan


def stops(server) -> list[dict]:
    return orjson.loads(urllib.request.urlopen(server.url("/v1/test/stops"), timeout=10).read())


@pytest.mark.parametrize("key,app_type", [
    ("app-test-chat", "chatflow"), ("app-test-agent-chat", "chatflow"), ("app-test-agent", "chatflow"),
    ("app-test-advanced-chat", "chatflow"), ("app-test-workflow", "workflow"),
    ("app-test-completion", "completion"),
])
def test_every_app_type_streams_its_answer_exactly_once(server, key, app_type):
    text, v, summary, _ = call(server, "问 ✅", key=key, app_type=app_type)
    expected = dify_answer_for("问 ✅", "user-9")
    assert text == v["answer"] == expected and v["status"] == "completed" and v["error"] == ""
    assert summary["app_type"] == app_type and summary["answer"] == expected
    assert v["task_id"] and (v["workflow_run_id"] != "") == (key in ("app-test-advanced-chat", "app-test-workflow"))


def test_completion_query_goes_into_inputs(server):
    _, v, _, plan = call(server, "translate me", key="app-test-completion", app_type="completion")
    assert plan.request.url.endswith("/completion-messages") and plan.request.json["inputs"]["query"] == "translate me"
    assert "query" not in plan.request.json and v["conversation_id"] == ""


@pytest.mark.parametrize("key,app_type,advice", [
    ("app-test-workflow", "chatflow", "choose app_type workflow or completion"),
    ("app-test-chat", "workflow", "not a workflow app; choose app_type chatflow"),
    ("app-test-advanced-chat", "completion", "choose app_type chatflow or workflow"),
])
def test_wrong_app_type_names_the_one_to_choose(server, key, app_type, advice):
    with pytest.raises(ToolFailure) as info:
        call(server, "x", key=key, app_type=app_type)
    assert advice in str(info.value) and "\n" not in str(info.value)


def test_both_terminal_orders_give_the_same_outputs(server):
    seen = []
    for marker in ("[workflow-finished-first]", "[message-end-first]"):
        query = f"{marker} same"
        text, v, summary, _ = call(server, query)
        expected = dify_answer_for(query, "user-9")
        seen.append((text == v["answer"] == expected == v["outputs"]["answer"], v["status"], v["error"],
                     v["usage"]["completion_tokens"] == len(expected), bool(v["message_id"]),
                     bool(v["workflow_run_id"]), sorted(summary)))
    assert seen[0] == seen[1] and seen[0][:3] == (True, "completed", "")


def test_outputs_answer_differing_by_newlines_is_not_appended(server):
    text, v, _, _ = call(server, "[final] x")
    assert text == v["answer"] == dify_answer_for("[final] x", "user-9")
    assert v["outputs"]["answer"] != v["answer"]


def test_human_input_pause_returns_the_form_and_the_run(server):
    text, v, summary, _ = call(server, "[pause] approve")
    assert v["status"] == "paused" and text == v["answer"] == dify_answer_for("[pause] approve", "user-9")
    assert v["workflow_run_id"] and v["form_token"].startswith("form-tok-") and v["expiration_time"].startswith("2027")
    assert "waiting for a person" in v["note"] and summary["human_input"]["node_title"] == "Approve the draft"


def test_stopped_and_partial_succeeded(server):
    _, v, _, _ = call(server, "[stopped] x")
    assert v["status"] == "stopped" and v["answer"] and "stopped" in v["note"]
    _, v, _, _ = call(server, "[partial] x", key="app-test-workflow", app_type="workflow")
    assert v["status"] == "partial-succeeded" and "1 node failed" in v["note"]


def test_files_citations_reasoning(server):
    _, v, _, _ = call(server, "[files] [cite] [reasoning] x", key="app-test-advanced-chat")
    assert v["answer"] == dify_answer_for("[files] [cite] [reasoning] x", "user-9")
    assert [f.get("id") or f.get("related_id") for f in v["files"]] == ["file-1"]
    assert v["citations"][0]["document_name"] == "handbook.md"
    assert v["reasoning"] == "First, read the question. Then answer." and "First" not in v["answer"]
    _, v, _, _ = call(server, "[files] x", key="app-test-workflow", app_type="workflow")
    assert v["files"][0]["filename"] == "chart.png"


@pytest.mark.parametrize("marker", ["[drop]", "[drop] [drop-continue]", "[drop] [drop-finished]"])
@pytest.mark.parametrize("key,app_type", [("app-test", "chatflow"), ("app-test-workflow", "workflow")])
def test_a_dropped_run_is_resumed_without_showing_text_twice(server, marker, key, app_type):
    query = f"{marker} resume me"
    text, v, summary, _ = call(server, query, key=key, app_type=app_type)
    assert text == v["answer"] == dify_answer_for(query, "user-9")
    assert v["status"] == "completed" and summary["resumed"] == 1


def test_no_resume_endpoint_keeps_todays_failure(server):
    with pytest.raises(ToolFailure, match="connection cut mid-stream"):
        call(server, "[drop] [no-resume] x")


def test_max_duration_stops_the_remote_run_with_the_same_user(server):
    started = time.monotonic()
    text, v, summary, plan = call(server, "[hang] long", user="carol", max_duration=1)
    assert time.monotonic() - started < 30
    assert v["status"] == "partial" and "max_duration" in v["error"] and text == v["answer"] != ""
    assert summary["stop_requested"] is True and summary["stop_status"] == 200
    assert {"kind": "chat", "task_id": v["task_id"], "user": "carol", "auth": True} in stops(server)


def test_idle_timeout_stops_the_workflow_run(server):
    plan = plan_chatflow({"api_base": server.url("/v1"), "api_key": "app-test-workflow", "app_type": "workflow",
                          "query": "[hang] idle", "idle_timeout": 1}, "dave")
    with pytest.raises(ToolFailure, match="no data for 1s"):
        list(run_chatflow(plan))
    assert any(s["kind"] == "workflow" and s["user"] == "dave" for s in stops(server))


def test_closing_the_tool_early_stops_the_completion_run(server):
    plan = plan_chatflow({"api_base": server.url("/v1"), "api_key": "app-test-completion",
                          "app_type": "completion", "query": "[hang] bye"}, "erin")
    outputs = run_chatflow(plan)
    assert next(outputs)[0] == "text"
    outputs.close()   # what the runtime does when the user stops the tool
    assert any(s["kind"] == "completion" and s["user"] == "erin" for s in stops(server))


def test_a_finished_run_sends_no_stop(server):
    _, v, summary, _ = call(server, "plain")
    assert "stop_requested" not in summary and all(s["task_id"] != v["task_id"] for s in stops(server))


def test_huge_answer_and_outputs_stay_under_the_line_limit(server):
    text, v, summary, _ = call(server, "[big] x")
    assert len(text) > 4_000_000 and v["status"] == "completed"
    assert "[truncated by sse_fanin" in v["answer"] and len(orjson.dumps(v["answer"])) < LINE_LIMIT - 65536
    assert len(orjson.dumps(v["outputs"])) < LINE_LIMIT - 65536
    assert summary["outputs"] == "(large: see the outputs variable)" and len(orjson.dumps(summary)) < 100_000
