"""Exceptions the engine raises, and the one vocabulary of failure kinds.

Each exception's message is a single clear line meant for a user (the CLI prints it as
is), so it never carries a traceback, a token or a header value. Faces (the CLI, the
load tester, the Dify tools, Locust) decide on a failure's `FailureKind` and
`http_status`, never on its wording: messages may be reworded at any time."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["FaninError", "UsageError", "EventTooLargeError", "FailureKind", "RETRIED_KINDS"]


class FailureKind(StrEnum):
    """Why one source (or one connection attempt) failed. The values are the strings the
    JSON outputs and `fanin load`'s `errors.by_kind` have always used; a StrEnum, so a kind
    compares equal to its string and serialises as it."""

    # before a response
    BAD_URL = "bad_url"                      # the URL cannot be requested
    REFUSED = "refused"                      # connection refused (nothing listens)
    NETWORK = "network"                      # DNS, reset, unreachable, lost mid-stream
    TIMEOUT = "timeout"                      # no response headers within the connect timeout
    TLS = "tls"                              # certificate or handshake failure
    REFUSED_DESTINATION = "refused_destination"  # a destination guard refused the address
    REDIRECT = "redirect"                    # too many redirects, a bad or non-HTTP Location
    # the response
    HTTP_4XX = "http_4xx"                    # 4xx other than 408/429: not retried (http_status says which)
    HTTP_408 = "http_408"                    # request timeout: retried
    HTTP_429 = "http_429"                    # too many requests: retried, Retry-After honoured
    HTTP_5XX = "http_5xx"                    # server error: retried
    HTTP_STATUS = "http_status"              # another unexpected status (1xx, 2xx other than 200/204, 3xx)
    CONTENT_TYPE = "content_type"            # 200 without text/event-stream
    ENCODING = "encoding"                    # a Content-Encoding the client cannot decode
    # the body
    TRUNCATED = "truncated"                  # the body was cut mid-stream
    PROTOCOL = "protocol"                    # malformed body framing (a broken chunked encoding)
    IDLE = "idle"                            # no bytes for idle_timeout seconds
    TOO_LARGE = "too_large"                  # a line or event past max_line_size, or the byte budget
    # not the server's doing
    INTERNAL = "internal"                    # a bug or an unforeseen library error
    # not a failure: the reason of the reconnect after a clean end in reconnect="always"
    CLEAN_END = "clean_end"


# Kinds the engine retries (with backoff, within `retries`) when the reconnect rules allow.
RETRIED_KINDS = frozenset({
    FailureKind.REFUSED, FailureKind.NETWORK, FailureKind.TIMEOUT, FailureKind.HTTP_408,
    FailureKind.HTTP_429, FailureKind.HTTP_5XX, FailureKind.TRUNCATED, FailureKind.PROTOCOL,
    FailureKind.IDLE, FailureKind.CLEAN_END,
})


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

    def __init__(self, message: str, events: list[Any] | None = None) -> None:
        super().__init__(message)
        self.events = events if events is not None else []
