"""What `fanin load` shows: the live panel on stderr (once a second) and the final report
(the table, and the JSON document with --json)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from fanin.errors import FaninError

__all__ = ["Progress", "emit"]


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
        from fanin.load.report import progress_table, request_progress_table

        if not self.live:
            return
        if self.requests:
            self.live.update(request_progress_table(metrics, elapsed=elapsed, duration=self.duration))
            return
        now = time.monotonic()
        rate = (metrics.events - self._events) / max(now - self._when, 1e-6)
        self._events, self._when = metrics.events, now
        self.live.update(
            progress_table(metrics, elapsed=elapsed, duration=self.duration, target=self.target, events_per_s=rate)
        )


def emit(args: argparse.Namespace, report: dict[str, Any]) -> None:
    from rich.console import Console

    from fanin.load.report import report_table

    def console(**kw) -> Console:
        out = Console(**kw)
        if not out.is_terminal:
            out.width = 132  # a log file or CI: room for every column
        return out

    blob = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if args.json == "-":
        sys.stdout.buffer.write(blob)
        sys.stdout.flush()
        console(stderr=True).print(report_table(report))
        return
    if args.json:
        try:
            with open(args.json, "wb") as f:
                f.write(blob)
        except OSError as exc:
            raise FaninError(f"cannot write {args.json}: {exc.strerror}") from None
    console().print(report_table(report))
