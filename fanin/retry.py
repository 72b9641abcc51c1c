"""Reconnect policy for one source, as small tenacity strategies.

The base delay is the server's latest `retry:` (else a default), never under MIN_DELAY;
after consecutive failures it grows exponentially with jitter up to a cap, never below
the server's value. Retry-After (seconds or an HTTP-date) can only lengthen a wait.
The count of consecutive failures resets once a reconnected stream delivers an event, so
`retries` bounds failures in a row, not reconnects over a long life."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .errors import FailureKind

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

__all__ = ["Reconnect", "ReconnectPolicy", "retry_after_seconds", "MIN_DELAY"]

MAX_RETRY_AFTER = 300.0
# No wait is shorter than this, whatever the server's `retry:` says: `retry: 0` on a
# server that ends every response (reconnect=always) would otherwise loop as fast as it
# answers, and exponential backoff from zero stays zero.
MIN_DELAY = 0.05
_SHARED_RNG = random.Random()


class Reconnect(Exception):
    """Raised by one connection attempt that should be followed by another.

    kind: a FailureKind (one of RETRIED_KINDS); http_status: the response's status, if any.
    counts_as_failure: a clean end in `always` mode after events is not a failure.
    """

    def __init__(self, kind: FailureKind, message: str, *, counts_as_failure: bool = True,
                 retry_after: float | None = None, maybe_processed: bool = True,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.counts_as_failure = counts_as_failure
        self.retry_after = retry_after
        # False only when the request provably did not reach the application: the
        # connection failed before it was sent, or the server said so (408, 429, 503
        # with Retry-After). A non-idempotent request is re-sent only then.
        self.maybe_processed = maybe_processed


def retry_after_seconds(value: str) -> float | None:
    """A Retry-After header value (delay-seconds or an HTTP-date) as seconds from now."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass(slots=True)  # one per stream
class ReconnectPolicy:
    retries: int = 3
    default_retry_ms: int = 1000
    max_backoff: float = 30.0
    server_retry_ms: int | None = None  # latest valid `retry:` from the server
    failures: int = 0  # consecutive failures
    rng: random.Random = field(default_factory=lambda: _SHARED_RNG)  # one for all: seeding costs 0.2 ms and 2.5 KiB

    @property
    def base_delay(self) -> float:
        ms = self.server_retry_ms if self.server_retry_ms is not None else self.default_retry_ms
        return ms / 1000.0

    def record(self, exc: Reconnect) -> None:
        if exc.counts_as_failure:
            self.failures += 1

    def delivered(self) -> None:
        """A (re)connected stream delivered an event: the backoff starts over."""
        self.failures = 0

    # tenacity strategies -------------------------------------------------------------
    def should_stop(self, state: RetryCallState) -> bool:
        return self.failures > self.retries

    def delay(self, state: RetryCallState) -> float:
        return self.wait_for(state.outcome.exception() if state.outcome else None)

    def wait_for(self, exc: BaseException | None) -> float:
        """Seconds to wait before the next attempt, after `exc` ended the last one."""
        base = max(self.base_delay, MIN_DELAY)
        if self.failures <= 1:
            wait = base
        else:
            ceiling = max(base, min(self.max_backoff, base * 2 ** (self.failures - 1)))
            wait = base + self.rng.random() * (ceiling - base)  # jitter above the server's value
        if isinstance(exc, Reconnect) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, MAX_RETRY_AFTER))
        return wait

    def retrying(self, before_sleep=None) -> AsyncRetrying:
        # Imported here: a stream that never fails (every single short `fanin stream`)
        # does not pay tenacity's import (~10 ms of start-up).
        from tenacity import AsyncRetrying, retry_if_exception_type

        return AsyncRetrying(
            retry=retry_if_exception_type(Reconnect),
            stop=self.should_stop,
            wait=self.delay,
            before_sleep=before_sleep,
            reraise=True,
        )
