"""Follow HTTP redirects hop by hop: each hop is judged before it is requested, and the
user's credentials never cross an origin.

aiohttp can follow redirects by itself, but then its caller sees none of the hops (a
destination guard behind an HTTP proxy, which resolves names itself, never sees where a
redirect leads), and it strips only Authorization, Cookie and Proxy-Authorization when the
origin changes. Here every Location is resolved against the current URL, handed to the
run's `check_hop` (which may refuse it), and sent with the user's credentials (token,
api-key header, auth-like headers, cookies, URL userinfo) only while it stays on the first
URL's origin (scheme, host, port), as browsers and `requests` do. Once dropped they stay
dropped for the rest of the chain.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from .errors import FailureKind, FaninError
from .redact import redact_url

__all__ = ["MAX_HOPS", "REDIRECT_STATUSES", "HopCheck", "RedirectError", "origin", "request_following_redirects"]

MAX_HOPS = 10  # redirects followed per request (aiohttp's own default)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "content-language",
                           "content-location"})

HopCheck = Callable[[URL], Awaitable[None]]


class RedirectError(FaninError):
    """A redirect that cannot be followed (too many, a bad or non-HTTP Location)."""

    def __init__(self, message: str, kind: FailureKind = FailureKind.REDIRECT) -> None:
        super().__init__(message)
        self.kind = kind


def origin(url: URL) -> tuple[str, str, int | None]:
    """(scheme, host, port), the port made explicit (http://h and http://h:80 are one origin)."""
    return url.scheme.lower(), (url.host or "").lower(), url.port


def _basic(user: str, password: str) -> str:
    """URL userinfo as an Authorization value (latin-1 as aiohttp and browsers, else UTF-8)."""
    pair = f"{user}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _next_url(current: URL, location: str, source: str) -> URL:
    shown = redact_url(location)
    try:
        target = current.join(URL(location))
    except (ValueError, TypeError):
        raise RedirectError(f"bad redirect Location {shown!r} from {source}") from None
    if target.scheme not in ("http", "https"):
        raise RedirectError(f"redirect to a non-HTTP URL {shown!r} from {source}")
    if not target.raw_host:
        raise RedirectError(f"bad redirect Location {shown!r} from {source}")
    # A server's Location never makes us send credentials: userinfo in it is dropped.
    return target.with_user(None).with_fragment(None)


async def request_following_redirects(
    session: aiohttp.ClientSession, method: str, url: str, *, params: Any, headers: dict[str, str],
    data: bytes | None, timeout: aiohttp.ClientTimeout, is_credential: Callable[[str], bool],
    check_hop: HopCheck | None = None, trail: list[URL] | None = None, shown: str | None = None,
) -> aiohttp.ClientResponse:
    """The final response of `url` after at most MAX_HOPS redirects. Every requested URL is
    appended to `trail` (for error messages) after `check_hop` accepted it. A 3xx without a
    Location is returned as it is. `shown` is `url` as errors may name it (masked)."""
    shown = shown or redact_url(url)
    trail = [] if trail is None else trail
    current = URL(url)
    if current.raw_user is not None or current.raw_password is not None:
        if not any(name.lower() == "authorization" for name in headers):  # an explicit header wins
            headers = {**headers, "Authorization": _basic(current.user or "", current.password or "")}
        current = current.with_user(None)
    home = origin(current)
    stripped: dict[str, str] | None = None  # the headers without credentials, once an origin was left
    hop = 0
    while True:
        if check_hop is not None:
            try:
                await check_hop(current)
            except FaninError as exc:
                if hop:
                    raise RedirectError(f"redirect from {shown} to {redact_url(str(current))} not followed: {exc}",
                                        FailureKind(getattr(exc, "kind", FailureKind.REFUSED_DESTINATION))) from None
                raise
        trail.append(current)
        resp = await session.request(
            method, current, params=params if hop == 0 else None,
            headers=headers if stripped is None else stripped, data=data, timeout=timeout, allow_redirects=False,
            auto_decompress=False,  # fanin.decoding decodes every coding, bounded
        )
        if resp.status not in REDIRECT_STATUSES:
            return resp
        location = resp.headers.get("Location")
        if location is None:
            return resp
        resp.release()
        if hop >= MAX_HOPS:
            raise RedirectError(f"too many redirects (more than {MAX_HOPS}) from {shown}")
        target = _next_url(current, location, shown)
        if (resp.status == 303 and method != "HEAD") or (resp.status in (301, 302) and method == "POST"):
            method, data = "GET", None  # what browsers do; 307/308 keep the method and body
            headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
            if stripped is not None:
                stripped = {k: v for k, v in stripped.items() if k.lower() not in _BODY_HEADERS}
        if stripped is None and origin(target) != home:
            stripped = {k: v for k, v in headers.items() if not is_credential(k)}
        current = target
        hop += 1
