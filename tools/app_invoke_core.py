"""The `dify_app` tool without Dify: call an app of the same workspace picked in an app
selector (Dify's reverse invocation) and stream its answer.

The SDK's `session.app.*.invoke(..., response_mode="streaming")` yields the same event dicts
as the service API, so they go through the same answer engine (tools/dify_answer.py) and
the same closing outputs (tools/dify_result.py) as `dify_chatflow_sse`. The event source is
passed in as a callable, so this is tested without the SDK; the Tool class supplies the
SDK's call.

What the reverse invocation cannot do in dify_plugin 0.10.2 (documented in the tool's
description and the README): Dify runs the app as the session's user and ignores a
plugin-given `user`; it has no files field; it cannot stop a run, resume a dropped stream
or answer a human input form (no such invocation); the daemon cuts one call after about
240 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tools import params as P
from tools.common import ToolFailure, split_text
from tools.conversations import ConversationStore, conversation_key
from tools.dify_answer import AnswerFolder, DifyAppError
from tools.dify_result import result_outputs

__all__ = ["AppCall", "plan_app_call", "run_app_call", "APP_CALL_TYPES", "DAEMON_CALL_CAP"]

APP_CALL_TYPES = ("auto", "chatflow", "workflow", "completion")
DAEMON_CALL_CAP = 240.0   # the plugin daemon closes one reverse call's stream after this (default)


@dataclass
class AppCall:
    app_id: str
    app_type: str          # auto | chatflow | workflow | completion
    query: str
    inputs: dict[str, Any]
    conversation_id: str | None
    max_duration: float
    ignored_files: int = 0
    show_progress: bool = False
    conversation_from: str = "new"    # input | memory | new
    memory_key: str = ""

    @property
    def method(self) -> str:
        """Which SDK invocation carries the call (all send Dify the same `app` request)."""
        if self.app_type == "auto":
            return "chat" if self.query.strip() else "workflow"
        return {"chatflow": "chat", "workflow": "workflow", "completion": "completion"}[self.app_type]


def plan_app_call(p: dict[str, Any], store: ConversationStore | None = None, user_id: str | None = None) -> AppCall:
    """Merge the picker's value `{"app_id", "inputs", "files"}` with the tool's own query,
    inputs (they win over the picker's) and conversation_id. One-line ValueError when bad.
    With remember_conversation, `store` gives this user's last conversation with the app
    (an explicit conversation_id wins)."""
    picked = p.get("app")
    if isinstance(picked, str) and picked.strip().startswith("{"):
        picked = P.parse_json_object(picked, "app")
    if not isinstance(picked, dict) or not isinstance(picked.get("app_id"), str) or not picked["app_id"].strip():
        raise ValueError("app: pick an app in the app selector")
    picked_inputs = picked.get("inputs") if isinstance(picked.get("inputs"), dict) else {}
    inputs = {**picked_inputs, **P.parse_json_object(p.get("inputs"), "inputs")}
    app_type = P.choice(p, "app_type", APP_CALL_TYPES, "auto")
    query = P.text(p, "query")
    if query.strip() and "query" not in inputs and app_type in ("auto", "workflow", "completion"):
        inputs["query"] = query
    if app_type == "chatflow" and not query.strip():
        raise ValueError("query: a chatflow / chat / agent app needs a query")
    files = picked.get("files")
    app_id = picked["app_id"].strip()
    conversation_id = P.text(p, "conversation_id").strip() or None
    conversation_from, memory_key = ("input" if conversation_id else "new"), ""
    if P.flag(p, "remember_conversation", False) and app_type in ("auto", "chatflow") and query.strip():
        memory_key = conversation_key(f"app:{app_id}", user_id or "")
        if conversation_id is None and store is not None:
            conversation_id = store.get(memory_key)
            conversation_from = "memory" if conversation_id else "new"
    return AppCall(
        app_id=app_id, app_type=app_type, query=query, inputs=inputs, conversation_id=conversation_id,
        max_duration=P.number(p, "max_duration", DAEMON_CALL_CAP - 10, maximum=DAEMON_CALL_CAP),
        ignored_files=len(files) if isinstance(files, list) else 0,
        show_progress=P.flag(p, "show_progress", False), conversation_from=conversation_from, memory_key=memory_key,
    )


def _folder_type(call: AppCall) -> str:
    return "chatflow" if call.method == "chat" else call.method


def run_app_call(call: AppCall, events: Callable[[AppCall], Iterable[dict[str, Any]]],
                 store: ConversationStore | None = None) -> Iterator[tuple]:
    """Fold the events of `events(call)` (the SDK's streaming invoke) into live text,
    progress lines (show_progress) and the closing outputs."""
    folder = AnswerFolder(_folder_type(call), track_progress=call.show_progress)
    started = time.monotonic()
    error = ""
    stream = iter(())
    try:
        stream = iter(events(call))
        for event in stream:
            if not isinstance(event, dict):
                continue
            try:
                live = folder.feed(event)
            except DifyAppError as exc:
                raise ToolFailure(str(exc)) from None
            if folder.progress:
                yield ("progress", "".join(folder.progress))
                folder.progress.clear()
            for chunk in split_text(live):
                yield ("text", chunk)
            if time.monotonic() - started > call.max_duration and not folder.finished:
                error = f"stopped reading after max_duration ({call.max_duration:g}s); the app run goes on in Dify"
                break
    except ToolFailure:
        raise
    except Exception as exc:  # the SDK raises a bare Exception with the daemon's message
        message = " ".join(str(exc).split()) or type(exc).__name__
        if "permission denied" in message:
            message += " (the plugin's manifest must enable app access)"
        elif "read app failed" in message:
            message += f" (the plugin daemon cuts one app call after about {DAEMON_CALL_CAP:g} s)"
        raise ToolFailure(f"the Dify app call failed: {message[:300]}") from None
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    owed = folder.settle()
    for chunk in split_text(owed):
        yield ("text", chunk)
    if not error and not folder.finished:
        error = "the stream ended before the app reported the end of its answer"
    extra: dict[str, Any] = {"app_id": call.app_id, "invoked_as": call.method}
    if call.ignored_files:
        extra["files_not_passed"] = call.ignored_files
    if call.memory_key:
        extra["conversation_from"] = call.conversation_from
        if store is not None and folder.ids["conversation_id"]:
            store.set(call.memory_key, folder.ids["conversation_id"])
            extra["conversation_remembered"] = True
    yield from result_outputs(folder, app_type=call.app_type, error=error, extra=extra)
