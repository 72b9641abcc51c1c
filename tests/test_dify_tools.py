"""The Dify Tool classes through `Tool.from_credentials({})`, in a subprocess (importing
dify_plugin patches the whole process with gevent). The SSE server runs here, unpatched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for

ROOT = Path(__file__).resolve().parents[1]
KEY = "app-this-key-is-wrong-77"

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import dify_plugin  # patches the process, as in the real runtime
from tools.sse_request import SseRequestTool
from tools.dify_chatflow_sse import DifyChatflowSseTool

base = sys.argv[1]
report = {}

def messages(tool, params):
    out = []
    for m in tool.invoke(params):
        d = m.model_dump(mode="json")
        out.append({"type": d["type"], "message": d["message"]})
    return out

def failure(tool, params):
    try:
        list(tool.invoke(params))
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc),
                "cause": exc.__cause__ is not None or not exc.__suppress_context__}
    return None

sse = SseRequestTool.from_credentials({})
urls = "\n".join(f"{base}/stream?count=200&tag=t{i}" for i in range(3))
report["sse"] = messages(sse, {"url": urls, "max_events": 1000, "method": None, "headers": None})
chat = DifyChatflowSseTool.from_credentials({}, user_id="user-from-dify")
report["chat"] = messages(chat, {"api_base": base + "/v1", "api_key": "app-test", "query": "你好 🌏"})
report["wrong_key"] = failure(chat, {"api_base": base + "/v1", "api_key": sys.argv[2], "query": "hi"})
report["bad_param"] = failure(sse, {"url": base + "/stream", "timeout": "soon"})
print(json.dumps(report, ensure_ascii=False))
"""


@pytest.fixture(scope="module")
def report():
    with ServerThread() as server:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, server.url("").rstrip("/"), KEY], cwd=ROOT,
                              capture_output=True, timeout=90)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert KEY.encode() not in proc.stdout + proc.stderr
    return json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])


def split(messages):
    text = "".join(m["message"]["text"] for m in messages if m["type"] == "text")
    variables = {m["message"]["variable_name"]: m["message"]["variable_value"]
                 for m in messages if m["type"] == "variable"}
    return text, variables, [m["type"] for m in messages]


def test_sse_request_tool_messages(report):
    text, variables, types = split(report["sse"])
    assert variables["status"] == "completed" and variables["total_events"] == 600
    assert text == variables["answer"]
    assert types[-1] == "json" and types.count("json") == 1
    first_variable = types.index("variable")
    assert set(types[:first_variable]) == {"text"} and set(types[first_variable:-1]) == {"variable"}
    assert sorted(variables) == sorted(["status", "total_events", "connection_duration", "answer", "events",
                                        "sources", "error"])
    assert report["sse"][-1]["message"]["json_object"]["total_events"] == 600


def test_chatflow_tool_uses_the_invoking_user_and_returns_exact_answer(report):
    text, variables, _ = split(report["chat"])
    assert text == variables["answer"] == dify_answer_for("你好 🌏", "user-from-dify")
    assert variables["conversation_id"].startswith("conv-")


def test_failures_are_one_clear_line_without_the_key_or_a_chained_cause(report):
    wrong = report["wrong_key"]
    assert wrong["type"] == "SseToolError" and "refused the API key" in wrong["message"]
    assert KEY not in wrong["message"] and "\n" not in wrong["message"] and wrong["cause"] is False
    bad = report["bad_param"]
    assert bad["message"] == "timeout: must be a number, got 'soon'"
