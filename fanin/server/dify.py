"""Dify-app-like streaming endpoints for the built-in server, so the Dify tools (and users)
can be tried offline. They send the event sequences Dify documents for each app type with
`response_mode: streaming`: `data: {"event": ...}` blocks and `event: ping` keep-alives,
and Dify's `{"code","message","status"}` bodies for refusals.

Routes (under /v1): POST chat-messages, workflows/run, completion-messages; the three stop
endpoints; GET workflow/{workflow_run_id}/events (resume; with `continue_on_pause=true` a
paused run goes on once its form was submitted or has expired); GET and POST
form/human_input/{form_token} (the Human Input form: 404 unknown, 412 already submitted or
expired); GET test/stops (which stops arrived, for tests).

Raw mode, for recorded streams: POST test/recordings?chunk=N with a stream's exact bytes
returns an id; then `/v1/raw/{id}` is an API base whose chat-messages, workflows/run and
completion-messages answer every POST with those bytes, unchanged, in writes of N bytes
(N=0: one write), so a client's parser meets any split a network could make.

The API key picks the app, as in Dify: `app-test` answers on every route with the route's
usual app (chatflow, workflow, completion); `app-test-chat`, `app-test-agent-chat`,
`app-test-agent` (New Agent), `app-test-advanced-chat`, `app-test-workflow` and
`app-test-completion` are apps of one mode, and the wrong route gets Dify's
`not_chat_app` / `not_workflow_app` / `app_unavailable`.

Markers in the query (or `inputs.query`) pick a scenario:
`[error]` error event mid-stream (a workflow: `workflow_finished` failed), `[replace]`
message_replace (workflow: text_replace), `[final]` outputs.answer differs from the streamed
text by whitespace, `[message-end-first]` message_end before workflow_finished (the docs'
order; the default is the 1.x server's), `[pause]` human input then workflow_paused (a
form with a paragraph input `comment` and the actions `approve` and `reject`; with
`[pause-email]` its form_token is null, as for e-mail delivery; with `[pause-empty]` the
human_input_required payload is empty, a known Dify bug; with `[pause-expired]` the form
has already expired: a submit gets 412 and the resumed run reports
human_input_form_timeout),
`[stopped]` the run is stopped by someone else, `[partial]` a node fails and the run ends
partial-succeeded, `[files]`, `[cite]`, `[reasoning]`, `[big]` an answer and outputs of
about 4.5 MB of JSON-looking text, `[hang]` the run waits until its stop endpoint is called,
`[slow]` slower chunks, `[busy]` a 429 `too_many_requests` with Retry-After: 1,
`[quota]` a 429 `rate_limit_error` (the provider's quota), `[drop]` the connection is cut mid-run (then the resume endpoint
replays the run from the start; with `[drop-continue]` it sends only the rest, with
`[drop-finished]` only `workflow_finished`, with `[no-resume]` it answers 404 as older
Dify versions do).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from .stats import open_stream_scope

__all__ = ["add_dify_routes", "DIFY_TEST_KEY", "DIFY_APP_KEYS", "dify_answer_for", "dify_app_events",
           "dify_resumed_answer"]

DIFY_TEST_KEY = "app-test"
DIFY_APP_KEYS = {
    "app-test-chat": "chat", "app-test-agent-chat": "agent-chat", "app-test-agent": "agent",
    "app-test-advanced-chat": "advanced-chat", "app-test-workflow": "workflow",
    "app-test-completion": "completion",
}
_ROUTE_DEFAULT = {"chat": "advanced-chat", "workflow": "workflow", "completion": "completion"}
_CHAT_MODES = ("chat", "agent-chat", "agent", "advanced-chat")
_KEYS = web.AppKey("dify_api_keys", frozenset)
_DELAY = web.AppKey("dify_chunk_delay", float)
_RUNS = web.AppKey("dify_runs", dict)
_STOPS = web.AppKey("dify_stops", list)
_FORMS = web.AppKey("dify_forms", dict)
_RECORDINGS = web.AppKey("dify_recordings", dict)
_KEPT_RECORDINGS = 64
_RECORDING_LIMIT = 8 * 1024 * 1024
_KEPT_RUNS = 64     # runs kept for the resume and stop endpoints (a [big] run holds ~4.5 MB)
_KEPT_STOPS = 1000
_BIG_PIECE = '{"k": "v", "n": [1, 2]}\n' * 2730   # ~64 KiB of text that grows by half once escaped


def dify_answer_for(query: str, user: str) -> str:
    """The answer the fake app gives: deterministic, with Chinese and emoji on purpose."""
    return f"你好，{user}！You asked: {query} 🎉 答案是 42。✅"


def dify_resumed_answer(action: str, comment: str) -> str:
    """What the fake app answers after its human input form (or its timeout)."""
    if action == "timeout":
        return "没有人回答，表单已过期。The form timed out."
    return f"已收到：{action} — {comment} ✅"


def _chunks(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)


def _app_mode(request: web.Request, route: str) -> str | web.Response:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return _error_body(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")
    key = auth[7:].strip()
    if key in request.app[_KEYS]:
        return _ROUTE_DEFAULT[route]
    if key in DIFY_APP_KEYS:
        return DIFY_APP_KEYS[key]
    return _error_body(401, "unauthorized", "Access token is invalid")


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


def _usage(text: str) -> dict[str, Any]:
    completion = len(text)
    return {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion,
            "currency": "USD", "total_price": "0", "latency": 0.05}


PING = {"event": "ping"}   # sent as a bare `event: ping` keep-alive, as Dify does


class _Run:
    """One app run: the whole event sequence, built up front, and how far it was sent."""

    def __init__(self, mode: str, query: str, user: str, conversation_id: str) -> None:
        self.mode, self.query, self.user = mode, query, user
        self.task_id, self.message_id, self.run_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        self.conversation_id = conversation_id
        self.started = time.time()
        self.stopped = asyncio.Event()
        self.sent = 0
        self.drop_at: int | None = None
        self.hang_at: int | None = None
        self.form_token: str | None = None
        self.form_expires = 1798761600       # 2027-01-01T00:00:00Z
        self.submitted: dict[str, Any] | None = None
        self.form_changed = asyncio.Event()
        self.events: list[dict[str, Any]] = []
        self.answer = dify_answer_for(query, user)
        if "[big]" in query:
            self.answer = _BIG_PIECE * 70
        self._build()

    def has(self, marker: str) -> bool:
        return marker in self.query

    # ------------------------------------------------------------------ building

    def _base(self) -> dict[str, Any]:
        if self.mode == "workflow":
            return {"task_id": self.task_id, "workflow_run_id": self.run_id}
        base = {"task_id": self.task_id, "message_id": self.message_id, "created_at": int(self.started)}
        if self.mode != "completion":
            base["conversation_id"] = self.conversation_id
        if self.mode == "advanced-chat":
            base["workflow_run_id"] = self.run_id
        return base

    def _add(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **self._base(), **fields})

    def _node(self, node_type: str, title: str, status: str | None = None, **extra: Any) -> dict[str, Any]:
        node = {"id": str(uuid.uuid4()), "node_id": node_type, "node_type": node_type, "title": title,
                "index": 1, "created_at": int(self.started)}
        if status:
            node.update(status=status, elapsed_time=0.01, **extra)
        return node

    def _files(self) -> list[dict[str, Any]]:
        return [{"related_id": "file-1", "type": "image", "filename": "chart.png", "extension": ".png",
                 "mime_type": "image/png", "size": 1234, "transfer_method": "tool_file",
                 "url": "http://files.example/chart.png", "upload_file_id": "file-1", "remote_url": ""}]

    def _citations(self) -> list[dict[str, Any]]:
        return [{"id": "cite-1", "message_id": self.message_id, "position": 1, "dataset_id": "ds-1",
                 "dataset_name": "Handbook", "document_id": "doc-1", "document_name": "handbook.md",
                 "data_source_type": "upload_file", "segment_id": "seg-1", "score": 0.87, "hit_count": 1,
                 "word_count": 42, "segment_position": 3, "content": "The answer is 42.",
                 "created_at": int(self.started)}]

    def _build(self) -> None:
        workflowish = self.mode in ("advanced-chat", "workflow")
        if workflowish:
            self._add("workflow_started", data={"id": self.run_id, "workflow_id": "wf-demo",
                                                "inputs": {"query": self.query}, "created_at": int(self.started),
                                                "reason": "initial"})
            self.events.append(PING)
            self._add("node_started", data=self._node("start", "Start"))
            self._add("node_finished", data=self._node("start", "Start", "succeeded", outputs={}))
            self._add("node_started", data=self._node("llm", "LLM"))
        if self.mode in ("agent-chat", "agent"):
            self._add("agent_thought", id=str(uuid.uuid4()), position=1, thought="Let me think.",
                      observation="", tool="", tool_input="", message_files=[])
        if self.has("[reasoning]"):
            for piece in ("First, ", "read the question. ", "Then answer."):
                self._add("reasoning_chunk", data={"message_id": self.message_id, "reasoning": piece,
                                                   "node_id": "llm", "is_final": False})
        self._stream_answer()
        if self.has("[error]"):
            return
        if self.has("[files]") and self.mode != "workflow":
            self._add("message_file", id="file-1", type="image", belongs_to="assistant",
                      url="http://files.example/chart.png")
        if self.has("[hang]"):
            self.hang_at = len(self.events)
        if self.has("[pause]") and workflowish:
            self._pause()
            return
        self._finish()

    def _stream_answer(self) -> None:
        text = self.answer
        streamed = "draft that will be replaced " if self.has("[replace]") else text
        pieces = _chunks(streamed, len(_BIG_PIECE) if self.has("[big]") else 3)
        if self.mode == "workflow":
            kind, make = "text_chunk", (lambda p: {"data": {"text": p, "from_variable_selector": ["llm", "text"]}})
        elif self.mode in ("agent-chat", "agent"):
            kind, make = "agent_message", (lambda p: {"id": self.message_id, "answer": p})
        else:
            kind, make = "message", (lambda p: {"id": self.message_id, "answer": p})
        for index, piece in enumerate(pieces):
            self._add(kind, **make(piece))
            if index == 2:
                self.events.append(PING)
            if self.has("[drop]") and index == len(pieces) // 2:
                self.drop_at = len(self.events)
            if self.has("[error]") and index == 3:
                if self.mode == "workflow":
                    self._add("workflow_finished", data=self._run_data(
                        "failed", None, error="Node LLM run failed: the model provider went away."))
                self._add("error", status=500, code="completion_request_error",
                          message="The model provider went away.")
                return
        if self.has("[replace]"):
            if self.mode == "workflow":
                self._add("text_replace", data={"text": text})
            else:
                self._add("message_replace", answer=text, reason="moderation")
        if self.mode == "agent":   # New Agent: one closing message with the whole answer
            self._add("message", id=self.message_id, answer=text)

    def _run_data(self, status: str, outputs: Any, **extra: Any) -> dict[str, Any]:
        data = {"id": self.run_id, "workflow_id": "wf-demo", "status": status, "outputs": outputs,
                "error": None, "elapsed_time": round(time.time() - self.started, 3),
                "total_tokens": len(self.answer) + 12, "total_steps": 3, "created_at": int(self.started),
                "finished_at": int(time.time()), "exceptions_count": 0, "files": []}
        data.update(extra)
        return data

    def _workflow_finished(self, status: str = "succeeded") -> dict[str, Any]:
        final = self.answer
        if self.has("[final]"):
            final = final.replace("！", "！\n") + "\n"
        outputs: dict[str, Any] = {"answer": final}
        if self.mode == "workflow":
            outputs["text"] = final
        extra: dict[str, Any] = {}
        if self.has("[files]"):
            extra["files"] = self._files()
        if status == "partial-succeeded":
            extra["exceptions_count"] = 1
        return {"event": "workflow_finished", **self._base(), "data": self._run_data(status, outputs, **extra)}

    def _message_end(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"usage": _usage(self.answer)}
        if self.mode != "agent":
            metadata["retriever_resources"] = self._citations() if self.has("[cite]") else []
        end = {"event": "message_end", **self._base(), "id": self.message_id, "metadata": metadata,
               "files": self._files() if self.has("[files]") else []}
        return end

    def _finish(self) -> None:
        status = "stopped" if self.has("[stopped]") else "succeeded"
        if self.has("[partial]"):
            self._add("node_finished", data=self._node("http", "Fetch", "exception", error="timeout"))
            status = "partial-succeeded"
        if self.mode in ("advanced-chat", "workflow"):
            self._add("node_finished", data=self._node("llm", "LLM", "succeeded", outputs={"text": self.answer}))
        if self.mode == "workflow":
            self.events.append(self._workflow_finished(status))
        elif self.mode == "advanced-chat":
            pair = [self._workflow_finished(status), self._message_end()]
            if self.has("[message-end-first]"):
                pair.reverse()
            self.events.extend(pair)
        else:
            self.events.append(self._message_end())
        self.events.append(PING)

    _FORM_INPUTS = [{"type": "paragraph", "output_variable_name": "comment", "default": None}]
    _ACTIONS = [{"id": "approve", "title": "Approve", "button_style": "primary"},
                {"id": "reject", "title": "Reject", "button_style": "default"}]

    def _pause(self) -> None:
        if self.has("[pause-expired]"):
            self.form_expires = int(self.started) - 1
        if self.has("[pause-empty]"):
            self._add("human_input_required", data={})
        else:
            self.form_token = None if self.has("[pause-email]") else "form-tok-" + self.run_id[:8]
            self._add("human_input_required", data={
                "form_id": "form-1", "node_id": "approve", "node_title": "Approve the draft",
                "form_content": "Please approve: {{#draft#}}", "inputs": self._FORM_INPUTS,
                "actions": self._ACTIONS, "display_in_ui": True, "form_token": self.form_token,
                "resolved_default_values": {}, "expiration_time": self.form_expires})
        self._add("workflow_paused", data={
            "workflow_run_id": self.run_id, "paused_nodes": ["approve"], "outputs": {}, "reasons": [
                {"type": "human_input_required", "form_id": "form-1"}], "status": "paused",
            "created_at": int(self.started), "elapsed_time": 0.2, "total_tokens": 10, "total_steps": 2})

    # ------------------------------------------------------------------ human input

    @property
    def form_expired(self) -> bool:
        return time.time() >= self.form_expires

    def form_definition(self) -> dict[str, Any]:
        """GET /form/human_input/{form_token}, as Dify's API reference gives it."""
        return {"form_content": "Please approve: the draft", "inputs": self._FORM_INPUTS,
                "resolved_default_values": {}, "user_actions": self._ACTIONS, "expiration_time": self.form_expires}

    def submit(self, inputs: dict[str, Any], action: str) -> None:
        self.submitted = {"inputs": inputs, "action": action}
        self.form_changed.set()

    def continuation(self) -> list[dict[str, Any]]:
        """What the run streams after its pause: the form filled (or timed out), the rest of
        the answer, the end. Empty while the form is still open."""
        if self.submitted is None and not self.form_expired:
            return []
        events: list[dict[str, Any]] = []

        def add(event: str, **fields: Any) -> None:
            events.append({"event": event, **self._base(), **fields})

        add("workflow_started", data={"id": self.run_id, "workflow_id": "wf-demo", "inputs": {"query": self.query},
                                      "created_at": int(time.time()), "reason": "resumption"})
        if self.submitted is not None:
            action = self.submitted["action"]
            comment = str(self.submitted["inputs"].get("comment", ""))
            add("human_input_form_filled", data={
                "node_id": "approve", "node_title": "Approve the draft", "rendered_content": "Please approve: the draft",
                "action_id": action, "action_text": action.title(), "submitted_data": self.submitted["inputs"]})
            text = dify_resumed_answer(action, comment)
        else:
            add("human_input_form_timeout", data={"node_id": "approve", "node_title": "Approve the draft",
                                                  "expiration_time": self.form_expires})
            text = dify_resumed_answer("timeout", "")
        for piece in _chunks(text):
            if self.mode == "workflow":
                add("text_chunk", data={"text": piece, "from_variable_selector": ["llm", "text"]})
            else:
                add("message", id=self.message_id, answer=piece)
        outputs: dict[str, Any] = {"answer": text}
        if self.mode == "workflow":
            outputs["text"] = text
        add("workflow_finished", data=self._run_data("succeeded", outputs))
        if self.mode != "workflow":
            events.append(self._message_end())
        return events

    def stop(self) -> None:
        """The stop endpoint: a hanging run ends as Dify 1.x ends a stopped one."""
        if self.hang_at is not None and not self.stopped.is_set():
            tail = [self._workflow_finished("stopped")] if self.mode in ("advanced-chat", "workflow") else []
            if self.mode != "workflow":
                tail.append(self._message_end())
            self.events[self.hang_at:] = tail
        self.stopped.set()


def dify_app_events(mode: str, query: str, user: str, conversation_id: str = "conv-1") -> list[dict[str, Any]]:
    """The events an app of `mode` streams for `query` (markers as above), without pings:
    what a reverse invocation hands a plugin (the SDK drops the pings)."""
    run = _Run(mode, query, user, conversation_id if mode not in ("workflow", "completion") else "")
    return [event for event in run.events if event is not PING]


async def _write(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    if payload is PING:
        await response.write(b"event: ping\n\n")
    else:
        await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b"event: ping\n\n")
    return response


async def _play(request: web.Request, run: _Run, start: int = 0, *, live: bool = True) -> web.StreamResponse:
    response = await _open_stream(request)
    delay = request.app[_DELAY] * (20 if run.has("[slow]") else 1)
    index = start
    while index < len(run.events):
        if live and index == run.hang_at and not run.stopped.is_set():
            try:
                await asyncio.wait_for(run.stopped.wait(), 60)
            except TimeoutError:
                run.hang_at = None   # nobody stopped it: the run finishes normally
            continue   # stop() rewrote the tail
        if live and index == run.drop_at:
            run.sent = index
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()   # cut mid-body: the client sees a truncated stream
            return response
        await _write(response, run.events[index])
        index += 1
        run.sent = index
        if delay:
            await asyncio.sleep(delay)
    return response


def _dify_route(route: str):
    """What every app route does first: check the key (which picks the app), read the JSON
    body, refuse the wrong route as Dify does; then run the handler counted in /stats."""

    def wrap(handler):
        @functools.wraps(handler)
        async def endpoint(request: web.Request) -> web.StreamResponse:
            mode = _app_mode(request, route)
            if isinstance(mode, web.Response):
                return mode
            body = await _read_body(request)
            if isinstance(body, web.Response):
                return body
            if route == "chat" and mode not in _CHAT_MODES:
                return _error_body(400, "not_chat_app", "Please check if your app mode matches the right API route.")
            if route == "workflow" and mode != "workflow":
                return _error_body(400, "not_workflow_app",
                                   "Please check if your app mode matches the right API route.")
            if route == "completion" and mode != "completion":
                return _error_body(400, "app_unavailable", "App unavailable, please check your app configurations.")
            user = str(body.get("user") or "")
            if not user:
                return _error_body(400, "invalid_param", "user is required")
            if body.get("response_mode") != "streaming" and mode in ("agent-chat", "agent"):
                return _error_body(400, "bad_request", "Agent Chat App does not support blocking mode")
            refusal = _rate_limited(_inputs_query(body))
            if refusal is not None:
                return refusal
            with open_stream_scope(request):
                return await handler(request, body, mode, user)

        return endpoint

    return wrap


def _rate_limited(query: str) -> web.Response | None:
    """Dify's two 429s: its own limit on the app (`too_many_requests`, with Retry-After) and
    the model provider's quota (`rate_limit_error`)."""
    if "[busy]" in query:
        response = _error_body(429, "too_many_requests", "Too many requests. Please try again later.")
        response.headers["Retry-After"] = "1"
        return response
    if "[quota]" in query:
        return _error_body(429, "rate_limit_error", "Rate Limit Error: the model provider's quota is exceeded.")
    return None


def _register(request: web.Request, run: _Run) -> _Run:
    runs = request.app[_RUNS]
    runs[run.task_id] = runs[run.run_id] = run
    while len(runs) > 2 * _KEPT_RUNS:   # a long-lived `fanin serve` keeps only recent runs (each twice)
        runs.pop(next(iter(runs)))
    if run.form_token:
        forms = request.app[_FORMS]
        forms[run.form_token] = run
        while len(forms) > _KEPT_RUNS:
            forms.pop(next(iter(forms)))
    return run


def _blocking(run: _Run) -> web.Response:
    if run.mode == "workflow":
        return web.json_response({"task_id": run.task_id, "workflow_run_id": run.run_id,
                                  "data": run._workflow_finished()["data"]})
    return web.json_response({"event": "message", "task_id": run.task_id, "id": run.message_id,
                              "message_id": run.message_id, "conversation_id": run.conversation_id,
                              "mode": run.mode, "answer": run.answer,
                              "metadata": {"usage": _usage(run.answer), "retriever_resources": []},
                              "created_at": int(run.started)})


@_dify_route("chat")
async def chat_messages(request: web.Request, body: dict[str, Any], mode: str, user: str) -> web.StreamResponse:
    query = body.get("query")
    if not isinstance(query, str) or not query:
        return _error_body(400, "invalid_param", "query is required")
    conversation_id = body.get("conversation_id") or ""
    if conversation_id and not conversation_id.startswith("conv-"):
        return _error_body(404, "not_found", "Conversation Not Exists.")
    run = _register(request, _Run(mode, query, user, conversation_id or f"conv-{uuid.uuid4()}"))
    if body.get("response_mode") != "streaming":
        return _blocking(run)
    return await _play(request, run)


def _inputs_query(body: dict[str, Any]) -> str:
    inputs = body.get("inputs") or {}
    return str(inputs.get("query") or inputs.get("text") or body.get("query") or "")


@_dify_route("workflow")
async def workflows_run(request: web.Request, body: dict[str, Any], mode: str, user: str) -> web.StreamResponse:
    run = _register(request, _Run(mode, _inputs_query(body), user, ""))
    if body.get("response_mode") != "streaming":
        return _blocking(run)
    return await _play(request, run)


@_dify_route("completion")
async def completion_messages(request: web.Request, body: dict[str, Any], mode: str,
                              user: str) -> web.StreamResponse:
    run = _register(request, _Run(mode, _inputs_query(body), user, ""))
    if body.get("response_mode") != "streaming":
        return _blocking(run)
    return await _play(request, run)


def _stop_route(kind: str):
    async def stop(request: web.Request) -> web.Response:
        body = await _read_body(request)
        if isinstance(body, web.Response):
            return body
        task_id, user = request.match_info["task_id"], str(body.get("user") or "")
        run = request.app[_RUNS].get(task_id)
        stops = request.app[_STOPS]
        stops.append({"kind": kind, "task_id": task_id, "user": user,
                      "auth": bool(request.headers.get("Authorization"))})
        del stops[:-_KEPT_STOPS]
        # chat and completion stops only act for the run's own user (else a silent no-op, still 200)
        if run is not None and (kind == "workflow" or run.user == user):
            run.stop()
        return web.json_response({"result": "success"})

    return stop


async def workflow_events(request: web.Request) -> web.StreamResponse:
    """Resume a run's stream (newer Dify): replay, the rest, or only workflow_finished; a
    paused run, with continue_on_pause, goes on once its form is answered or expired (it
    waits a few seconds for a submit, then says it is still paused)."""
    run = request.app[_RUNS].get(request.match_info["workflow_run_id"])
    if run is None or run.user != request.query.get("user") or run.has("[no-resume]"):
        return _error_body(404, "not_found", "Workflow run not found")
    with open_stream_scope(request):
        paused = run.events and run.events[-1].get("event") == "workflow_paused"
        if paused and request.query.get("continue_on_pause") == "true":
            tail = run.continuation()
            if not tail:
                run.form_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.form_changed.wait(), 5)
                tail = run.continuation() or run.events[-2:]
            response = await _open_stream(request)
            for event in tail:
                await _write(response, event)
                await asyncio.sleep(request.app[_DELAY])
            return response
        if run.has("[drop-finished]"):
            response = await _open_stream(request)
            final = next((e for e in run.events if e.get("event") == "workflow_finished"), None)
            if final is not None:
                await _write(response, final)
            return response
        start = run.sent if run.has("[drop-continue]") else 0
        return await _play(request, run, start, live=False)


def _form_for(request: web.Request) -> _Run | web.Response:
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if key not in request.app[_KEYS] and key not in DIFY_APP_KEYS:
        return _error_body(401, "unauthorized", "Access token is invalid")
    run = request.app[_FORMS].get(request.match_info["form_token"])
    if run is None:
        return _error_body(404, "not_found", "Form not found")
    if run.submitted is not None:
        return _error_body(412, "human_input_form_submitted", "This form has already been submitted.")
    if run.form_expired:
        return _error_body(412, "human_input_form_expired", "This form has expired.")
    return run


async def get_form(request: web.Request) -> web.Response:
    run = _form_for(request)
    return run if isinstance(run, web.Response) else web.json_response(run.form_definition())


async def submit_form(request: web.Request) -> web.Response:
    run = _form_for(request)
    if isinstance(run, web.Response):
        return run
    body = await _read_body(request)
    if isinstance(body, web.Response):
        return body
    actions = [a["id"] for a in run._ACTIONS]
    if body.get("action") not in actions:
        return _error_body(400, "invalid_form_data", f"action must be one of: {', '.join(actions)}")
    if not isinstance(body.get("inputs"), dict) or not str(body.get("user") or ""):
        return _error_body(400, "invalid_form_data", "inputs (an object) and user are required")
    run.submit(body["inputs"], body["action"])
    return web.json_response({})


async def add_recording(request: web.Request) -> web.Response:
    try:
        chunk = int(request.query.get("chunk", "0"))
    except ValueError:
        chunk = -1
    if chunk < 0:
        return _error_body(400, "invalid_param", "chunk must be a whole number of bytes >= 0")
    payload = await request.content.read(_RECORDING_LIMIT + 1)
    if len(payload) > _RECORDING_LIMIT:
        return _error_body(413, "invalid_param", "a recording may hold at most 8 MiB")
    recordings = request.app[_RECORDINGS]
    key = uuid.uuid4().hex
    recordings[key] = (payload, chunk)
    while len(recordings) > _KEPT_RECORDINGS:
        recordings.pop(next(iter(recordings)))
    return web.json_response({"id": key, "bytes": len(payload)})


async def replay_recording(request: web.Request) -> web.StreamResponse:
    """Raw mode: the recorded bytes, exactly, whatever was asked."""
    found = request.app[_RECORDINGS].get(request.match_info["recording"])
    if found is None:
        return _error_body(404, "not_found", "no such recording")
    payload, chunk = found
    await request.read()
    with open_stream_scope(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        step = chunk or max(len(payload), 1)
        for offset in range(0, len(payload), step):
            await response.write(payload[offset : offset + step])
            if chunk:
                await asyncio.sleep(0)
        return response


async def recorded_stops(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STOPS])


def add_dify_routes(app: web.Application, *, api_keys: tuple[str, ...] = (DIFY_TEST_KEY,),
                    chunk_delay: float = 0.002) -> web.Application:
    """Register the Dify-app-like routes on `app` (call before the app starts).

    `api_keys` are accepted on every route (each route's usual app); the DIFY_APP_KEYS are
    apps of one mode; any other key gets Dify's 401 body. `chunk_delay` spaces the events so
    the stream is visibly live."""
    app[_KEYS] = frozenset(api_keys)
    app[_DELAY] = float(chunk_delay)
    app[_RUNS] = {}
    app[_STOPS] = []
    app[_FORMS] = {}
    app[_RECORDINGS] = {}
    app.router.add_post("/v1/chat-messages", chat_messages)
    app.router.add_post("/v1/workflows/run", workflows_run)
    app.router.add_post("/v1/completion-messages", completion_messages)
    app.router.add_post("/v1/chat-messages/{task_id}/stop", _stop_route("chat"))
    app.router.add_post("/v1/workflows/tasks/{task_id}/stop", _stop_route("workflow"))
    app.router.add_post("/v1/completion-messages/{task_id}/stop", _stop_route("completion"))
    app.router.add_get("/v1/workflow/{workflow_run_id}/events", workflow_events)
    app.router.add_get("/v1/form/human_input/{form_token}", get_form)
    app.router.add_post("/v1/form/human_input/{form_token}", submit_form)
    app.router.add_get("/v1/test/stops", recorded_stops)
    app.router.add_post("/v1/test/recordings", add_recording)
    for route in ("chat-messages", "workflows/run", "completion-messages"):
        app.router.add_post(f"/v1/raw/{{recording}}/{route}", replay_recording)
    return app
