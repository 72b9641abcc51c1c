"""The `dify_chatflow_sse` tool without Dify: call a Dify app's streaming API with its key,
stream only the answer, and end with the ids, usage, outputs, files and citations.

Every app type: chat, agent, New Agent and chatflow apps (`chatflow`, POST /chat-messages),
workflow apps (`workflow`, POST /workflows/run) and text generators (`completion`, POST
/completion-messages). The events are folded by tools/dify_answer.py (shared with the app
picker). The POST is re-sent only when Dify proved it did not run it (a 429
`too_many_requests`); a dropped run is followed again with
`GET /workflow/{workflow_run_id}/events` where the Dify version has it. When the tool gives
up early it asks the app to stop, so the run does not keep spending tokens. Every such
decision is made on the failure's typed kind, HTTP status and Dify's error code
(tools/dify_errors.py), never on a message's wording.

A second call answers a paused run's human input form and streams the rest
(tools/dify_human_input.py); `remember_conversation` keeps the user's conversation
(tools/conversations.py); `show_progress` yields ("progress", lines) beside the text.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from fanin.embed.bridge import BridgeDeadline
from fanin.embed.netguard import AddressGuard, guard_from_env
from fanin.errors import FaninError, FailureKind
from fanin.events import SourceError
from fanin.redact import Secrets
from fanin.stream import Request, StreamConfig

from tools import params as P
from tools.common import MAX_DURATION_CAP, ToolFailure, new_fanin, run_fanin, split_text
from tools.conversations import ConversationStore, app_scope_for_key, conversation_key
from tools.dify_human_input import call_app, choose_action, fetch_form, submit_form
from tools.dify_answer import AnswerFolder, DifyAppError
from tools.dify_errors import RefusalLog, explain
from tools.dify_result import result_outputs

__all__ = ["ChatflowPlan", "plan_chatflow", "run_chatflow", "APP_TYPES"]

APP_TYPES = ("chatflow", "workflow", "completion")
_ALIASES = {"chat": "chatflow", "advanced-chat": "chatflow", "agent": "chatflow", "agent-chat": "chatflow",
            "chatbot": "chatflow"}
STOP_TIMEOUT = 5.0      # seconds for the stop request: best effort, never holds the tool up for long
MAX_RESUMES = 2
_ENDED_EARLY = "the stream ended before the app reported the end of its answer"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")   # ids the app sent, before they go into a URL path
_STOP_PATHS = {"chatflow": "/chat-messages/{task_id}/stop", "workflow": "/workflows/tasks/{task_id}/stop",
               "completion": "/completion-messages/{task_id}/stop"}


@dataclass
class ChatflowPlan:
    request: Request
    config: StreamConfig
    max_duration: float
    app_type: str
    api_key: str
    api_base: str = ""
    user: str = ""
    show_progress: bool = False
    # human input: answer a paused run's form (form_token), or follow a paused run (workflow_run_id)
    form_token: str = ""
    form_inputs: dict[str, Any] = field(default_factory=dict)
    form_action: str = ""
    workflow_run_id: str = ""
    # conversations: where the conversation_id came from (input | memory | new) and its store key
    conversation_from: str = "new"
    memory_key: str = ""


def plan_chatflow(p: dict[str, Any], user_id: str | None, store: ConversationStore | None = None) -> ChatflowPlan:
    """Validate every parameter up front (one-line ValueError). With `remember_conversation`,
    `store` supplies the user's last conversation with this app unless conversation_id is given."""
    api_base = P.text(p, "api_base").strip().rstrip("/")
    if not api_base:
        raise ValueError("api_base: give the app's API base URL, e.g. https://api.dify.ai/v1")
    if not api_base.lower().startswith(("http://", "https://")):
        raise ValueError("api_base: must start with http:// or https://")
    api_key = P.text(p, "api_key").strip()
    if not api_key:
        raise ValueError("api_key: give the app's API key (app-...)")
    raw_type = P.text(p, "app_type").strip().lower()
    app_type = P.choice({"app_type": _ALIASES.get(raw_type, raw_type)}, "app_type", APP_TYPES, "chatflow")
    query = P.text(p, "query")
    inputs = P.parse_json_object(p.get("inputs"), "inputs")
    user = P.text(p, "user").strip() or (user_id or "") or "dify-plugin-sse-fanin"
    form_token = P.text(p, "form_token").strip()
    run_id = P.text(p, "workflow_run_id").strip()
    if run_id and not _SAFE_ID.fullmatch(run_id):
        raise ValueError("workflow_run_id: not a Dify run id (letters, digits, - and _ only)")
    if (form_token or run_id) and app_type == "completion":
        raise ValueError("form_token: a text generator (completion) app has no human input; use chatflow or workflow")
    if form_token and not run_id:
        raise ValueError("workflow_run_id: give the paused run's workflow_run_id together with form_token")
    remember = P.flag(p, "remember_conversation", False)
    conversation_id = P.text(p, "conversation_id").strip()
    conversation_from, memory_key = ("input" if conversation_id else "new"), ""
    if remember and app_type == "chatflow":
        memory_key = conversation_key(app_scope_for_key(api_base, api_key), user)
        if not conversation_id and store is not None:
            conversation_id = store.get(memory_key) or ""
            conversation_from = "memory" if conversation_id else "new"
    resuming = bool(form_token or run_id)
    if app_type == "chatflow":
        if not query.strip() and not resuming:
            raise ValueError("query: a chatflow / chat / agent app needs a query")
        url = f"{api_base}/chat-messages"
        body: dict[str, Any] = {"inputs": inputs, "query": query, "response_mode": "streaming", "user": user}
        if conversation_id:
            body["conversation_id"] = conversation_id
    else:
        url = f"{api_base}/workflows/run" if app_type == "workflow" else f"{api_base}/completion-messages"
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
                        app_type, api_key, api_base, user, show_progress=P.flag(p, "show_progress", False),
                        form_token=form_token, form_inputs=P.parse_json_object(p.get("form_inputs"), "form_inputs"),
                        form_action=P.text(p, "form_action").strip(), workflow_run_id=run_id,
                        conversation_from=conversation_from, memory_key=memory_key)


@dataclass
class _Leg:
    """How one connection to the app ended."""

    kind: str = "ended"       # ended | dropped | idle | max_duration | deadline | failed | app_error
    error: str = ""           # the engine's line, for people: quoted, never matched
    failure: FailureKind | None = None
    http_status: int | None = None
    duration: float | None = None

    def failed_with(self, failure: SourceError | Any, got_events: bool) -> None:
        """Take the engine's failure (a SourceError or SourceReport): decided on its kind."""
        self.failure, self.http_status = failure.kind, failure.http_status
        self.error = failure.error or "the request failed"
        self.kind = _classify(failure.kind, failure.http_status, got_events)


_CUT = frozenset({FailureKind.TRUNCATED, FailureKind.PROTOCOL})


def _classify(kind: FailureKind | None, http_status: int | None, got_events: bool) -> str:
    """idle (the idle timeout), dropped (the connection ended mid-run: worth a resume) or failed."""
    if kind == FailureKind.IDLE:
        return "idle"
    if kind in _CUT or (kind == FailureKind.NETWORK and got_events):
        return "dropped"
    if got_events and http_status is None:   # any other break after the stream had begun
        return "dropped"
    return "failed"


def _follow(request: Request, config: StreamConfig, folder: AnswerFolder, guard: AddressGuard,
            max_duration: float, secrets: Secrets, leg: _Leg, refusals: RefusalLog) -> Iterator[tuple]:
    """One connection: fold its events into `folder`, yield live text; `leg` says how it ended."""
    try:
        fan = new_fanin([request], config, guard=guard, max_duration=max_duration,
                        connector_factory=refusals.session)
    except (FaninError, ValueError) as exc:
        raise ToolFailure(secrets.scrub(str(exc))) from None
    deadline = time.monotonic() + max_duration + config.connect_timeout + 15
    got_events = False
    try:
        with contextlib.closing(run_fanin(fan, deadline)) as batches:
            for batch in batches:
                live: list[str] = []
                for item in batch:
                    if type(item) is SourceError:
                        leg.failed_with(item, got_events)
                        continue
                    got_events = True
                    try:
                        payload = orjson.loads(item.data)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(payload, dict):
                        payload.setdefault("event", item.event_type)
                        try:
                            live.append(folder.feed(payload))
                        except DifyAppError as exc:
                            leg.kind, leg.error = "app_error", str(exc)
                            break
                if folder.progress:
                    yield ("progress", "".join(folder.progress))
                    folder.progress.clear()
                text = "".join(live)
                if text:
                    for chunk in split_text(text):
                        yield ("text", chunk)
                if leg.kind == "app_error":
                    break
    except BridgeDeadline:
        leg.kind, leg.error = "deadline", "stopped: the run went past max_duration plus its grace period"
    except FaninError as exc:
        raise ToolFailure(secrets.scrub(str(exc))) from None
    summary = fan.summary
    if summary is not None:
        leg.duration = summary.connection_duration
        if summary.stopped_by == "max_duration" and leg.kind == "ended":
            leg.kind = "max_duration"
        if leg.kind == "ended" and summary.status == "failed":
            leg.failed_with(next(r for r in summary.sources if r.status == "failed"), got_events)
    if leg.kind == "ended" and not folder.finished:
        leg.kind, leg.error = "dropped", _ENDED_EARLY


def stop_remote(plan: ChatflowPlan, task_id: str, guard: AddressGuard) -> int | None:
    """Ask the app to stop its run (same `user`, short timeout); best effort, never raises.
    The stop's HTTP status (0 when it could not be sent), None when there was no run to stop."""
    if not _SAFE_ID.fullmatch(task_id):
        return None
    path = _STOP_PATHS[plan.app_type].format(task_id=task_id)
    try:
        return call_app(plan.api_base, plan.api_key, "POST", path, guard, body={"user": plan.user},
                        timeout=STOP_TIMEOUT)[0]
    except ToolFailure:  # the stop is a courtesy to the app; the tool's own outcome stands
        return 0


def _resume_request(plan: ChatflowPlan, run_id: str, *, after_pause: bool = False) -> Request:
    params = [("user", plan.user)] + ([("continue_on_pause", "true")] if after_pause else [])
    return Request(url=f"{plan.api_base}/workflow/{run_id}/events", method="GET", params=params,
                   auth_type="bearer", auth_token=plan.api_key)


def _first_request(plan: ChatflowPlan, guard: AddressGuard) -> Request:
    """The app's run, or (human input) the answer to a paused run's form and then that run's
    stream from the pause on."""
    if plan.form_token:
        form = fetch_form(plan.api_base, plan.api_key, plan.form_token, guard)
        action = choose_action(form, plan.form_action)
        submit_form(plan.api_base, plan.api_key, plan.form_token, plan.form_inputs, action, plan.user, guard)
    if plan.form_token or plan.workflow_run_id:
        return _resume_request(plan, plan.workflow_run_id, after_pause=True)
    return plan.request


def _without_conversation(request: Request) -> Request:
    body = {k: v for k, v in request.json.items() if k != "conversation_id"}
    return replace(request, json=body)


def _can_resume(plan: ChatflowPlan, folder: AnswerFolder, leg: _Leg, resumes: int) -> bool:
    """A chatflow or workflow run that dropped before its end, with a run id to follow."""
    return (leg.kind == "dropped" and plan.app_type != "completion" and not folder.finished
            and resumes < MAX_RESUMES and bool(_SAFE_ID.fullmatch(folder.ids["workflow_run_id"])))


def run_chatflow(plan: ChatflowPlan, *, guard: AddressGuard | None = None,
                 store: ConversationStore | None = None) -> Iterator[tuple]:
    """Live text ("text", piece), progress lines ("progress", lines) with show_progress, then
    the closing variables and summary. `store` remembers the conversation (remember_conversation)."""
    guard = guard or guard_from_env()
    secrets = plan.request.secrets  # the engine's one secrets boundary (fanin/redact.py)
    folder = AnswerFolder(plan.app_type, track_progress=plan.show_progress)
    folder.ids["workflow_run_id"] = plan.workflow_run_id
    refusals = RefusalLog(secrets)
    started = time.monotonic()
    settled = False
    stopped: int | None = None
    conversation_from = plan.conversation_from
    try:
        try:
            request = _first_request(plan, guard)
        except ToolFailure as exc:   # a form call's refusal may quote what the server was sent
            raise ToolFailure(secrets.scrub(str(exc))) from None
        leg = _Leg()
        yield from _follow(request, plan.config, folder, guard, plan.max_duration, secrets, leg, refusals)
        if (leg.kind == "failed" and leg.http_status == 404 and conversation_from == "memory" and refusals.last
                and refusals.last.code == "not_found"):
            # the remembered conversation is gone in Dify (a 404 proves nothing ran): start a new one
            if store is not None:
                store.forget(plan.memory_key)
            conversation_from, leg = "new (the remembered one no longer exists)", _Leg()
            yield from _follow(_without_conversation(plan.request), plan.config, folder, guard, plan.max_duration,
                               secrets, leg, refusals)
        first = leg
        resumes = 0
        while _can_resume(plan, folder, leg, resumes):
            left = plan.max_duration - (time.monotonic() - started)
            if left < 1:
                break
            resumes += 1
            folder.resume()
            again = _Leg()
            yield from _follow(_resume_request(plan, folder.ids["workflow_run_id"]), plan.config, folder, guard,
                               left, secrets, again, refusals)
            if again.kind == "failed":   # e.g. 404: this Dify has no resume endpoint; keep the first outcome
                leg = first
                break
            leg = again
        if leg.kind in ("idle", "max_duration", "deadline") and not folder.finished:
            stopped = stop_remote(plan, folder.ids["task_id"], guard)
        settled = True
    finally:
        if not settled and not folder.finished:   # the generator was closed (the user stopped the tool)
            stop_remote(plan, folder.ids["task_id"], guard)
    if leg.kind == "app_error":
        raise ToolFailure(secrets.scrub(leg.error))
    if leg.kind in ("failed", "idle") or (leg.kind == "dropped" and leg.error != _ENDED_EARLY):
        retried = max(refusals.seen - 1, 0) if leg.http_status == 429 or leg.failure == FailureKind.HTTP_429 else 0
        raise ToolFailure(secrets.scrub(explain(leg.failure, leg.http_status, refusals.last, leg.error,
                                                plan.app_type, retried=retried)))
    owed = folder.settle()
    if owed:
        for chunk in split_text(owed):
            yield ("text", chunk)
    if folder.progress:
        yield ("progress", "".join(folder.progress))
    error = ""
    if leg.kind == "max_duration":
        error = f"stopped after max_duration ({plan.max_duration:g}s) before the app finished"
    elif leg.kind == "deadline":
        error = leg.error
    elif not folder.finished:
        error = _ENDED_EARLY
    form: dict[str, Any] = {}
    if folder.status == "paused" and folder.form.get("form_token"):
        with contextlib.suppress(ToolFailure, ValueError):   # the pause stands even when the form cannot be read
            form = fetch_form(plan.api_base, plan.api_key, str(folder.form["form_token"]), guard)
    extra: dict[str, Any] = {}
    if resumes:
        extra["resumed"] = resumes
    if stopped is not None:
        extra.update(stop_requested=True, stop_status=stopped)
    if plan.form_token:
        extra["form_submitted"] = True
    if plan.memory_key:
        extra["conversation_from"] = conversation_from
        if store is not None and folder.ids["conversation_id"]:
            store.set(plan.memory_key, folder.ids["conversation_id"])
            extra["conversation_remembered"] = True
    yield from result_outputs(folder, app_type=plan.app_type, error=error, connection_duration=leg.duration,
                              extra=extra or None, form=form)
