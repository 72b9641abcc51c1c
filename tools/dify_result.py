"""The closing outputs of a Dify app call (variables, then one JSON summary), the same for
the API-key mode and the app picker. Each value is cut to fit Dify's message limit, and a
large `outputs` is written once (as its variable), never again inside the summary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tools.dify_answer import AnswerFolder
from tools.message_size import VALUE_BUDGET, fit, serialised_size

__all__ = ["VARIABLES", "STREAMED_VARIABLES", "result_outputs"]

VARIABLES = ("answer", "conversation_id", "message_id", "task_id", "workflow_run_id", "usage", "outputs",
             "files", "citations", "reasoning", "form_token", "expiration_time", "form", "status", "note", "error")
STREAMED_VARIABLES = ("progress",)   # streamed live while the app runs (show_progress), not at the end
_SUMMARY_INLINE = 64 * 1024   # larger values are named in the summary, not repeated in it


def result_outputs(folder: AnswerFolder, *, app_type: str, error: str = "",
                   connection_duration: float | None = None, extra: dict[str, Any] | None = None,
                   form: dict[str, Any] | None = None) -> Iterator[tuple]:
    """`form` is the paused run's form definition when it could be fetched ({} otherwise)."""
    status = folder.status
    values: dict[str, Any] = {
        "answer": folder.answer,
        **folder.ids,
        "usage": folder.usage,
        "outputs": folder.outputs,
        "files": folder.files,
        "citations": folder.citations,
        "reasoning": folder.reasoning,
        "form_token": str(folder.form.get("form_token") or ""),
        "expiration_time": folder.form.get("expiration_time") or "",
        "form": form or {},
        "status": status,
        "note": folder.note(),
        "error": error,
    }
    cut: list[str] = []
    for name in VARIABLES:
        value = fit(values[name], VALUE_BUDGET)
        if value is not values[name]:
            cut.append(name)
        yield ("variable", name, value)
    summary: dict[str, Any] = {"type": "summary", "status": status, "app_type": app_type}
    for name in VARIABLES:
        if name == "status":
            continue
        value = values[name]
        if serialised_size(value) > _SUMMARY_INLINE:
            summary[name] = f"(large: see the {name} variable)"
        else:
            summary[name] = value if value != "" else None
    if folder.form:
        summary["human_input"] = folder.form
    if folder.form_filled:
        summary["human_input_filled"] = folder.form_filled
    if folder.form_timed_out:
        summary["human_input_timeout"] = folder.form_timed_out
    summary["connection_duration"] = connection_duration
    if cut:
        summary["truncated"] = cut
    summary.update(extra or {})
    yield ("json", fit(summary, VALUE_BUDGET))
