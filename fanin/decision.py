"""The one decision after a connection attempt ends: reconnect (or re-send), fail, or stop.

Pure: no I/O, no clock, no counters (how many retries remain and how long to wait belong
to `fanin.retry.ReconnectPolicy`). Every rule about re-sending lives here, so it can be
read in one place and tested without sockets (tests/test_retry_decisions.py walks every
combination).

Re-sending a request that is not idempotent (POST runs an LLM call or a Dify app) is only
safe when the failure proves the request was not acted on, or when the stream can resume
by event id (RFC 9110, 9.2.2 names the idempotent methods)."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["Outcome", "Verdict", "Reason", "Decision", "decide", "RECONNECT_MODES"]

RECONNECT_MODES = ("error", "always", "never")


class Outcome(StrEnum):
    """How one connection attempt ended, as far as re-sending is concerned."""

    NOT_SENT = "not_sent"    # the connection failed before the request left (refused, DNS, unreachable)
    DECLINED = "declined"    # the server said it did not act on it (408, 429, 503 with Retry-After)
    NO_ANSWER = "no_answer"  # no stream opened, and the request may have been acted on (timeout, 5xx, reset)
    CUT = "cut"              # the stream opened, then broke (cut, malformed body, idle)
    END = "end"              # the body ended cleanly
    STOPPED = "stopped"      # nothing more is wanted: 204 No Content, or stop_on matched
    FATAL = "fatal"          # never worth another attempt (4xx, wrong content type, TLS, too large...)


class Verdict(StrEnum):
    RETRY = "retry"  # wait (per the policy) and connect again, with Last-Event-ID
    FAIL = "fail"    # the source ends failed
    DONE = "done"    # the source ends completed


class Reason(StrEnum):
    """Why a retryable outcome still fails (the message says it to the user)."""

    NONE = ""
    NEVER = "never"              # reconnect mode `never`: a broken stream is not reopened
    MAY_HAVE_ACTED = "may_have_acted"  # not idempotent, and the request may have been acted on
    NO_EVENT_IDS = "no_event_ids"      # not idempotent, events delivered, and no id to resume from


class Decision(NamedTuple):
    verdict: Verdict
    reason: Reason = Reason.NONE


def decide(outcome: Outcome, *, idempotent: bool, delivered: bool, has_ids: bool, mode: str) -> Decision:
    """What to do after an attempt ended with `outcome`.

    idempotent: the request's method is idempotent; delivered: the connection that just
    ended delivered events; has_ids: the source delivered events and holds a last event
    id to resume from; mode: the reconnect mode (error | always | never), which governs
    only a stream that opened (connection attempts are retried in every mode)."""
    resumable = idempotent or has_ids
    if outcome is Outcome.FATAL:
        return Decision(Verdict.FAIL)
    if outcome is Outcome.STOPPED:
        return Decision(Verdict.DONE)
    if outcome in (Outcome.NOT_SENT, Outcome.DECLINED):
        return Decision(Verdict.RETRY)
    if outcome is Outcome.NO_ANSWER:
        return Decision(Verdict.RETRY) if resumable else Decision(Verdict.FAIL, Reason.MAY_HAVE_ACTED)
    if outcome is Outcome.CUT:
        if delivered and not resumable:
            return Decision(Verdict.FAIL, Reason.NO_EVENT_IDS)
        if mode == "never":
            return Decision(Verdict.FAIL, Reason.NEVER)
        return Decision(Verdict.RETRY) if resumable else Decision(Verdict.FAIL, Reason.MAY_HAVE_ACTED)
    if outcome is Outcome.END:
        return Decision(Verdict.RETRY if mode == "always" and resumable else Verdict.DONE)
    raise ValueError(f"unknown outcome {outcome!r}")
