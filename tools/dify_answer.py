"""Fold a Dify app's stream events into one answer (sans-IO: event dicts in, text out).

Both ways of calling an app use it: the service API with a key (chatflow_core) and the app
picker (app_invoke_core), which streams the same event dicts back. Rules, from Dify's API
docs and server code:

- the answer is what streams: `message` (chat, chatflow, completion), `agent_message`
  (agents) or `text_chunk` (workflow); whichever kind streams first is the answer channel,
  so an app that sends both never shows it twice;
- a New Agent app streams `agent_message` deltas, then one closing `message` with the whole
  answer: that message *is* the answer, not more text;
- only `message_replace` and `text_replace` replace what was shown;
- `workflow_finished.data.outputs.answer` is used only when nothing streamed;
- `message_end` and `workflow_finished` may come in either order; both are read;
- a resumed stream (after a drop) may replay what was already shown or go on from the
  drop: `resume()` handles both without showing anything twice;
- human input: `human_input_required` (its payload may be empty, a known Dify bug) and
  `workflow_paused` end a stream; a resumed run reports `human_input_form_filled` or
  `human_input_form_timeout`;
- with `track_progress`, node, iteration, loop and agent-log events become one compact JSON
  line each in `progress` (drained by the caller), never part of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["AnswerFolder", "DifyAppError"]

_CHAT_TERMINAL = "message_end"
_FAILED_NODE = frozenset({"failed", "exception"})
PROGRESS_EVENTS = frozenset({
    "node_started", "node_finished", "node_retry", "iteration_started", "iteration_next", "iteration_completed",
    "loop_started", "loop_next", "loop_completed", "agent_log"})
_PROGRESS_FIELDS = ("node_id", "node_type", "title", "label", "index", "status", "retry_index", "elapsed_time",
                    "error", "iteration_id", "loop_id")


class DifyAppError(Exception):
    """The app reported a failure in its stream (an `error` event or a failed run)."""


def _squash(text: str) -> str:
    return "".join(text.split())


def _owed(shown: str, target: str) -> str | None:
    """What to append to `shown` so the reader sees `target`; whitespace differences are
    forgiven (Dify joins Answer nodes with newlines). None when `target` is other text."""
    if target.startswith(shown):
        return target[len(shown):]
    wanted = _squash(shown)
    if not _squash(target).startswith(wanted):
        return None
    count, position = 0, 0
    while count < len(wanted) and position < len(target):
        if not target[position].isspace():
            count += 1
        position += 1
    return target[position:]


@dataclass
class AnswerFolder:
    """State of one app run. `feed(event)` returns the live text owed to the reader."""

    app_type: str = "chatflow"          # chatflow (any /chat-messages app) | workflow | completion
    ids: dict[str, str] = field(default_factory=lambda: {
        "conversation_id": "", "message_id": "", "task_id": "", "workflow_run_id": ""})
    usage: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""
    form: dict[str, Any] = field(default_factory=dict)
    form_requested: bool = False        # a human_input_required arrived (its payload may be empty)
    form_filled: dict[str, Any] = field(default_factory=dict)
    form_timed_out: dict[str, Any] = field(default_factory=dict)
    track_progress: bool = False
    progress: list = field(default_factory=list)   # compact JSON lines, drained by the caller
    run_status: str = ""                # workflow_finished / workflow_paused status
    message_ended: bool = False
    paused: bool = False
    failed_nodes: int = 0
    exceptions_count: int | None = None
    run_error: str = ""
    _channel: str = ""                  # message | agent | text_chunk
    _prior: str | None = None           # the answer before a resume
    _closing_message: bool = False
    _file_keys: set = field(default_factory=set)
    # The answer as streamed (and replaced) on this connection, and what the reader was
    # shown, kept as lists of pieces: joining a growing string on every token would make a
    # long answer quadratic. While the two are equal (the common case), a streamed piece
    # is shown as it is without comparing anything.
    _stream_parts: list = field(default_factory=list)
    _shown_parts: list = field(default_factory=list)
    _synced: bool = True
    _appended: str | None = None
    _reset: bool = False                # the last event replaced the answer
    _stream_len: int = 0
    _replay_ok: bool = False            # after resume(): the new stream still matches the old text

    @property
    def _stream(self) -> str:
        if len(self._stream_parts) > 1:
            self._stream_parts[:] = ["".join(self._stream_parts)]
        return self._stream_parts[0] if self._stream_parts else ""

    @_stream.setter
    def _stream(self, text: str) -> None:
        self._stream_parts[:] = [text] if text else []
        self._stream_len = len(text)
        self._synced = False
        self._reset = True

    @property
    def shown(self) -> str:
        """What the reader has been shown."""
        if len(self._shown_parts) > 1:
            self._shown_parts[:] = ["".join(self._shown_parts)]
        return self._shown_parts[0] if self._shown_parts else ""

    @shown.setter
    def shown(self, text: str) -> None:
        self._shown_parts[:] = [text] if text else []

    # ------------------------------------------------------------------ the answer

    @property
    def streamed(self) -> str:
        """The answer text streamed so far, across a resume."""
        prior, now = self._prior, self._stream
        if prior is None or now.startswith(prior):
            return now
        if prior.startswith(now):
            return prior          # a replay that has not caught up yet
        return prior + now        # the resumed stream goes on from the drop

    @property
    def answer(self) -> str:
        streamed = self.streamed
        final = self.outputs.get("answer") if isinstance(self.outputs, dict) else None
        resumed_without_text = self._prior is not None and not self._stream
        if isinstance(final, str) and final and (not streamed or resumed_without_text):
            return final
        acts_as_workflow = self.app_type == "workflow" or (bool(self.run_status) and not self.message_ended)
        if streamed or not acts_as_workflow or not isinstance(self.outputs, dict):
            return streamed
        strings = [v for v in self.outputs.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
        text = self.outputs.get("text")
        return text if isinstance(text, str) else ""

    def settle(self) -> str:
        """Live text owed so the reader ends up having seen the answer."""
        return self._show(self.answer)

    def _show(self, target: str) -> str:
        owed = _owed(self.shown, target)
        if owed is None:
            owed = ("\n\n" if self.shown else "") + target
            self.shown = target
        else:
            self.shown += owed
        return owed

    def resume(self) -> None:
        """A new connection to the same run begins (it may replay from the start)."""
        self._prior = self.streamed
        self._stream = ""
        self._stream_len = 0
        self._replay_ok = self.shown == self._prior
        self._synced = False

    def _follow_replay(self, piece: str) -> str:
        """A piece streamed after resume(), checked against the text from before the drop
        in O(len(piece)): a replay from the start stays silent until it catches up; a stream
        that goes on from the drop is shown at once."""
        prior = self._prior or ""
        end = self._stream_len
        if end <= len(prior) and prior[end - len(piece):end] == piece:
            if end == len(prior):   # caught up: the connection now holds all that was shown
                self._prior, self._synced = None, True
            return ""
        self._replay_ok = False
        if end == len(piece):       # the first piece is new text: a continuation
            self._stream_parts.insert(0, prior)
            self._stream_len += len(prior)
            self._prior, self._synced = None, True
            self._shown_parts.append(piece)
            return piece
        return self._settle_live()

    # ------------------------------------------------------------------ state

    @property
    def finished(self) -> bool:
        """The app said the run ended (either terminal event, in any order)."""
        if self.paused or self.run_status in ("succeeded", "partial-succeeded", "stopped", "failed", "paused"):
            return True
        return self.message_ended and self.app_type != "workflow"

    @property
    def status(self) -> str:
        if self.paused or self.run_status == "paused":
            return "paused"
        if self.run_status == "stopped":
            return "stopped"
        if self.run_status == "partial-succeeded":
            return "partial-succeeded"
        return "completed" if self.finished else "partial"

    def note(self) -> str:
        """One line on a run that ended but not plainly (paused, stopped, nodes failed)."""
        status = self.status
        if status == "paused" and self.form_requested and not self.form:
            return ("the app paused for human input but Dify sent the form's details empty (a known Dify bug);"
                    " answer the form in Dify, then call again with workflow_run_id to stream the rest")
        if status == "paused":
            what = self.form.get("node_title") or "a human input form"
            parts = [f"the app is waiting for a person to answer {what!s}"]
            if self.form.get("expiration_time"):
                parts.append(f"before {self.form['expiration_time']}")
            parts.append("(call again with form_token, form_inputs and form_action to answer it and stream the rest)"
                         if self.form.get("form_token") else
                         "(the form was sent by e-mail or to the console: answer it there, then call again with"
                         " workflow_run_id to stream the rest)")
            return " ".join(parts)
        if self.form_timed_out:
            what = self.form_timed_out.get("node_title") or "the human input form"
            return f"nobody answered {what} in time; the app went on along its timeout branch"
        if status == "stopped":
            return "the app's run was stopped before it finished; answer holds what it had written"
        if status == "partial-succeeded":
            count = self.exceptions_count if self.exceptions_count is not None else self.failed_nodes
            return f"the app finished, but {count} node{'s' if count != 1 else ''} failed (partial-succeeded)"
        return ""

    # ------------------------------------------------------------------ events

    def feed(self, event: dict[str, Any]) -> str:
        """Fold one event; returns the live text to show now. Raises DifyAppError on an
        `error` event or a failed run."""
        kind = event.get("event")
        for key in self.ids:
            value = event.get(key)
            if isinstance(value, str) and value:
                self.ids[key] = value
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if self.track_progress and kind in PROGRESS_EVENTS:
            self._record_progress(kind, event, data)
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            return ""
        synced, self._appended = self._synced and self._prior is None, None
        replaying, self._reset = self._prior is not None and self._replay_ok, False
        handler(event, data)
        piece = self._appended
        if synced and self._synced and piece is not None:
            self._shown_parts.append(piece)   # shown == streamed still holds
            return piece
        if synced and self._synced:
            return ""
        if replaying and piece is not None and not self._reset:
            return self._follow_replay(piece)
        return self._settle_live()

    def _record_progress(self, kind: str, event: dict, data: dict) -> None:
        step: dict[str, Any] = {"event": kind}
        step.update({k: data[k] for k in _PROGRESS_FIELDS if data.get(k) not in (None, "")})
        if isinstance(step.get("error"), str):
            step["error"] = step["error"][:300]
        self.progress.append(orjson.dumps(step, default=str).decode() + "\n")

    def _settle_live(self) -> str:
        """The general case (a replacement, or a replay that went its own way)."""
        target = self.streamed
        shown = self.shown
        if self._prior is not None and not target.startswith(shown) and shown.startswith(target):
            return ""   # a replay still behind what was shown
        owed = self._show(target) if target != shown else ""
        self._synced = self._prior is None and self.shown == target
        return owed

    def _append(self, channel: str, piece: Any) -> None:
        if not isinstance(piece, str) or not piece:
            return
        if not self._channel:
            self._channel = channel
        if self._channel == channel:
            self._stream_parts.append(piece)
            self._stream_len += len(piece)
            self._appended = piece

    def _on_message(self, event: dict, data: dict) -> None:
        piece = event.get("answer")
        if self._channel == "agent" and isinstance(piece, str):
            self._stream = piece       # New Agent: the closing message is the whole answer
            self._closing_message = True
            return
        self._append("message", piece)

    def _on_agent_message(self, event: dict, data: dict) -> None:
        if not self._closing_message:
            self._append("agent", event.get("answer"))

    def _on_text_chunk(self, event: dict, data: dict) -> None:
        self._append("text_chunk", data.get("text"))

    def _on_message_replace(self, event: dict, data: dict) -> None:
        if isinstance(event.get("answer"), str):
            self._stream = event["answer"]
            self._prior = None

    def _on_text_replace(self, event: dict, data: dict) -> None:
        if isinstance(data.get("text"), str):
            self._stream = data["text"]
            self._prior = None

    def _on_reasoning_chunk(self, event: dict, data: dict) -> None:
        piece = data.get("reasoning")
        if isinstance(piece, str):
            self.reasoning += piece

    def _add_files(self, files: Any) -> None:
        if not isinstance(files, list):
            return
        for item in files:
            if not isinstance(item, dict):
                continue
            key = item.get("id") or item.get("related_id") or item.get("upload_file_id") or item.get("url")
            if key in self._file_keys:
                continue
            if key:
                self._file_keys.add(key)
            self.files.append(item)

    def _on_message_file(self, event: dict, data: dict) -> None:
        self._add_files([{k: event[k] for k in ("id", "type", "belongs_to", "url") if k in event}])

    def _on_message_end(self, event: dict, data: dict) -> None:
        self.message_ended = True
        meta = event.get("metadata") if isinstance(event.get("metadata"), dict) else {}
        if isinstance(meta.get("usage"), dict):
            self.usage = meta["usage"]
        if isinstance(meta.get("retriever_resources"), list):
            self.citations = [r for r in meta["retriever_resources"] if isinstance(r, dict)]
        self._add_files(event.get("files"))
        if isinstance(event.get("id"), str) and not self.ids["message_id"]:
            self.ids["message_id"] = event["id"]

    def _on_workflow_started(self, event: dict, data: dict) -> None:
        if isinstance(data.get("id"), str) and not self.ids["workflow_run_id"]:
            self.ids["workflow_run_id"] = data["id"]

    def _on_node_finished(self, event: dict, data: dict) -> None:
        if data.get("status") in _FAILED_NODE:
            self.failed_nodes += 1

    def _on_human_input_required(self, event: dict, data: dict) -> None:
        self.form_requested = True
        self.form = {k: data[k] for k in ("form_id", "node_id", "node_title", "form_token", "expiration_time")
                     if data.get(k) is not None}
        expires = self.form.get("expiration_time")
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):  # Unix seconds
            self.form["expiration_time"] = datetime.fromtimestamp(expires, timezone.utc).isoformat()

    def _on_human_input_form_filled(self, event: dict, data: dict) -> None:
        self.form_filled = {k: data[k] for k in ("node_id", "node_title", "action_id", "action_text",
                                                 "submitted_data") if k in data}

    def _on_human_input_form_timeout(self, event: dict, data: dict) -> None:
        self.form_timed_out = {k: data[k] for k in ("node_id", "node_title", "expiration_time") if k in data}

    def _on_workflow_paused(self, event: dict, data: dict) -> None:
        self.paused = True
        if isinstance(data.get("workflow_run_id"), str) and data["workflow_run_id"]:
            self.ids["workflow_run_id"] = data["workflow_run_id"]
        if isinstance(data.get("outputs"), dict) and data["outputs"]:
            self.outputs = data["outputs"]

    def _on_workflow_finished(self, event: dict, data: dict) -> None:
        status = data.get("status")
        self.run_status = status if isinstance(status, str) else "succeeded"
        if isinstance(data.get("outputs"), dict):
            self.outputs = data["outputs"]
        if isinstance(data.get("id"), str) and not self.ids["workflow_run_id"]:
            self.ids["workflow_run_id"] = data["id"]
        if not self.usage and data.get("total_tokens") is not None:
            self.usage = {"total_tokens": data["total_tokens"]}
        if isinstance(data.get("exceptions_count"), int):
            self.exceptions_count = data["exceptions_count"]
        self._add_files(data.get("files"))
        if self.run_status == "failed":
            self.run_error = str(data.get("error") or "no reason given")
            raise DifyAppError(f"the Dify workflow failed: {self.run_error}")

    def _on_error(self, event: dict, data: dict) -> None:
        code = event.get("code") or "error"
        raise DifyAppError(f"the Dify app reported an error ({code}): {event.get('message') or 'no message'}")
