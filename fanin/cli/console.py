"""The one way the `fanin` commands decide how to draw for people: on a terminal, its own
width (COLUMNS when set, else the terminal's) and colour; anywhere else plain lines.

rich, left to itself, measures whichever standard stream is a terminal: with stdout piped
and stderr on a 110-column terminal it drew 110-column tables, padded with trailing spaces,
into the pipe. Here the width is that of the stream written to, or none at all."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

__all__ = ["is_terminal", "terminal_width", "make_console", "shorten_middle", "shown_error", "DEFAULT_WIDTH",
           "URL_IN_ERROR"]

DEFAULT_WIDTH = 80


# C0 controls but tab and line feed, DEL, and C1: what a server could use to drive the
# terminal (colours, cursor moves, window titles, OSC 8 links), shown as \xNN instead.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """Text from a server as a terminal may show it: control characters written out, so
    an event cannot recolour, move the cursor, retitle the window or hide what came before."""
    return text.translate(_CONTROLS)


def is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except (OSError, ValueError):
        return False


def terminal_width(fd: int) -> int:
    """COLUMNS when the user set it, else the terminal's width, else 80; at least 40."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(40, int(columns))
    try:
        return max(40, os.get_terminal_size(fd).columns)
    except (OSError, ValueError):
        return max(40, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def make_console(file: Any, fd: int) -> Any:
    """A rich Console for `file` (which writes to `fd`): colour and the terminal's width on a
    terminal; off a terminal no colour, no styles, and lines never padded."""
    from rich.console import Console

    if is_terminal(fd):
        return Console(file=file, force_terminal=True, width=terminal_width(fd), highlight=False)
    return Console(file=file, force_terminal=False, no_color=True, color_system=None, width=1 << 16,
                   highlight=False, soft_wrap=True)


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, the middle replaced by "…" when it is longer
    (a URL keeps its scheme and host, and the end of its path and query)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


URL_IN_ERROR = 200  # a URL longer than this is shortened in the middle in error lines for people


_LONG_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]{%d,}" % (URL_IN_ERROR - 8))


def shown_error(text: str) -> str:
    """An error message for stderr or the screen, every long URL in it (up to 8 KiB, the
    URL lists' bound) shortened in its middle, never echoed whole. ndjson keeps its fields whole."""
    text = visible(text)
    if len(text) <= URL_IN_ERROR:
        return text
    return _LONG_URL.sub(lambda m: shorten_middle(m.group(0), URL_IN_ERROR), text)
