"""The streaming APIs request mode understands (`--api`, or told by the URL's path): where
each one puts the streamed text, the server's token counts and an error inside the stream.

- openai: chat completions (and legacy completions) chunks, `choices[0].delta.content`
  (`choices[0].text`), `usage.completion_tokens` / `usage.prompt_tokens` in the usage chunk,
  `{"error": ...}` as a chunk, `data: [DONE]` at the end;
- anthropic: Messages streaming, text in `content_block_delta` events whose delta is a
  `text_delta`, input tokens in `message_start`, output tokens (cumulative) in
  `message_delta`, an `error` event; `ping` and the block start/stop events carry no text;
- dify: app events, text in `message` / `agent_message` (`answer`) and workflow
  `text_chunk` (`data.text`), usage in `message_end` (`metadata.usage`), an `error` event.

A chunk whose text is empty (OpenAI's role-only first delta, an empty block start) is not
content, so time to first token is the first chunk that carries text."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from fanin.errors import UsageError

__all__ = ["APIS", "detect_api", "api_for_urls", "ApiReader", "reader_for", "DEFAULT_STOP_ON"]

APIS = ("openai", "anthropic", "dify")
DEFAULT_STOP_ON = {"openai": "[DONE]"}

_SUFFIXES = (
    ("/chat/completions", "openai"),
    ("/completions", "openai"),
    ("/messages", "anthropic"),
    ("/chat-messages", "dify"),
    ("/completion-messages", "dify"),
    ("/workflows/run", "dify"),
)

Parsed = tuple[str | None, int | None, int | None, str | None]  # text, output usage, input usage, error
_NOTHING: Parsed = (None, None, None, None)


def detect_api(url: str) -> str | None:
    """The API a URL's path names (None: not one of them)."""
    path = urlsplit(url).path.rstrip("/")
    for suffix, api in _SUFFIXES:
        if path.endswith(suffix):
            return api
    return None


def api_for_urls(urls: list[str], given: str | None, fields_named: bool = False) -> str | None:
    """--api, else the API every URL's path names. URLs naming different APIs are an error,
    unless --extract / --usage-field name the fields (`fields_named`): then none is used."""
    if given is not None:
        return given
    found = {detect_api(url) for url in urls}
    if len(found) > 1 and fields_named:
        return None
    if len(found) > 1:
        named = ", ".join(sorted(a or "none" for a in found))
        raise UsageError(f"the URLs name different APIs ({named}); give --api openai|anthropic|dify")
    return found.pop() if found else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _message(error: Any) -> str:
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        return ": ".join(str(x) for x in (kind, message) if x) or "error"
    return str(error)[:200] or "error"


class ApiReader:
    """Reads one event of one API; `read(data)` returns (text, output usage, input usage,
    error message), any of them None."""

    name = ""

    def read(self, data: str) -> Parsed:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:  # [DONE], keep-alives, plain text
            return _NOTHING
        if not isinstance(obj, dict):
            return _NOTHING
        return self.parse(obj)

    def parse(self, obj: dict[str, Any]) -> Parsed:  # pragma: no cover - each API has its own
        raise NotImplementedError


class OpenAIReader(ApiReader):
    name = "openai"

    def parse(self, obj: dict[str, Any]) -> Parsed:
        if "error" in obj and obj["error"] is not None:
            return None, None, None, _message(obj["error"])
        text = None
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            text = _text(delta.get("content")) if isinstance(delta, dict) else _text(choice.get("text"))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            return text, _int(usage.get("completion_tokens")), _int(usage.get("prompt_tokens")), None
        return text, None, None, None


class AnthropicReader(ApiReader):
    name = "anthropic"

    def parse(self, obj: dict[str, Any]) -> Parsed:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                return _text(delta.get("text")), None, None, None
            return _NOTHING
        if kind == "message_delta":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                return None, _int(usage.get("output_tokens")), _int(usage.get("input_tokens")), None
            return _NOTHING
        if kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):  # its output_tokens is a placeholder: message_delta has the count
                return None, None, _int(usage.get("input_tokens")), None
            return _NOTHING
        if kind == "error":
            return None, None, None, _message(obj.get("error"))
        return _NOTHING


class DifyReader(ApiReader):
    name = "dify"

    def parse(self, obj: dict[str, Any]) -> Parsed:
        event = obj.get("event")
        if event in ("message", "agent_message"):
            return _text(obj.get("answer")), None, None, None
        if event == "text_chunk":
            data = obj.get("data")
            return (_text(data.get("text")) if isinstance(data, dict) else None), None, None, None
        if event == "message_end":
            metadata = obj.get("metadata")
            usage = metadata.get("usage") if isinstance(metadata, dict) else None
            if isinstance(usage, dict):
                return None, _int(usage.get("completion_tokens")), _int(usage.get("prompt_tokens")), None
            return _NOTHING
        if event == "error":
            return None, None, None, ": ".join(str(obj[k]) for k in ("code", "message") if obj.get(k)) or "error"
        return _NOTHING


_READERS = {"openai": OpenAIReader, "anthropic": AnthropicReader, "dify": DifyReader}


def reader_for(api: str | None) -> ApiReader | None:
    return _READERS[api]() if api else None
