"""The two tools' logic (tools/sse_core.py, tools/chatflow_core.py) against the built-in
server, in-process (no Dify import; the Dify adapters are tested in subprocesses)."""

from __future__ import annotations

import base64

import orjson
import pytest
from aiohttp import web

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for
from loopback_apps import serve
from tools import sse_core
from tools.chatflow_core import plan_chatflow, run_chatflow
from tools.common import ToolFailure
from tools.sse_core import plan_sse_request, run_sse_request

SECRET = "sk-very-secret-9f8e7d"


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def run(params):
    outputs = list(run_sse_request(plan_sse_request(params)))
    text = "".join(o[1] for o in outputs if o[0] == "text")
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    summary = [o[1] for o in outputs if o[0] == "json"]
    kinds = [o[0] for o in outputs]
    # one channel: every text comes before every variable, then exactly one json, last
    assert kinds == sorted(kinds, key=["text", "variable", "json"].index) and kinds.count("json") == 1
    return text, variables, summary[0]


def raw_url(server, payload: bytes) -> str:
    return server.url("/raw?b64=" + base64.urlsafe_b64encode(payload).decode() + "&chunk=7")


def openai_stream(words: list[str]) -> bytes:
    out = b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
    for word in words:
        out += b"data: " + orjson.dumps({"choices": [{"delta": {"content": word}}]}) + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_three_streams_fan_in_completely(server):
    urls = "\n".join(server.url(f"/stream?count=200&tag=core{i}") for i in range(3))
    text, v, summary = run({"url": urls, "max_events": 1000})
    assert v["status"] == "completed" and v["total_events"] == 600 and v["error"] == ""
    assert len(v["events"]) == 600 and [s["events"] for s in v["sources"]] == [200, 200, 200]
    assert text == v["answer"] and text.count("\n") == 600
    assert summary["type"] == "summary" and summary["total_events"] == 600


def test_extract_streams_only_the_text_and_stop_on_ends_it(server):
    words = ["你好", "，", "世界", " 🎉", " done"]
    url = raw_url(server, openai_stream(words))
    text, v, summary = run({"url": url, "method": "GET", "extract": "choices.0.delta.content",
                            "stop_on": "[DONE]", "output_mode": "extract"})
    assert text == v["answer"] == "你好，世界 🎉 done"
    assert v["status"] == "completed" and v["total_events"] == 6
    assert summary.get("stopped_by") == "stop_on"


def test_ndjson_mode_streams_event_lines(server):
    text, v, _ = run({"url": server.url("/stream?count=3"), "output_mode": "ndjson"})
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert [line["event_number"] for line in lines] == [1, 2, 3]
    assert all(line["type"] == "event" for line in lines)


@pytest.fixture(scope="module")
def echo_url():
    """One event whose data is the request as received (method, query, headers, body)."""
    async def echo(request: web.Request) -> web.StreamResponse:
        report = {"method": request.method, "query": dict(request.query),
                  "headers": {str(k): v for k, v in request.headers.items()},
                  "body": (await request.read()).decode()}
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + orjson.dumps(report) + b"\n\n")
        return response

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}/echo"


def test_post_json_body_headers_query_and_auth_are_sent(echo_url):
    text, v, _ = run({"url": echo_url, "method": "POST", "body": '{"q": "中文 ✅"}',
                      "headers": "X-Trace: abc", "query_params": "a=1\nb: 二", "auth_type": "bearer",
                      "auth_token": SECRET, "output_mode": "extract"})
    echo = orjson.loads(v["answer"])
    assert echo["method"] == "POST" and orjson.loads(echo["body"]) == {"q": "中文 ✅"}
    assert echo["headers"]["Content-Type"] == "application/json"
    assert echo["query"] == {"a": "1", "b": "二"}
    assert echo["headers"]["X-Trace"] == "abc"
    assert echo["headers"]["Authorization"] == f"Bearer {SECRET}"  # sent to the server...
    assert SECRET not in orjson.dumps(v["sources"]).decode()  # ...but never shown back


def test_raw_text_body_is_sent_as_is(echo_url):
    _, v, _ = run({"url": echo_url, "method": "POST", "body": "plain 文本", "output_mode": "extract"})
    echo = orjson.loads(v["answer"])
    assert echo["body"] == "plain 文本" and echo["headers"]["Content-Type"].startswith("text/plain")


def test_partial_failure_returns_normally_with_errors(server):
    urls = f"{server.url('/stream?count=5')}\n{server.url('/stream?status=404')}"
    text, v, summary = run({"url": urls, "retry_attempts": 0})
    assert v["status"] == "partial" and v["total_events"] == 5
    assert "404" in v["error"] and summary["error"] == v["error"]


def test_total_failure_raises_one_clear_line_without_secrets(server):
    plan = plan_sse_request({"url": server.url(f"/stream?status=401&token={SECRET}"), "auth_type": "api_key",
                             "auth_header": "X-Api-Key", "auth_token": SECRET, "retry_attempts": 0})
    with pytest.raises(ToolFailure) as info:
        list(run_sse_request(plan))
    message = str(info.value)
    assert "401" in message and "\n" not in message and SECRET not in message


def test_max_events_limits_the_run(server):
    _, v, summary = run({"url": server.url("/stream?count=0&rate=500"), "max_events": 7})
    assert v["total_events"] == 7 and v["status"] == "completed" and summary["stopped_by"] == "max_events"


def test_events_variable_is_capped_and_says_so(server, monkeypatch):
    monkeypatch.setattr(sse_core, "MESSAGE_BUDGET", 20_000)
    _, v, summary = run({"url": server.url("/stream?count=300&size=200"), "max_events": 300})
    assert v["total_events"] == 300 and 0 < len(v["events"]) < 300
    assert summary["events_truncated"] is True and str(len(v["events"])) in summary["note"]


def test_bad_parameters_are_one_line_value_errors():
    with pytest.raises(ValueError, match="auth_token: auth_type bearer needs a token"):
        plan_sse_request({"url": "http://x", "auth_type": "bearer"})
    with pytest.raises(ValueError, match="output_mode"):
        plan_sse_request({"url": "http://x", "output_mode": "xml"})


# ----------------------------------------------------------------- dify_chatflow_sse


def chat(params, user="user-7"):
    outputs = list(run_chatflow(plan_chatflow(params, user)))
    text = "".join(o[1] for o in outputs if o[0] == "text")
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    return text, variables


def test_chatflow_streams_exactly_the_answer(server):
    text, v = chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "天气？☀️"})
    expected = dify_answer_for("天气？☀️", "user-7")
    assert text == v["answer"] == expected
    assert v["conversation_id"].startswith("conv-") and v["message_id"] and v["task_id"]
    assert v["status"] == "completed" and v["usage"]["total_tokens"] > 0 and v["outputs"]["answer"] == expected


def test_chatflow_continues_a_conversation_and_uses_the_given_user(server):
    _, first = chat({"api_base": server.url("/v1/"), "api_key": "app-test", "query": "one"})
    _, second = chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "two", "user": "alice",
                      "conversation_id": first["conversation_id"]})
    assert second["conversation_id"] == first["conversation_id"]
    assert second["answer"] == dify_answer_for("two", "alice")


def test_chatflow_message_replace_wins_and_outputs_answer_is_not_appended(server):
    text, v = chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "[replace]"})
    assert v["answer"] == dify_answer_for("[replace]", "user-7") and text.endswith(v["answer"])
    text, v = chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "[final]"})
    assert text == v["answer"] == dify_answer_for("[final]", "user-7") != v["outputs"]["answer"]


def test_chatflow_error_event_fails_clearly(server):
    with pytest.raises(ToolFailure, match=r"reported an error \(completion_request_error\)"):
        chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "[error]"})


def test_chatflow_wrong_key_fails_without_showing_it(server):
    key = "app-wrong-key-5150"
    with pytest.raises(ToolFailure) as info:
        chat({"api_base": server.url("/v1"), "api_key": key, "query": "hi"})
    assert "refused the API key" in str(info.value) and key not in str(info.value)


def test_chatflow_unknown_conversation_and_bad_base(server):
    with pytest.raises(ToolFailure, match="rejected the request|HTTP 404"):
        chat({"api_base": server.url("/v1"), "api_key": "app-test", "query": "x", "conversation_id": "nope"})
    with pytest.raises(ToolFailure, match="api_base should end in /v1"):
        chat({"api_base": server.url("/nothing"), "api_key": "app-test", "query": "x"})


def test_workflow_app_streams_text_chunks_and_returns_outputs(server):
    text, v = chat({"api_base": server.url("/v1"), "api_key": "app-test", "app_type": "workflow",
                    "inputs": '{"query": "总结 📄"}'})
    expected = dify_answer_for("总结 📄", "user-7")
    assert text == v["answer"] == expected and v["outputs"] == {"answer": expected, "text": expected}
    assert v["status"] == "completed"
    with pytest.raises(ToolFailure, match="workflow failed"):
        chat({"api_base": server.url("/v1"), "api_key": "app-test", "app_type": "workflow", "query": "[error]"})


@pytest.fixture(scope="module")
def quoted_url():
    """160,000 small JSON events: 4.2 MB of text that grows past 5 MiB once JSON-escaped."""
    async def quoted(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        block = b'data: {"a":"b","c":"d","e":"f"}\n\n' * 1000
        for _ in range(160):
            await response.write(block)
        return response

    app = web.Application()
    app.router.add_get("/quoted", quoted)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}/quoted"


def test_every_sse_request_message_fits_the_line_limit_once_serialised(quoted_url):
    """Issue 8 class 5: the cap is on the serialised message, not on the UTF-8 text."""
    outputs = list(run_sse_request(plan_sse_request({"url": quoted_url, "max_events": 200_000})))
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    assert variables["total_events"] == 160_000 and len("".join(o[1] for o in outputs if o[0] == "text")) > 4_000_000
    for output in outputs:
        assert len(orjson.dumps({"type": output[0], "message": list(output[1:])})) < 5 * 1024 * 1024
    assert "[truncated by sse_fanin" in variables["answer"] and outputs[-1][1]["answer_truncated"] is True
    assert outputs[-1][1]["events_truncated"] is True


def test_the_message_boundary_hands_values_over_as_the_cores_cut_them():
    """Each value is measured and cut once, where it is made: the Dify boundary passes the
    very objects on (it used to run `fit` over every message a second time)."""
    from tools.messages import to_messages

    class Collect:
        def create_text_message(self, text):
            return ("text", text)

        def create_variable_message(self, name, value):
            return ("variable", name, value)

        def create_json_message(self, value):
            return ("json", value)

    value, record = ["x" * 10] * 3, {"a": 1}
    made = list(to_messages(Collect(), lambda: iter([("text", "t"), ("variable", "v", value), ("json", record)])))
    assert made[1][2] is value and made[2][1] is record


@pytest.mark.parametrize("language,words", [
    ("zh_Hans", ["SSE 完成：从 1 个源接收到 3 个事件", "秒"]), ("ja_JP", ["SSE 完了", "3 件のイベント"]),
    ("pt_BR", ["SSE concluído: 3 eventos de 1 fonte em"]), ("", ["completed: 3 events from 1 source in"]),
])
def test_the_summary_sentence_speaks_the_chosen_language(server, language, words):
    _, _, summary = run({"url": server.url("/stream?count=3"), "language": language})
    assert all(word in summary["summary"] for word in words), summary["summary"]


def test_an_unknown_summary_language_is_one_clear_line():
    with pytest.raises(ValueError, match="language: choose one of en_US, zh_Hans, ja_JP, pt_BR, got 'fr'"):
        plan_sse_request({"url": "http://x", "language": "fr"})
