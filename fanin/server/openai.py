"""An OpenAI-compatible `POST /v1/chat/completions` for the built-in server: a stand-in LLM
whose timing is known, so `fanin load --mode requests` can be checked against it.

With `stream: true` it answers like vLLM and other OpenAI-compatible servers: a first
`data:` chunk whose delta carries only the role, one chunk per token with
`choices[0].delta.content`, a chunk with `finish_reason`, a usage chunk (empty `choices`)
when `stream_options.include_usage` is set, then `data: [DONE]`.

Timing and faults come from query parameters or top-level body fields (a body field wins):
`ttft_ms` (first token), `itl_ms` (between tokens), `jitter_ms` (each delay drawn uniformly
within +-jitter), `max_tokens` (tokens to send), `error_rate` (0..1, answered with
`error_status` before streaming), `cut_after` (drop the connection after that many tokens),
`ts` (add `fanin_sent_ns`, the server's wall clock at send, to every token chunk),
`max_concurrency`: requests carrying the same value share a server-side limit of that many
generating at once; the rest queue before their first token, which makes a knee at a known
concurrency; `tokens_per_chunk` (send that many tokens in each content chunk, as a server
batching its output does; the usage still counts every token), `role_chunk` (0: no role-only
first chunk) and `error_after` (after that many tokens, an error inside the stream instead of
the rest). The usage's prompt tokens are the prompt's whitespace-separated words."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Mapping

import orjson
from aiohttp import web

from .params import BadParameter, get_float, get_int, get_opt_int
from .stats import open_stream_scope

__all__ = ["add_openai_routes", "OpenAIParams", "token_text", "prompt_words", "chunk_texts", "concurrency_limit"]

PARAMS = ("ttft_ms", "itl_ms", "jitter_ms", "max_tokens", "error_rate", "error_status", "cut_after", "ts",
          "max_concurrency", "tokens_per_chunk", "role_chunk", "error_after")
_LIMITS = web.AppKey("openai_limits", dict)
_RNG = web.AppKey("openai_rng", random.Random)
MAX_TOKENS_DEFAULT = 16
MAX_TOKENS_LIMIT = 1_000_000


def token_text(index: int) -> str:
    """The text of token `index` (deterministic, so tests can check what arrived)."""
    return f"t{index} "


class OpenAIParams:
    """The timing and fault knobs of one request, parsed from the query and the body."""

    __slots__ = ("ttft", "itl", "jitter", "max_tokens", "error_rate", "error_status", "cut_after",
                 "ts", "max_concurrency", "tokens_per_chunk", "role_chunk", "error_after")

    @classmethod
    def parse(cls, query: Mapping[str, str], body: dict[str, Any]) -> "OpenAIParams":
        values = dict(query)
        for name in PARAMS:
            if name in body and body[name] is not None and not isinstance(body[name], (dict, list)):
                value = body[name]
                values[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        p = cls()
        p.ttft = get_float(values, "ttft_ms", 20.0) / 1000
        p.itl = get_float(values, "itl_ms", 10.0) / 1000
        p.jitter = get_float(values, "jitter_ms", 0.0) / 1000
        p.max_tokens = get_int(values, "max_tokens", MAX_TOKENS_DEFAULT, maximum=MAX_TOKENS_LIMIT)
        p.error_rate = get_float(values, "error_rate", 0.0)
        if p.error_rate > 1:
            raise BadParameter(f"error_rate must be between 0 and 1, got {p.error_rate:g}")
        p.error_status = get_int(values, "error_status", 500)
        if not 400 <= p.error_status <= 599:
            raise BadParameter(f"error_status must be a 4xx or 5xx code, got {p.error_status}")
        p.cut_after = get_opt_int(values, "cut_after")
        p.ts = values.get("ts", "0") not in ("", "0", "false")
        p.max_concurrency = get_opt_int(values, "max_concurrency")
        if p.max_concurrency == 0:
            raise BadParameter("max_concurrency must be at least 1")
        p.tokens_per_chunk = get_int(values, "tokens_per_chunk", 1, maximum=MAX_TOKENS_LIMIT)
        if p.tokens_per_chunk < 1:
            raise BadParameter("tokens_per_chunk must be at least 1")
        p.role_chunk = values.get("role_chunk", "1") not in ("", "0", "false")
        p.error_after = get_opt_int(values, "error_after")
        return p

    def delay(self, base: float, rng: random.Random) -> float:
        if not self.jitter:
            return base
        return max(0.0, base + rng.uniform(-self.jitter, self.jitter))


def token_chunks(p: OpenAIParams) -> list[tuple[int, str]]:
    """(first token index, text) of each content chunk: `tokens_per_chunk` tokens a chunk."""
    return [(i, chunk_texts(i, min(p.tokens_per_chunk, p.max_tokens - i)))
            for i in range(0, p.max_tokens, p.tokens_per_chunk)]


async def paced_chunks(p: OpenAIParams, rng: random.Random) -> AsyncIterator[tuple[int, str]]:
    """The answer's chunks at the configured pace, as both stand-in LLMs send them: TTFT
    before the first chunk, ITL before each next one."""
    await asyncio.sleep(p.delay(p.ttft, rng))
    for index, text in token_chunks(p):
        if index:
            await asyncio.sleep(p.delay(p.itl, rng))
        yield index, text


def fault_at(p: OpenAIParams, index: int, request: web.Request) -> str | None:
    """The injected fault due before the chunk starting at token `index`: "cut" (the
    connection is closed here, mid-answer), "error" (the caller sends its API's error
    event), or None."""
    if p.cut_after is not None and index >= p.cut_after:
        if request.transport is not None:
            request.transport.close()
        return "cut"
    if p.error_after is not None and index >= p.error_after:
        return "error"
    return None


def chunk_texts(first: int, n: int) -> str:
    return "".join(token_text(first + j) for j in range(n))


def prompt_words(body: dict[str, Any]) -> int:
    """The prompt's size in whitespace-separated words (the stand-in's prompt tokens)."""
    messages = body.get("messages")
    texts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(part.get("text", "") for part in content
                             if isinstance(part, dict) and isinstance(part.get("text"), str))
    for key in ("prompt", "system"):
        if isinstance(body.get(key), str):
            texts.append(body[key])
    return sum(len(text.split()) for text in texts)


def concurrency_limit(app: web.Application, p: OpenAIParams) -> asyncio.Semaphore | None:
    if not p.max_concurrency:
        return None
    return app[_LIMITS].setdefault(p.max_concurrency, asyncio.Semaphore(p.max_concurrency))


async def json_object_body(request: web.Request) -> tuple[dict[str, Any] | None, str]:
    """The request's JSON object body, or None and the one-line reason it is not one (both
    stand-in LLM APIs answer that with a 400 in their own error shape)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None, "The request body is not valid JSON."
    if not isinstance(body, dict):
        return None, "The request body must be a JSON object."
    return body, ""


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def _chunk(base: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body, problem = await json_object_body(request)
    if body is None:
        return _error(400, problem)
    try:
        p = OpenAIParams.parse(request.query, body)
    except BadParameter as exc:
        return _error(400, str(exc))
    rng = request.app[_RNG]
    if p.error_rate and rng.random() < p.error_rate:
        return _error(p.error_status, "Injected failure (error_rate).", "server_error")
    model = str(body.get("model") or "fanin-test")
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    if not body.get("stream"):
        text = "".join(token_text(i) for i in range(p.max_tokens))
        prompt = prompt_words(body)
        return web.json_response({**base, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": p.max_tokens,
                      "total_tokens": prompt + p.max_tokens}})
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    usage_extra = {"usage": None} if include_usage else {}

    limit = concurrency_limit(request.app, p)
    with open_stream_scope(request):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        write = response.write
        if p.role_chunk:
            await write(_chunk(base, {"role": "assistant", "content": ""}, **usage_extra))
        if limit is not None:
            await limit.acquire()   # queued behind the server's generating requests
        try:
            async for index, text in paced_chunks(p, rng):
                fault = fault_at(p, index, request)
                if fault == "cut":
                    return response
                if fault == "error":
                    error = {"error": {"message": "Injected failure (error_after).", "type": "server_error",
                                       "code": 500}}
                    await write(b"data: " + orjson.dumps(error) + b"\n\n")
                    await write(b"data: [DONE]\n\n")
                    await response.write_eof()
                    return response
                extra = {**usage_extra, **({"fanin_sent_ns": time.time_ns()} if p.ts else {})}
                delta = {"content": text} if index or p.role_chunk else {"role": "assistant", "content": text}
                await write(_chunk(base, delta, **extra))
        finally:
            if limit is not None:
                limit.release()
        await write(_chunk(base, {}, "length", **usage_extra))
        if include_usage:
            prompt = prompt_words(body)
            usage = {"prompt_tokens": prompt, "completion_tokens": p.max_tokens, "total_tokens": prompt + p.max_tokens}
            await write(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        await write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def add_openai_routes(app: web.Application, *, seed: int | None = None) -> web.Application:
    """Register `POST /v1/chat/completions` on `app` (before it starts)."""
    app[_LIMITS] = {}
    app[_RNG] = random.Random(seed)
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app
