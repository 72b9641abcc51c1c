"""Exceptions the engine raises. Each one's message is a single clear line meant for a
user (the CLI prints it as is), so it never carries a traceback, a token or a header value."""

from __future__ import annotations

__all__ = ["FaninError", "UsageError", "EventTooLargeError"]


class FaninError(Exception):
    """Base of every error the engine raises on purpose."""


class UsageError(FaninError):
    """Bad input or options (bad URL, CR/LF in a header, bad number); the CLI exits 2."""


class EventTooLargeError(FaninError):
    """A line, or one event's data, grew past the parser's max_line_size.

    Raised so a hostile or broken server cannot make the client buffer without bound.
    `events` holds the events the failing feed() completed before the oversized part,
    so a caller can still deliver them (the parser is then reset: call new_connection()).
    """

    def __init__(self, message: str, events: list | None = None) -> None:
        super().__init__(message)
        self.events = events if events is not None else []
