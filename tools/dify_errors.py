"""Dify's refusals: the JSON body `{"code", "message", "status"}` of an error response, read
from the response itself, and what the app tool tells the user about each.

The engine reports a failure's kind, HTTP status and Retry-After (typed fields), but not
the body that says *which* refusal it was (`not_chat_app` or `invalid_param` are both 400;
`too_many_requests` and `rate_limit_error` are both 429). So the app tool's session carries
an aiohttp trace hook that reads the start of every error body once, before the engine sees
the response. Decisions are made on these fields and the engine's kind, never on wording.

Two 429s, from Dify's API reference (errors): `too_many_requests` is Dify's own limit on
the app (the request was refused before anything ran: the engine retries it, waiting at
least as long as Retry-After asks); `rate_limit_error` is the model provider's quota, which
a retry does not fix: the hook ends the attempt at once so it is not retried."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from fanin.embed.netguard import AddressGuard
from fanin.errors import FaninError, FailureKind
from fanin.redact import Secrets

__all__ = ["DifyRefusal", "RefusalLog", "explain", "QUOTA_CODE", "BUSY_CODE"]

QUOTA_CODE = "rate_limit_error"     # the provider's quota: not retried
BUSY_CODE = "too_many_requests"     # Dify's rate limit on the app: retried, Retry-After honoured
_BODY_LIMIT = 16 * 1024
_WRONG_TYPE = {
    "not_chat_app": "app_type: this Dify app is not a chat, agent or chatflow app; choose app_type workflow"
                    " or completion",
    "not_workflow_app": "app_type: this Dify app is not a workflow app; choose app_type chatflow (chat, agent,"
                        " chatflow apps) or completion",
}


@dataclass
class DifyRefusal:
    status: int
    code: str = ""          # Dify's error code; "" when the body was not Dify's JSON
    message: str = ""
    retry_after: str = ""   # the Retry-After header as sent

    def detail(self) -> str:
        if self.code:
            return f"HTTP {self.status} {self.code}: {self.message}".rstrip(": ")
        return f"HTTP {self.status}"


class QuotaExhausted(FaninError):
    """Raised from the trace hook on a `rate_limit_error` 429, so the engine fails the
    attempt at once (kind http_429) instead of retrying what a retry cannot fix."""

    kind = FailureKind.HTTP_429


class RefusalLog:
    """The last refusal one app call met, read by the session's trace hook."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.last: DifyRefusal | None = None
        self.seen = 0    # refusals so far (a retried 429 counts each time)

    def session(self, guard: AddressGuard) -> aiohttp.ClientSession:
        """The session the engine uses for this call: fanin.merge.make_session's settings
        (no connection cap, proxies from the environment only when set), the guard's sockets,
        and the trace hook."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_request_end)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300,
                                         socket_factory=guard.socket_factory)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                     trust_env=bool(urllib.request.getproxies()), auto_decompress=True,
                                     trace_configs=[trace])

    async def _on_request_end(self, _session: Any, _context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        response = params.response
        if response.status < 400:
            return
        refusal = DifyRefusal(response.status, retry_after=response.headers.get("Retry-After", "")[:64])
        raw = await _read_start(response)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            refusal.code = self.secrets.scrub(body["code"])[:80]
            refusal.message = " ".join(self.secrets.scrub(str(body.get("message") or "")).split())[:300]
        self.last = refusal
        self.seen += 1
        if refusal.status == 429 and refusal.code == QUOTA_CODE:
            raise QuotaExhausted(f"{refusal.code} from the app (not retried)")


async def _read_start(response: aiohttp.ClientResponse) -> bytes:
    """Up to _BODY_LIMIT bytes of the body, within 2 s; what is not read is dropped with the
    response (the engine does not read error bodies it was beaten to)."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(2):
            while size < _BODY_LIMIT:
                piece = await response.content.read(_BODY_LIMIT - size)
                if not piece:
                    break
                parts.append(piece)
                size += len(piece)
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        pass
    return b"".join(parts)


def explain(kind: FailureKind | str | None, http_status: int | None, refusal: DifyRefusal | None,
            error: str, app_type: str, *, retried: int = 0) -> str:
    """One line for a failed app call, chosen on the failure's kind, its HTTP status and
    Dify's error code; `error` (the engine's line) is only quoted."""
    status = http_status
    if status is None and kind == FailureKind.HTTP_429 and refusal is not None:
        status = refusal.status   # a quota 429 the hook ended before the engine saw the status
    code = refusal.code if refusal and refusal.status == status else ""
    detail = refusal.detail() if code else error
    if code in _WRONG_TYPE:
        return _WRONG_TYPE[code]
    if app_type == "completion" and code == "app_unavailable":
        return ("app_type: this Dify app is not a text generator (completion) app, or it is unavailable;"
                " choose app_type chatflow or workflow to match the app")
    if kind == FailureKind.HTTP_429 or status == 429:
        if code == QUOTA_CODE:
            return (f"the model provider's quota for this Dify app is used up ({QUOTA_CODE}); not retried,"
                    f" as waiting does not restore a quota: raise the quota or switch the model ({detail})")
        waited = " as Retry-After asked" if refusal and refusal.retry_after else ""
        tries = f"retried {retried} time{'s' if retried != 1 else ''}{waited}" if retried else "not retried"
        name = code or "HTTP 429"
        return (f"the Dify app is rate limited ({name}); Dify refused the request before running it, {tries};"
                f" try again later ({detail})")
    if status in (401, 403):
        return f"the Dify app refused the API key ({detail})"
    if status == 404:
        if code:
            return f"the Dify app found no such conversation or run; check conversation_id ({detail})"
        return f"no Dify app API at this address; api_base should end in /v1 ({detail})"
    if status == 400:
        return f"the Dify app rejected the request; check query, inputs and conversation_id ({detail})"
    return detail
