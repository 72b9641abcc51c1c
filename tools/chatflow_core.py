"""The `dify_chatflow_sse` tool without Dify: call a Dify app's streaming API, stream only
the answer, and end with the ids, usage and outputs as variables.

Same output tuples as sse_core. The request is a POST that is never re-sent once events
have arrived (the engine refuses to replay a POST whose stream has no event ids).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from fanin.embed.bridge import BridgeDeadline
from fanin.errors import FaninError
from fanin.events import SourceError
from fanin.embed.netguard import AddressGuard
from fanin.stream import Request, StreamConfig

from tools import params as P
from tools.sse_core import MAX_DURATION_CAP, ToolFailure, _split_text, new_fanin, run_fanin

__all__ = ["ChatflowPlan", "plan_chatflow", "run_chatflow"]

_SKIPPED = frozenset({"ping", "workflow_started", "node_started", "node_finished", "node_retry",
                      "iteration_started", "iteration_next", "iteration_completed", "loop_started",
                      "loop_next", "loop_completed", "parallel_branch_started", "parallel_branch_finished",
                      "agent_thought", "agent_log", "message_file", "tts_message", "tts_message_end"})


@dataclass
class ChatflowPlan:
    request: Request
    config: StreamConfig
    max_duration: float
    app_type: str
    api_key: str


def plan_chatflow(p: dict[str, Any], user_id: str | None) -> ChatflowPlan:
    api_base = P.text(p, "api_base").strip().rstrip("/")
    if not api_base:
        raise ValueError("api_base: give the app's API base URL, e.g. https://api.dify.ai/v1")
    if not api_base.lower().startswith(("http://", "https://")):
        raise ValueError("api_base: must start with http:// or https://")
    api_key = P.text(p, "api_key").strip()
    if not api_key:
        raise ValueError("api_key: give the app's API key (app-...)")
    app_type = P.choice(p, "app_type", ("chatflow", "workflow"), "chatflow")
    query = P.text(p, "query")
    inputs = P.parse_json_object(p.get("inputs"), "inputs")
    user = P.text(p, "user").strip() or (user_id or "") or "dify-plugin-sse-fanin"
    if app_type == "chatflow":
        if not query.strip():
            raise ValueError("query: a chatflow / chat app needs a query")
        url = f"{api_base}/chat-messages"
        body: dict[str, Any] = {"inputs": inputs, "query": query, "response_mode": "streaming", "user": user}
        conversation_id = P.text(p, "conversation_id").strip()
        if conversation_id:
            body["conversation_id"] = conversation_id
    else:
        url = f"{api_base}/workflows/run"
        if query.strip() and "query" not in inputs:
            inputs = {**inputs, "query": query}
        body = {"inputs": inputs, "response_mode": "streaming", "user": user}
    config = StreamConfig(
        connect_timeout=P.number(p, "timeout", 30.0, maximum=MAX_DURATION_CAP),
        idle_timeout=P.number(p, "idle_timeout", None, maximum=MAX_DURATION_CAP, zero_means_none=True),
        retries=2,
        reconnect="never",  # a Dify run is one POST; never replay it
    )
    request = Request(url=url, method="POST", json=body, auth_type="bearer", auth_token=api_key)
    return ChatflowPlan(request, config, P.number(p, "max_duration", 300.0, maximum=MAX_DURATION_CAP),
                        app_type, api_key)


def _explain(error: str, api_base_url: str) -> str:
    """Engine errors in Dify terms."""
    if "HTTP 401" in error or "HTTP 403" in error:
        return f"the Dify app refused the API key ({error})"
    if "HTTP 404" in error:
        return f"no Dify app API at this address; api_base should end in /v1 ({error})"
    if "HTTP 400" in error:
        return f"the Dify app rejected the request; check query, inputs and conversation_id ({error})"
    return error


class _Answer:
    """What the user sees and what the `answer` variable holds, kept equal when possible."""

    def __init__(self) -> None:
        self.streamed = ""

    def add(self, piece: str) -> str:
        self.streamed += piece
        return piece

    def settle(self, final: str) -> str:
        """The live text still owed so the shown text ends as `final`."""
        if final == self.streamed:
            return ""
        if final.startswith(self.streamed):
            return final[len(self.streamed):]
        return ("\n\n" if self.streamed else "") + final


def run_chatflow(plan: ChatflowPlan, *, guard: AddressGuard | None = None) -> Iterator[tuple]:
    try:
        fan = new_fanin([plan.request], plan.config, guard=guard, max_duration=plan.max_duration)
    except (FaninError, ValueError) as exc:
        raise ToolFailure(str(exc)) from None
    deadline = time.monotonic() + plan.max_duration + plan.config.connect_timeout + 15
    shown = _Answer()
    answer_override: str | None = None
    ids = {"conversation_id": "", "message_id": "", "task_id": ""}
    usage: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    finished = False
    failure: str | None = None
    try:
        with contextlib.closing(run_fanin(fan, deadline)) as batches:
            for batch in batches:
                live: list[str] = []
                for item in batch:
                    if type(item) is SourceError:
                        failure = item.error
                        continue
                    try:
                        payload = orjson.loads(item.data)
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(payload, dict):
                        continue
                    kind = payload.get("event") or item.event_type
                    for key in ids:
                        value = payload.get(key)
                        if isinstance(value, str) and value:
                            ids[key] = value
                    if kind in _SKIPPED:
                        continue
                    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
                    if kind in ("message", "agent_message"):
                        piece = payload.get("answer")
                        if isinstance(piece, str) and piece:
                            live.append(shown.add(piece))
                    elif kind == "text_chunk":
                        piece = data.get("text")
                        if isinstance(piece, str) and piece:
                            live.append(shown.add(piece))
                    elif kind == "message_replace":
                        replacement = payload.get("answer")
                        if isinstance(replacement, str):
                            answer_override = replacement
                            live.append(shown.add(shown.settle(replacement)))
                            shown.streamed = replacement
                    elif kind == "message_end":
                        meta = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
                        if isinstance(meta.get("usage"), dict):
                            usage = meta["usage"]
                        ids["message_id"] = payload.get("message_id") or payload.get("id") or ids["message_id"]
                        finished = True
                    elif kind == "workflow_finished":
                        if data.get("status") not in (None, "succeeded", "partial-succeeded"):
                            failure = f"the Dify workflow {data.get('status')}: {data.get('error') or 'no reason given'}"
                            break
                        outputs = data.get("outputs") if isinstance(data.get("outputs"), dict) else {}
                        final = outputs.get("answer")
                        if isinstance(final, str) and final:
                            answer_override = final
                        if not usage and data.get("total_tokens") is not None:
                            usage = {"total_tokens": data.get("total_tokens")}
                        ids["task_id"] = payload.get("task_id") or ids["task_id"]
                        if plan.app_type == "workflow":
                            finished = True
                    elif kind == "error":
                        code = payload.get("code") or "error"
                        failure = f"the Dify app reported an error ({code}): {payload.get('message') or 'no message'}"
                        break
                if live:
                    for chunk in _split_text("".join(live)):
                        yield ("text", chunk)
                if failure:
                    break
    except BridgeDeadline:
        failure = failure or "stopped: the run went past max_duration plus its grace period"
    except FaninError as exc:
        raise ToolFailure(str(exc)) from None
    if failure is None and fan.summary is not None and fan.summary.status == "failed":
        failure = next((r.error for r in fan.summary.sources if r.error), "the request failed")
    if failure:
        # The Dify app's own error text is the server's: mask it with the engine's secrets boundary.
        raise ToolFailure(plan.request.secrets.scrub(_explain(failure, plan.request.display_url)))
    if plan.app_type == "workflow" and answer_override is None and not shown.streamed:
        strings = [v for v in outputs.values() if isinstance(v, str)]
        if len(strings) == 1:
            answer_override = strings[0]
    answer = shown.streamed
    if answer_override is not None:
        owed = shown.settle(answer_override)
        if owed:
            yield ("text", owed)
        answer = answer_override
    status = "completed" if finished else "partial"
    error = "" if finished else "the stream ended before the app reported the end of its answer"
    if fan.summary is not None and fan.summary.stopped_by == "max_duration":
        error = f"stopped after max_duration ({plan.max_duration:g}s) before the app finished"
    yield ("variable", "answer", answer)
    yield ("variable", "conversation_id", ids["conversation_id"])
    yield ("variable", "message_id", ids["message_id"])
    yield ("variable", "task_id", ids["task_id"])
    yield ("variable", "usage", usage)
    yield ("variable", "outputs", outputs)
    yield ("variable", "status", status)
    yield ("variable", "error", error)
    yield ("json", {
        "type": "summary", "status": status, "app_type": plan.app_type, "answer": answer,
        "conversation_id": ids["conversation_id"], "message_id": ids["message_id"], "task_id": ids["task_id"],
        "usage": usage, "outputs": outputs, "error": error or None,
        "connection_duration": fan.summary.connection_duration if fan.summary else None,
    })
