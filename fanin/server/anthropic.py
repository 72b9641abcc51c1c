"""An Anthropic-compatible `POST /v1/messages` for the built-in server: the same stand-in LLM
as openai.py (same knobs, same token texts), speaking the Messages API's streaming events,
so `fanin load --mode requests --api anthropic` can be checked against known timing.

With `stream: true` it sends, as the Messages API documents: `message_start` (the message,
its input tokens), `content_block_start` (an empty text block), a `ping`, one
`content_block_delta` per chunk (`text_delta`), `content_block_stop`, `message_delta` (the
stop reason and the cumulative output tokens), `message_stop`. Each event has its `event:`
name and the same `type` in its JSON data. `error_rate` answers with an HTTP error before
streaming (`{"type": "error", "error": {...}}`); `error_after` sends an `error` event
(`overloaded_error`) after that many tokens instead of the rest, as the API does when
overloaded mid-stream; `cut_after` drops the connection. The other knobs (`ttft_ms`,
`itl_ms`, `jitter_ms`, `max_tokens`, `tokens_per_chunk`, `max_concurrency`, `ts`) are
openai.py's."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from .openai import (OpenAIParams, concurrency_limit, fault_at, json_object_body, paced_chunks, prompt_words,
                     token_text)
from .params import BadParameter
from .stats import open_stream_scope

__all__ = ["add_anthropic_routes"]

_RNG = web.AppKey("anthropic_rng", random.Random)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


async def messages(request: web.Request) -> web.StreamResponse:
    body, problem = await json_object_body(request)
    if body is None:
        return _error(400, problem)
    if not isinstance(body.get("messages"), list):
        return _error(400, "messages: Field required")
    try:
        p = OpenAIParams.parse(request.query, body)
    except BadParameter as exc:
        return _error(400, str(exc))
    rng = request.app[_RNG]
    if p.error_rate and rng.random() < p.error_rate:
        kind = "overloaded_error" if p.error_status == 529 else "api_error"
        return _error(p.error_status, "Injected failure (error_rate).", kind)
    model = str(body.get("model") or "fanin-test")
    message_id = f"msg_{uuid.uuid4().hex}"
    input_tokens = prompt_words(body)
    if not body.get("stream"):
        text = "".join(token_text(i) for i in range(p.max_tokens))
        return web.json_response({
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": p.max_tokens}})
    limit = concurrency_limit(request.app, p)
    with open_stream_scope(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        write = response.write
        await write(_event("message_start", {"message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}))
        await write(_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        await write(_event("ping", {}))
        if limit is not None:
            await limit.acquire()
        try:
            async for index, text in paced_chunks(p, rng):
                fault = fault_at(p, index, request)
                if fault == "cut":
                    return response
                if fault == "error":
                    await write(_event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
                    await response.write_eof()
                    return response
                delta: dict[str, Any] = {"index": 0, "delta": {"type": "text_delta", "text": text}}
                if p.ts:
                    delta["fanin_sent_ns"] = time.time_ns()
                await write(_event("content_block_delta", delta))
        finally:
            if limit is not None:
                limit.release()
        await write(_event("content_block_stop", {"index": 0}))
        await write(_event("message_delta", {"delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                                             "usage": {"output_tokens": p.max_tokens}}))
        await write(_event("message_stop", {}))
        await response.write_eof()
        return response


def add_anthropic_routes(app: web.Application, *, seed: int | None = None) -> web.Application:
    """Register `POST /v1/messages` on `app` (before it starts; after add_openai_routes,
    whose concurrency limits it shares)."""
    app[_RNG] = random.Random(seed)
    app.router.add_post("/v1/messages", messages)
    return app
