"""The failure kinds `fanin load` counts besides the engine's (`fanin.errors.FailureKind`).

`errors.by_kind` in the report counts every failure under its kind: the engine's kind for
any failure the engine reports (refused, http_4xx, truncated, ...), and one of these for
what only the load tester can tell. They are decided where they happen, never read back
from a message's wording."""

from __future__ import annotations

from enum import StrEnum

from fanin.errors import FailureKind

__all__ = ["LoadFailure", "CANNOT_OPEN"]


class LoadFailure(StrEnum):
    CLIENT = "client"  # the load client itself failed (a bug): the run does not pass
    NO_TOKENS = "no_tokens"  # request mode: the stream ended cleanly without one token
    OTHER = "other"  # request mode: the engine reported a failed stream without a kind
    API_ERROR = "api_error"  # request mode: the API sent an error inside the stream (Anthropic `error`)


# Engine kinds that say the URL cannot be opened at all (as opposed to a server that is
# overloaded or flaky, which a load test is there to measure): request mode ends early when
# its first requests all fail this way and no stream ever opened.
CANNOT_OPEN = frozenset({
    FailureKind.BAD_URL, FailureKind.REFUSED, FailureKind.NETWORK, FailureKind.TLS,
    FailureKind.REFUSED_DESTINATION, FailureKind.REDIRECT, FailureKind.HTTP_4XX,
    FailureKind.CONTENT_TYPE, FailureKind.ENCODING,
})
