"""What `fanin load` shows: the live panel on stderr (once a second) and the final report
(the table, and the JSON document with --json)."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress", "show", "PIPED_WIDTH"]


class Progress:
    """The live display on stderr, fed cumulative metrics once a second."""

    def __init__(self, enabled: bool, duration: float, target: int, *, requests: bool = False):
        from rich.console import Console
        from rich.live import Live

        self.live = Live(console=Console(stderr=True), refresh_per_second=2, transient=True) if enabled else None
        self.duration, self.target, self.requests = duration, target, requests
        self._events, self._when = 0, time.monotonic()

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)

    def update(self, metrics, elapsed: float) -> None:
        from fanin.load.tables import progress_table, request_progress_table

        if not self.live:
            return
        if self.requests:
            self.live.update(request_progress_table(metrics, elapsed=elapsed, duration=self.duration,
                                                    width=self.live.console.width))
            return
        now = time.monotonic()
        rate = (metrics.events - self._events) / max(now - self._when, 1e-6)
        self._events, self._when = metrics.events, now
        self.live.update(
            progress_table(metrics, elapsed=elapsed, duration=self.duration, target=self.target, events_per_s=rate,
                           width=self.live.console.width)
        )


PIPED_WIDTH = 100  # a log file or CI: room for the tables, nothing padded to a terminal's width


def show(renderable: Any, *, stderr: bool = False) -> None:
    """Print a table (or `renderable(width)` for one that fits itself): as rich draws it on a
    terminal (its own width), plain text without trailing spaces when piped."""
    import io
    import os

    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        console.print(renderable(console.width) if callable(renderable) else renderable)
        return
    try:
        width = int(os.environ.get("COLUMNS", "")) or PIPED_WIDTH
    except ValueError:
        width = PIPED_WIDTH
    if callable(renderable):
        renderable = renderable(width)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False,
            emoji=False).print(renderable)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
    stream = sys.stderr if stderr else sys.stdout
    stream.write(text)
    stream.flush()
