"""How long to wait before the next attempt of one source, and when to give up.

The base delay is the server's latest `retry:` (else a default), never under MIN_DELAY;
after consecutive failures it grows exponentially with jitter up to a cap, never below
the server's value. Retry-After (seconds or an HTTP-date) can only lengthen a wait.
The count of consecutive failures resets once a reconnected stream delivers an event, so
`retries` bounds failures in a row, not reconnects over a long life. Whether to try again
at all is `fanin.decision.decide`; the loop itself is a few lines in `fanin.stream`."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = ["ReconnectPolicy", "retry_after_seconds", "MIN_DELAY", "MAX_RETRY_AFTER"]

MAX_RETRY_AFTER = 300.0
# No wait is shorter than this, whatever the server's `retry:` says: `retry: 0` on a
# server that ends every response (reconnect=always) would otherwise loop as fast as it
# answers, and exponential backoff from zero stays zero.
MIN_DELAY = 0.05
_SHARED_RNG = random.Random()


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

    def record_failure(self) -> None:
        self.failures += 1

    def delivered(self) -> None:
        """A (re)connected stream delivered an event: the backoff starts over."""
        self.failures = 0

    @property
    def exhausted(self) -> bool:
        """More failures in a row than `retries` allows: give up."""
        return self.failures > self.retries

    def wait_for(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt; `retry_after` is the server's
        Retry-After for the failure that ended the last one, if it gave one."""
        base = max(self.base_delay, MIN_DELAY)
        if self.failures <= 1:
            wait = base
        else:
            ceiling = max(base, min(self.max_backoff, base * 2 ** (self.failures - 1)))
            wait = base + self.rng.random() * (ceiling - base)  # jitter above the server's value
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait
