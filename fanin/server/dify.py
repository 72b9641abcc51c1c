"""Dify-app-like streaming endpoints for the built-in server, so the Dify tool (and users)
can be tried offline: `POST /v1/chat-messages` and `POST /v1/workflows/run`.

They speak the event catalogue a real Dify app sends with `response_mode: streaming`:
`data: {"event": ...}` lines (workflow_started, node_started/finished, message,
message_replace, message_end, text_chunk, workflow_finished, error) and `event: ping`
keep-alives, and they answer a bad API key with Dify's `{"code","message","status"}` body.

Scenarios are picked by markers in the query text, so tests need no extra knobs:
`[error]` ends with an error event, `[replace]` sends a message_replace, `[final]` makes
workflow_finished carry a different final answer, `[slow]` slows the chunks down.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from .stats import open_stream_scope

__all__ = ["add_dify_routes", "DIFY_TEST_KEY", "dify_answer_for"]

DIFY_TEST_KEY = "app-test"
_KEYS = web.AppKey("dify_api_keys", frozenset)
_DELAY = web.AppKey("dify_chunk_delay", float)


def dify_answer_for(query: str, user: str) -> str:
    """The answer the fake app gives: deterministic, with Chinese and emoji on purpose."""
    return f"你好，{user}！You asked: {query} 🎉 答案是 42。✅"


def _chunks(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)


def _check_key(request: web.Request) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return _error_body(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")
    if auth[7:].strip() not in request.app[_KEYS]:
        return _error_body(401, "unauthorized", "Access token is invalid")
    return None


async def _read_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error_body(400, "invalid_param", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _error_body(400, "invalid_param", "The request body must be a JSON object.")
    inputs = body.get("inputs", {})
    if inputs is not None and not isinstance(inputs, dict):
        return _error_body(400, "invalid_param", "inputs must be a JSON object.")
    return body


class _Sse:
    """Writes Dify's framing: `data: <json>` blocks and `event: ping` keep-alives."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

    async def send(self, payload: dict[str, Any]) -> None:
        await self.response.write(b"data: " + orjson.dumps(payload) + b"\n\n")

    async def ping(self) -> None:
        await self.response.write(b"event: ping\n\n")


async def _open_stream(request: web.Request) -> _Sse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return _Sse(response)


def _usage(text: str) -> dict[str, Any]:
    completion = len(text)
    return {
        "prompt_tokens": 12,
        "completion_tokens": completion,
        "total_tokens": 12 + completion,
        "currency": "USD",
        "total_price": "0",
        "latency": 0.05,
    }


async def _run_nodes(sse: _Sse, task_id: str, run_id: str, title: str, started: float) -> None:
    for node_type, node_title in (("start", "Start"), ("llm", title)):
        node = {"id": str(uuid.uuid4()), "node_id": node_type, "node_type": node_type, "title": node_title,
                "index": 1, "created_at": int(started)}
        await sse.send({"event": "node_started", "task_id": task_id, "workflow_run_id": run_id, "data": node})
        if node_type == "start":
            await sse.send({"event": "node_finished", "task_id": task_id, "workflow_run_id": run_id,
                            "data": {**node, "status": "succeeded", "outputs": {}, "elapsed_time": 0.001}})


def _dify_endpoint(handler):
    """What every Dify-app route does first: check the key, read the JSON body; then run
    the handler counted in /stats open_streams (and cancellable at server shutdown)."""

    @functools.wraps(handler)
    async def endpoint(request: web.Request) -> web.StreamResponse:
        refused = _check_key(request)
        if refused:
            return refused
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        with open_stream_scope(request):
            return await handler(request, body)

    return endpoint


@_dify_endpoint
async def chat_messages(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    query = body.get("query")
    if not isinstance(query, str) or not query:
        return _error_body(400, "invalid_param", "query is required")
    user = str(body.get("user") or "")
    if not user:
        return _error_body(400, "invalid_param", "user is required")
    conversation_id = body.get("conversation_id") or ""
    if conversation_id and not conversation_id.startswith("conv-"):
        return _error_body(404, "not_found", "Conversation Not Exists.")
    conversation_id = conversation_id or f"conv-{uuid.uuid4()}"
    answer = dify_answer_for(query, user)
    task_id, message_id, run_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    started = time.time()
    delay = request.app[_DELAY] * (20 if "[slow]" in query else 1)

    if body.get("response_mode") != "streaming":
        return web.json_response({
            "event": "message", "task_id": task_id, "id": message_id, "message_id": message_id,
            "conversation_id": conversation_id, "mode": "advanced-chat", "answer": answer,
            "metadata": {"usage": _usage(answer), "retriever_resources": []}, "created_at": int(started),
        })

    sse = await _open_stream(request)
    await sse.ping()
    await sse.send({"event": "workflow_started", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {"id": run_id, "workflow_id": "wf-demo", "sequence_number": 1,
                             "created_at": int(started)}})
    await sse.send({"event": "ping"})
    await _run_nodes(sse, task_id, run_id, "LLM", started)
    base = {"task_id": task_id, "message_id": message_id, "conversation_id": conversation_id,
            "created_at": int(started)}
    streamed = answer
    if "[replace]" in query:
        streamed = "draft that will be replaced "
    for index, piece in enumerate(_chunks(streamed)):
        await sse.send({"event": "message", "id": message_id, "answer": piece, **base})
        if index == 2:
            await sse.ping()
        if delay:
            await asyncio.sleep(delay)
        if "[error]" in query and index == 3:
            await sse.send({"event": "error", "task_id": task_id, "message_id": message_id, "status": 500,
                            "code": "completion_request_error", "message": "The model provider went away."})
            return sse.response
    if "[replace]" in query:
        await sse.send({"event": "message_replace", "answer": answer, **base})
    final = "FINAL: " + answer if "[final]" in query else answer
    await sse.send({"event": "node_finished", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {"id": str(uuid.uuid4()), "node_id": "llm", "node_type": "llm", "title": "LLM",
                             "status": "succeeded", "outputs": {"text": answer}, "elapsed_time": 0.05}})
    await sse.send({"event": "workflow_finished", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {"id": run_id, "workflow_id": "wf-demo", "status": "succeeded",
                             "outputs": {"answer": final}, "error": None,
                             "elapsed_time": round(time.time() - started, 3), "total_tokens": len(final) + 12,
                             "total_steps": 3, "created_at": int(started), "finished_at": int(time.time())}})
    await sse.send({"event": "message_end", "id": message_id, "metadata": {"usage": _usage(answer),
                    "retriever_resources": []}, **base})
    await sse.ping()
    return sse.response


@_dify_endpoint
async def workflows_run(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    inputs = body.get("inputs") or {}
    user = str(body.get("user") or "")
    if not user:
        return _error_body(400, "invalid_param", "user is required")
    query = str(inputs.get("query") or inputs.get("text") or "")
    text = dify_answer_for(query, user)
    task_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    started = time.time()
    delay = request.app[_DELAY]
    outputs = {"answer": text, "text": text}
    finished = {"id": run_id, "workflow_id": "wf-demo", "status": "succeeded", "outputs": outputs,
                "error": None, "total_tokens": len(text) + 12, "total_steps": 3,
                "created_at": int(started)}
    if body.get("response_mode") != "streaming":
        return web.json_response({"task_id": task_id, "workflow_run_id": run_id,
                                  "data": {**finished, "elapsed_time": 0.05, "finished_at": int(time.time())}})
    sse = await _open_stream(request)
    await sse.ping()
    await sse.send({"event": "workflow_started", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {"id": run_id, "workflow_id": "wf-demo", "sequence_number": 1,
                             "created_at": int(started)}})
    await _run_nodes(sse, task_id, run_id, "Template", started)
    for index, piece in enumerate(_chunks(text)):
        await sse.send({"event": "text_chunk", "task_id": task_id, "workflow_run_id": run_id,
                        "data": {"text": piece, "from_variable_selector": ["llm", "text"]}})
        if delay:
            await asyncio.sleep(delay)
        if "[error]" in query and index == 3:
            await sse.send({"event": "workflow_finished", "task_id": task_id, "workflow_run_id": run_id,
                            "data": {**finished, "status": "failed", "outputs": None,
                                     "error": "Node LLM run failed: the model provider went away.",
                                     "elapsed_time": 0.05, "finished_at": int(time.time())}})
            return sse.response
    await sse.send({"event": "node_finished", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {"id": str(uuid.uuid4()), "node_id": "llm", "node_type": "llm", "title": "Template",
                             "status": "succeeded", "outputs": outputs, "elapsed_time": 0.05}})
    await sse.send({"event": "workflow_finished", "task_id": task_id, "workflow_run_id": run_id,
                    "data": {**finished, "elapsed_time": round(time.time() - started, 3),
                             "finished_at": int(time.time())}})
    await sse.ping()
    return sse.response


def add_dify_routes(app: web.Application, *, api_keys: tuple[str, ...] = (DIFY_TEST_KEY,),
                    chunk_delay: float = 0.002) -> web.Application:
    """Register the Dify-app-like routes on `app` (call before the app starts).

    `api_keys` are the keys accepted as `Authorization: Bearer <key>`; any other key gets
    Dify's 401 body. `chunk_delay` spaces the answer chunks so the stream is visibly live."""
    app[_KEYS] = frozenset(api_keys)
    app[_DELAY] = float(chunk_delay)
    app.router.add_post("/v1/chat-messages", chat_messages)
    app.router.add_post("/v1/workflows/run", workflows_run)
    return app
