"""Issue 17: human input end to end, conversations remembered per user, progress on its own
variable; the app tool's logic against the built-in Dify-like server in-process, then the
same through the real plugin runtime (`python -m main`, serverless)."""

from __future__ import annotations

import os

import orjson
import pytest
from aiohttp import web

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for, dify_resumed_answer
from loopback_apps import serve
from test_dify_e2e import Invocation
from tests.serverproc import serverless_plugin
from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.common import ToolFailure
from tools.conversations import DictStore

USER = "hi-user"


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def call(server, store=None, key="app-test", app_type="chatflow", **params):
    plan = plan_chatflow({"api_base": server.url("/v1"), "api_key": key, "app_type": app_type, **params}, USER,
                         store)
    outputs = list(run_chatflow(plan, store=store))
    text = "".join(o[1] for o in outputs if o[0] == "text")
    progress = "".join(o[1] for o in outputs if o[0] == "progress")
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    assert outputs[-1][0] == "json"
    return text, variables, outputs[-1][1], progress, plan


@pytest.mark.parametrize("key,app_type", [("app-test", "chatflow"), ("app-test-workflow", "workflow")])
def test_pause_returns_the_form_then_a_second_call_answers_it_and_streams_the_rest(server, key, app_type):
    query = "[pause] draft"
    text, v, summary, _, _ = call(server, key=key, app_type=app_type, query=query)
    assert v["status"] == "paused" and text == v["answer"] == dify_answer_for(query, USER)
    form = v["form"]
    assert form["form_token"] == v["form_token"] and [a["id"] for a in form["actions"]] == ["approve", "reject"]
    assert form["inputs"][0]["output_variable_name"] == "comment" and form["expiration_time"].startswith("2027")
    assert "call again with form_token" in v["note"]

    text, after, summary, _, _ = call(server, key=key, app_type=app_type, workflow_run_id=v["workflow_run_id"],
                                      form_token=v["form_token"], form_inputs='{"comment": "好的 ok"}',
                                      form_action="approve")
    expected = dify_resumed_answer("approve", "好的 ok")
    assert text == after["answer"] == expected and after["status"] == "completed" and after["error"] == ""
    assert summary["form_submitted"] is True and summary["human_input_filled"]["action_id"] == "approve"
    assert after["workflow_run_id"] == v["workflow_run_id"]

    with pytest.raises(ToolFailure, match=r"already submitted or has expired \(HTTP 412\)") as info:
        call(server, key=key, app_type=app_type, workflow_run_id=v["workflow_run_id"], form_token=v["form_token"],
             form_inputs="{}", form_action="approve")
    assert "\n" not in str(info.value)


def test_an_expired_form_gets_412_and_the_run_goes_on_along_its_timeout(server):
    _, v, _, _, _ = call(server, query="[pause] [pause-expired] late")
    assert v["status"] == "paused" and v["form_token"] and v["form"] == {}   # the form cannot be read any more
    with pytest.raises(ToolFailure, match="HTTP 412"):
        call(server, workflow_run_id=v["workflow_run_id"], form_token=v["form_token"], form_action="approve")
    text, after, summary, _, _ = call(server, workflow_run_id=v["workflow_run_id"])
    assert text == after["answer"] == dify_resumed_answer("timeout", "") and after["status"] == "completed"
    assert summary["human_input_timeout"]["node_title"] == "Approve the draft" and "in time" in after["note"]


def test_email_delivered_and_empty_forms_pause_without_failing(server):
    _, v, _, _, _ = call(server, query="[pause] [pause-email] mail")
    assert v["status"] == "paused" and v["form_token"] == "" and v["form"] == {}
    assert "e-mail" in v["note"] and "workflow_run_id" in v["note"]
    _, v, _, _, _ = call(server, query="[pause] [pause-empty] bug")
    assert v["status"] == "paused" and v["form_token"] == "" and "empty" in v["note"] and v["error"] == ""


def test_form_answers_are_checked_before_anything_is_sent(server):
    _, v, _, _, _ = call(server, query="[pause] two buttons")
    with pytest.raises(ValueError, match="form_action: choose one of this form's actions: approve, reject"):
        call(server, workflow_run_id=v["workflow_run_id"], form_token=v["form_token"])
    with pytest.raises(ValueError, match="form_action: this form's actions are approve, reject"):
        call(server, workflow_run_id=v["workflow_run_id"], form_token=v["form_token"], form_action="ship")
    with pytest.raises(ValueError, match="workflow_run_id: give the paused run's workflow_run_id"):
        plan_chatflow({"api_base": server.url("/v1"), "api_key": "k", "form_token": "t"}, USER)
    with pytest.raises(ValueError, match="form_inputs: must be a JSON object"):
        plan_chatflow({"api_base": server.url("/v1"), "api_key": "k", "form_token": "t", "workflow_run_id": "r",
                       "form_inputs": "[1]"}, USER)
    with pytest.raises(ToolFailure, match="no such human input form"):
        call(server, workflow_run_id=v["workflow_run_id"], form_token="form-tok-unknown", form_action="approve")
    # still open: the right answer goes through
    text, after, _, _, _ = call(server, workflow_run_id=v["workflow_run_id"], form_token=v["form_token"],
                                form_action="reject", form_inputs={"comment": "no"})
    assert text == dify_resumed_answer("reject", "no")


def test_conversations_are_remembered_per_user_and_an_explicit_id_wins(server):
    store = DictStore()
    _, first, summary, _, _ = call(server, store, query="hello", remember_conversation=True)
    assert summary["conversation_from"] == "new" and summary["conversation_remembered"] is True
    _, second, summary, _, plan = call(server, store, query="again", remember_conversation="true")
    assert plan.request.json["conversation_id"] == first["conversation_id"] == second["conversation_id"]
    assert summary["conversation_from"] == "memory"
    _, third, summary, _, plan = call(server, store, query="there", remember_conversation=True,
                                      conversation_id="conv-explicit")
    assert third["conversation_id"] == "conv-explicit" and summary["conversation_from"] == "input"
    # another user has a conversation of their own; without the option nothing is read or written
    other = plan_chatflow({"api_base": server.url("/v1"), "api_key": "app-test", "query": "q",
                           "remember_conversation": True}, "someone-else", store)
    assert "conversation_id" not in other.request.json
    _, _, summary, _, plan = call(server, store, query="plain")
    assert "conversation_id" not in plan.request.json and "conversation_from" not in summary


def test_a_remembered_conversation_that_dify_no_longer_has_starts_a_new_one(server):
    store = DictStore()
    _, _, _, _, plan = call(server, store, query="x", remember_conversation=True)
    store.set(plan.memory_key, "gone-conversation")   # the built-in server knows only conv-... ids
    _, v, summary, _, _ = call(server, store, query="y", remember_conversation=True)
    assert v["status"] == "completed" and v["conversation_id"].startswith("conv-")
    assert summary["conversation_from"].startswith("new (the remembered one") and store.get(plan.memory_key) == \
        v["conversation_id"]


def test_show_progress_streams_steps_apart_from_the_answer(server):
    query = "[partial] steps"
    text, v, _, progress, _ = call(server, query=query, show_progress=True)
    steps = [orjson.loads(line) for line in progress.splitlines()]
    assert [s["event"] for s in steps][:3] == ["node_started", "node_finished", "node_started"]
    assert {"event": "node_finished", "node_id": "http", "node_type": "http", "title": "Fetch", "index": 1,
            "status": "exception", "elapsed_time": 0.01, "error": "timeout"} in steps
    assert text == v["answer"] == dify_answer_for(query, USER) and "node_" not in text
    assert call(server, query=query)[3] == ""


def test_a_form_refusal_that_quotes_the_key_never_shows_it():
    secret = "app-hostile-echo-0123456789"

    async def echo_key(request: web.Request) -> web.Response:
        said = request.headers.get("Authorization", "")
        return web.json_response({"code": "invalid_param", "message": f"you sent {said}", "status": 400},
                                 status=400)

    app = web.Application()
    app.router.add_route("*", "/v1/form/human_input/{token}", echo_key)
    with serve(app) as port:
        with pytest.raises(ToolFailure) as info:
            list(run_chatflow(plan_chatflow({"api_base": f"http://127.0.0.1:{port}/v1", "api_key": secret,
                                             "workflow_run_id": "run-1", "form_token": "tok-1",
                                             "form_action": "approve"}, USER)))
    assert "HTTP 400 invalid_param" in str(info.value) and secret not in str(info.value)


# ---------------------------------------------------------------- the real plugin runtime


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "BLOCK_PRIVATE_NETWORKS"}
    with serverless_plugin(tmp_path_factory.mktemp("plugin-hi") / "plugin.log", env=env) as running:
        yield running[0]


def streamed(invocation: Invocation, name: str) -> str:
    return "".join(p["message"]["variable_value"] for p in invocation.payloads
                   if p["type"] == "variable" and p["message"]["variable_name"] == name and p["message"]["stream"])


def test_human_input_and_progress_under_the_plugin_runtime(plugin, server):
    base = {"api_base": server.url("/v1"), "api_key": "app-test"}
    paused = Invocation(plugin, "dify_chatflow_sse", {**base, "query": "[pause] via plugin", "show_progress": True})
    v = paused.variables
    assert not paused.errors and v["status"] == "paused" and v["form"]["form_token"] == v["form_token"]
    assert '"event":"node_started"' in streamed(paused, "progress") and "node_started" not in paused.text
    done = Invocation(plugin, "dify_chatflow_sse", {**base, "workflow_run_id": v["workflow_run_id"],
                                                    "form_token": v["form_token"], "form_action": "approve",
                                                    "form_inputs": '{"comment": "yes"}'})
    assert not done.errors and done.text == done.variables["answer"] == dify_resumed_answer("approve", "yes")
    again = Invocation(plugin, "dify_chatflow_sse", {**base, "workflow_run_id": v["workflow_run_id"],
                                                     "form_token": v["form_token"], "form_action": "approve"})
    assert [e["message"] for e in again.errors if "HTTP 412" in e.get("message", "")], again.errors


def test_the_two_429s_under_the_plugin_runtime(plugin, server):
    base = {"api_base": server.url("/v1"), "api_key": "app-test"}
    quota = Invocation(plugin, "dify_chatflow_sse", {**base, "query": "[quota] x"})
    busy = Invocation(plugin, "dify_chatflow_sse", {**base, "query": "[busy] x"})
    assert "(rate_limit_error); not retried" in quota.errors[0]["message"]
    assert "(too_many_requests)" in busy.errors[0]["message"] and "retried 2 times" in busy.errors[0]["message"]
