"""The answer engine (tools/dify_answer.py) and the message-size cap (tools/message_size.py),
in-process: Dify event dicts in, live text and variables out."""

from __future__ import annotations

import orjson
import pytest

from tools.dify_answer import AnswerFolder, DifyAppError
from tools.dify_result import VARIABLES, result_outputs
from tools.message_size import LINE_LIMIT, fit, serialised_size


def fold(events, app_type="chatflow", folder=None):
    folder = folder or AnswerFolder(app_type)
    live = "".join(folder.feed(e) for e in events)
    return folder, live + folder.settle()


def msg(text, kind="message"):
    return {"event": kind, "answer": text, "task_id": "t1", "message_id": "m1", "conversation_id": "c1"}


def wf_finished(status="succeeded", outputs=None, **data):
    return {"event": "workflow_finished", "workflow_run_id": "run-1", "task_id": "t1",
            "data": {"id": "run-1", "status": status, "outputs": outputs, **data}}


END = {"event": "message_end", "id": "m1", "metadata": {"usage": {"total_tokens": 9}}}


def test_new_agent_closing_message_is_the_answer_not_more_text():
    events = [msg("Hel", "agent_message"), msg("lo ", "agent_message"), msg("world", "agent_message"),
              msg("Hello world\n"), END]
    folder, shown = fold(events)
    assert folder.answer == "Hello world\n" and shown == "Hello world\n"
    assert shown.count("Hello") == 1 and folder.status == "completed"


def test_new_agent_closing_message_differing_only_in_spacing_is_not_shown_twice():
    folder, shown = fold([msg("Hi ", "agent_message"), msg(" there", "agent_message"), msg("Hi there"), END])
    assert folder.answer == "Hi there" and shown.count("there") == 1


def test_chat_streamed_text_wins_over_outputs_answer_that_differs_by_whitespace():
    events = [msg("Part one."), msg("Part two."), wf_finished(outputs={"answer": "Part one.\nPart two.\n"}), END]
    folder, shown = fold(events)
    assert folder.answer == "Part one.Part two." == shown


def test_outputs_answer_is_used_when_nothing_streamed():
    folder, shown = fold([wf_finished(outputs={"answer": "only here"}), END])
    assert folder.answer == shown == "only here"


@pytest.mark.parametrize("events", [
    [msg("A"), msg("B"), wf_finished(outputs={"answer": "AB"}), END],
    [msg("A"), msg("B"), END, wf_finished(outputs={"answer": "AB"})],
])
def test_both_terminal_orders_give_the_same_result(events):
    folder, shown = fold(events)
    assert (folder.answer, shown, folder.status, folder.usage) == ("AB", "AB", "completed", {"total_tokens": 9})
    assert folder.ids["workflow_run_id"] == "run-1"


def test_only_replace_events_replace():
    folder, shown = fold([msg("draft"), {"event": "message_replace", "answer": "clean"}, END])
    assert folder.answer == "clean" and shown == "draft\n\nclean"
    folder, shown = fold([{"event": "text_chunk", "data": {"text": "draft"}},
                          {"event": "text_replace", "data": {"text": "draft, fixed"}},
                          wf_finished(outputs={"text": "x"})], "workflow")
    assert folder.answer == shown == "draft, fixed"


def test_a_second_answer_channel_is_never_appended():
    folder, shown = fold([msg("A"), {"event": "text_chunk", "data": {"text": "A"}}, msg("B"), END])
    assert folder.answer == shown == "AB"


def test_workflow_single_string_output_is_the_answer_when_nothing_streamed():
    folder, shown = fold([wf_finished(outputs={"summary": "short", "count": 3})], "workflow")
    assert folder.answer == shown == "short" and folder.status == "completed"


def test_reasoning_files_citations_are_variables_not_answer():
    events = [{"event": "reasoning_chunk", "data": {"reasoning": "think ", "node_id": "llm"}},
              {"event": "reasoning_chunk", "data": {"reasoning": "hard", "node_id": "llm"}},
              msg("42"),
              {"event": "message_file", "id": "f1", "type": "image", "belongs_to": "assistant", "url": "http://x/f"},
              wf_finished(outputs={"answer": "42"}, files=[{"related_id": "f2", "url": "http://x/g"}]),
              {**END, "files": [{"related_id": "f1", "url": "http://x/f"}],
               "metadata": {"retriever_resources": [{"position": 1, "content": "c"}]}}]
    folder, shown = fold(events)
    assert shown == folder.answer == "42" and folder.reasoning == "think hard"
    assert [f.get("id") or f.get("related_id") for f in folder.files] == ["f1", "f2"]
    assert folder.citations == [{"position": 1, "content": "c"}]


def test_human_input_pause():
    events = [msg("So far"), {"event": "human_input_required", "workflow_run_id": "run-1",
                              "data": {"form_id": "f", "node_title": "Approve", "form_token": "tok",
                                       "expiration_time": 1798761600}},
              {"event": "workflow_paused", "data": {"workflow_run_id": "run-1", "status": "paused", "outputs": {}}}]
    folder, shown = fold(events)
    assert folder.status == "paused" and folder.answer == shown == "So far"
    assert folder.form["form_token"] == "tok" and folder.form["expiration_time"].startswith("2027-01-01T00:00:00")
    assert "waiting for a person" in folder.note() and folder.ids["workflow_run_id"] == "run-1"


def test_stopped_keeps_the_partial_answer_and_partial_succeeded_counts_nodes():
    folder, _ = fold([msg("half"), wf_finished("stopped"), END])
    assert folder.status == "stopped" and folder.answer == "half"
    node = {"event": "node_finished", "data": {"status": "exception"}}
    folder, _ = fold([msg("ok"), node, node, wf_finished("partial-succeeded"), END])
    assert folder.status == "partial-succeeded" and "2 nodes failed" in folder.note()
    folder, _ = fold([msg("ok"), node, wf_finished("partial-succeeded", exceptions_count=3), END])
    assert "3 nodes failed" in folder.note()


def test_error_event_and_failed_run_raise():
    with pytest.raises(DifyAppError, match=r"\(rate_limit_error\): slow down"):
        fold([msg("a"), {"event": "error", "code": "rate_limit_error", "message": "slow down", "status": 429}])
    with pytest.raises(DifyAppError, match="workflow failed: boom"):
        fold([wf_finished("failed", error="boom")], "workflow")


@pytest.mark.parametrize("resumed", [
    ["Hello ", "wor", "ld"],          # the resume endpoint replays the run from the start
    ["ld"],                           # it goes on from the drop
])
def test_resume_never_shows_text_twice(resumed):
    folder = AnswerFolder("chatflow")
    shown = "".join(folder.feed(msg(p)) for p in ["Hello ", "wor"])
    folder.resume()
    shown += "".join(folder.feed(msg(p)) for p in resumed)
    shown += folder.feed(END) + folder.settle()
    assert shown == folder.answer == "Hello world"


def test_resume_of_a_finished_run_takes_outputs_answer():
    folder = AnswerFolder("chatflow")
    shown = folder.feed(msg("Hello "))
    folder.resume()
    shown += folder.feed(wf_finished(outputs={"answer": "Hello world"})) + folder.settle()
    assert shown == folder.answer == "Hello world" and folder.status == "completed"


def test_fit_cuts_on_serialised_size_with_a_marker():
    quoted = '{"a": "b"}\n' * 500_000          # 5.5 MB of text, ~8 MB once escaped
    assert len(quoted.encode()) > LINE_LIMIT
    capped = fit(quoted, 4 * 1024 * 1024)
    assert serialised_size(capped) <= 4 * 1024 * 1024 and "[truncated by sse_fanin" in capped
    assert quoted.startswith(capped.split("\n[truncated")[0])
    nested = {"small": 1, "big": [quoted[:200_000]] * 40, "after": "x"}
    capped = fit(nested, 1024 * 1024)
    assert serialised_size(capped) <= 1024 * 1024 and capped["small"] == 1
    assert any("truncated by sse_fanin" in str(item) for item in capped["big"])
    assert fit("small") == "small"


def test_every_result_message_fits_even_when_the_app_sends_too_much():
    big = '"quoted" line\n' * 400_000
    folder, _ = fold([msg(big), wf_finished(outputs={"answer": big, "other": big}), END])
    outputs = list(result_outputs(folder, app_type="chatflow"))
    assert [o[1] for o in outputs if o[0] == "variable"] == list(VARIABLES)
    for output in outputs:
        envelope = {"type": output[0], "message": output[1:]}
        assert len(orjson.dumps(envelope)) < LINE_LIMIT
    summary = outputs[-1][1]
    assert summary["outputs"] == "(large: see the outputs variable)" and "answer" in summary["truncated"]


def test_a_workflow_reached_through_a_chat_call_still_gets_its_single_output():
    """The app picker's `auto` makes a chat call when there is a query; Dify runs the app by
    its own mode, so a workflow answers with workflow events."""
    folder, shown = fold([{"event": "workflow_started", "data": {"id": "run-2"}},
                          wf_finished(outputs={"summary": "done"})])
    assert folder.answer == shown == "done" and folder.status == "completed"


def test_app_call_failures_from_the_sdk_are_one_line_with_a_hint():
    from tools.app_invoke_core import plan_app_call, run_app_call
    from tools.common import ToolFailure

    def cut(call):
        yield msg("partial ")
        raise Exception("read app failed: context deadline exceeded\n(more)")

    with pytest.raises(ToolFailure, match=r"read app failed: context deadline exceeded \(more\) \(the plugin daemon"):
        list(run_app_call(plan_app_call({"app": {"app_id": "a"}, "query": "q"}), cut))


def test_a_continuation_that_begins_like_the_answer_is_still_shown_once():
    folder = AnswerFolder("chatflow")
    shown = "".join(folder.feed(msg(p)) for p in ["The ", "cat "])
    folder.resume()
    shown += "".join(folder.feed(msg(p)) for p in ["The ", "dog."])   # looks like a replay, then is not
    shown += folder.feed(END) + folder.settle()
    assert shown == folder.answer == "The cat The dog."
