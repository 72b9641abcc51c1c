"""Map the cores' output tuples onto Dify messages, and their failures onto one clear error.

The cores hand over values already cut to fit the daemon's 5 MiB line (each value is
measured once, where it is made: tools/message_size.py), and text in pieces of at most
TEXT_PIECE characters. Kept apart from the Tool classes because the SDK loads exactly one
Tool subclass per tool module; this holds no Tool subclass."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tools.common import ToolFailure


class SseToolError(Exception):
    """What Dify shows when a run fails as a whole: one line, no secrets, no chained cause."""


def to_messages(tool: Any, make_outputs: Callable[[], Iterator[tuple]]) -> Iterator[Any]:
    try:
        outputs = make_outputs()
        for output in outputs:
            kind = output[0]
            if kind == "text":
                yield tool.create_text_message(output[1])
            elif kind == "variable":
                yield tool.create_variable_message(output[1], output[2])
            elif kind == "json":
                yield tool.create_json_message(output[1])
            elif kind == "progress":   # show_progress: a live variable of its own, never the answer
                yield tool.create_stream_variable_message("progress", output[1])
    except ToolFailure as exc:
        raise SseToolError(str(exc)) from None
    except ValueError as exc:  # a bad parameter, already one clear line
        raise SseToolError(str(exc)) from None
