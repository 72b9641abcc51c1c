"""A process-wide byte budget for what the parsers hold between reads.

`max_line_size` bounds one stream's pending line and event; a process that runs many
streams at once (the Dify plugin serves many tool calls in one process, each with
several URLs) also needs a bound on their sum. Parsers charge the bytes they hold
(pending line and unfinished event) after each read and give them back when the event
is dispatched or the connection ends; a charge that would go over the budget fails that
stream with a clear "too large" error instead. Off (None) unless someone sets it: the
CLI runs one fan-in per process and `max_line_size` is its bound.
"""

from __future__ import annotations

import threading

__all__ = ["ByteBudget", "process_budget", "set_process_budget"]


class ByteBudget:
    """Bytes in use against a limit; safe to share between threads and event loops."""

    __slots__ = ("limit", "used", "_lock")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget must be at least 1 byte")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def adjust(self, delta: int) -> bool:
        """Take (delta > 0) or give back (delta <= 0) bytes. A take that would exceed the
        limit is refused (returns False) and changes nothing; giving back always works."""
        with self._lock:
            if delta > 0 and self.used + delta > self.limit:
                return False
            self.used += delta
            return True

    def describe(self) -> str:
        return f"{self.limit / (1024 * 1024):g} MiB"


_process_budget: ByteBudget | None = None


def set_process_budget(limit_bytes: int | None) -> ByteBudget | None:
    """Switch the process-wide budget on (a byte count) or off (None). Streams created
    afterwards use it; returns the new budget."""
    global _process_budget
    _process_budget = ByteBudget(limit_bytes) if limit_bytes is not None else None
    return _process_budget


def process_budget() -> ByteBudget | None:
    return _process_budget
