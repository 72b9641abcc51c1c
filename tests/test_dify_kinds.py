"""The app tool decides on a failure's typed kind, HTTP status and Dify's error code, never on
the engine's wording: every scenario is run twice against the built-in Dify-like server, once
as is and once with every engine error text (each SourceReport, and so each SourceError)
replaced by a random string, and the tool must behave the same: resume or not, stop or
not, the same outcome and the same explained error (the engine's own line, which the tool
only quotes, is masked before comparing)."""

from __future__ import annotations

import urllib.request
import uuid

import orjson
import pytest

from fanin.events import SourceReport
from fanin.server.app import ServerThread
from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.common import ToolFailure

ENGINE = "<engine line>"


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


@pytest.fixture
def engine_lines(monkeypatch):
    """Record (and, when asked, reword) every error text the engine puts on a report."""
    seen: list[str] = []
    state = {"reword": False}
    original = SourceReport.fail

    def fail(self, kind, error, http_status=None, retry_after=None):
        if state["reword"]:
            error = f"zq{uuid.uuid4().hex} {uuid.uuid4().hex[:7]}"
        seen.append(error)
        original(self, kind, error, http_status, retry_after)

    monkeypatch.setattr(SourceReport, "fail", fail)
    return seen, state


def stops_for(server, user: str) -> int:
    stops = orjson.loads(urllib.request.urlopen(server.url("/v1/test/stops"), timeout=10).read())
    return sum(1 for s in stops if s["user"] == user)


SCENARIOS = {
    "chatflow drop is resumed": dict(query="[drop] again"),
    "workflow drop is resumed": dict(query="[drop] again", key="app-test-workflow", app_type="workflow"),
    "drop without a resume endpoint fails": dict(query="[drop] [no-resume] x"),
    "idle timeout fails and stops the run": dict(query="[hang] idle", key="app-test-workflow", app_type="workflow",
                                                 idle_timeout=1),
    "max_duration stops the run": dict(query="[hang] long", max_duration=1),
    "wrong key": dict(query="hi", key="app-wrong"),
    "wrong app type": dict(query="hi", key="app-test-workflow"),
    "wrong completion type": dict(query="hi", key="app-test-chat", app_type="completion"),
    "not a Dify API": dict(query="hi", base="/nothing-here"),
    "unknown conversation": dict(query="hi", conversation_id="nope-1"),
    "busy app": dict(query="[busy] hi"),
    "provider quota": dict(query="[quota] hi"),
}


def behaviour(server, seen: list[str], case: dict) -> tuple:
    user = f"kinds-{uuid.uuid4().hex[:8]}"
    params = {"api_base": server.url(case.get("base", "/v1")), "api_key": case.get("key", "app-test"),
              "app_type": case.get("app_type", "chatflow"), "query": case["query"]}
    params.update({k: case[k] for k in ("idle_timeout", "max_duration", "conversation_id") if k in case})
    seen.clear()
    try:
        outputs = list(run_chatflow(plan_chatflow(params, user)))
    except ToolFailure as exc:
        message = str(exc)
        for line in sorted(seen, key=len, reverse=True):
            message = message.replace(line, ENGINE)
        return ("failed", message, stops_for(server, user))
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    summary = outputs[-1][1]
    error = variables["error"]
    for line in seen:
        error = error.replace(line, ENGINE)
    return ("ended", variables["status"], variables["answer"].replace(user, "<user>"), summary.get("resumed"),
            summary.get("stop_requested"), error, stops_for(server, user))


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_rewording_every_engine_message_changes_nothing_the_tool_does(server, engine_lines, name):
    seen, state = engine_lines
    plain = behaviour(server, seen, SCENARIOS[name])
    state["reword"] = True
    reworded = behaviour(server, seen, SCENARIOS[name])
    assert plain == reworded
    if plain[0] == "failed" and ENGINE not in plain[1]:
        assert seen, "the scenario should have met an engine failure"


def test_the_scenarios_do_what_their_names_say(server, engine_lines):
    seen, _ = engine_lines
    outcome = {name: behaviour(server, seen, case) for name, case in SCENARIOS.items()}
    assert outcome["chatflow drop is resumed"][:2] == ("ended", "completed")
    assert outcome["chatflow drop is resumed"][3] == 1 and outcome["workflow drop is resumed"][3] == 1
    assert outcome["drop without a resume endpoint fails"] == ("failed", ENGINE, 0)
    assert outcome["idle timeout fails and stops the run"] == ("failed", ENGINE, 1)
    assert outcome["max_duration stops the run"][4] is True and outcome["max_duration stops the run"][-1] == 1
    assert outcome["wrong key"][1].startswith("the Dify app refused the API key (HTTP 401 unauthorized")
    assert outcome["wrong app type"][1].startswith("app_type: this Dify app is not a chat")
    assert outcome["wrong completion type"][1].startswith("app_type: this Dify app is not a text generator")
    assert outcome["not a Dify API"][1].startswith("no Dify app API at this address")
    assert outcome["unknown conversation"][1].startswith("the Dify app found no such conversation")
    assert "(too_many_requests)" in outcome["busy app"][1] and "retried 2 times" in outcome["busy app"][1]
    assert "(rate_limit_error); not retried" in outcome["provider quota"][1]
