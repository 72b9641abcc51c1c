"""What to send for one source (`Request`) and how every source of a run connects
(`StreamConfig`): the request model, checked before anything is sent. Nothing here does
I/O; `fanin.stream` turns these into connections."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from yarl import URL

from .decision import RECONNECT_MODES
from .errors import UsageError
from .parser import DEFAULT_MAX_ID_SIZE, DEFAULT_MAX_LINE_SIZE
from .redact import Secrets, is_secret_name, redact_url

__all__ = ["MISSING", "host_problem", "Request", "StreamConfig", "RECONNECT_MODES", "AUTH_TYPES", "IDEMPOTENT_METHODS"]

class _Missing:
    """The 'no JSON body' marker. Pickled by name, so a request sent to a `--workers`
    process still has no JSON body there (a plain object() would arrive as a new object)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
AUTH_TYPES = ("none", "bearer", "api_key")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHOD_OK = _TOKEN_CHARS
# What a host name may hold once in its ASCII form (IDNA done by yarl): LDH labels, plus
# "_" for service names on private networks. A space or "%" can never be looked up.
_HOST_CHARS = frozenset("-._0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110, 9.2.2


def _check_header(name: str, value: str, *, secret: bool = False) -> None:
    if not name or not set(name) <= _TOKEN_CHARS:
        raise UsageError(f"bad header name {name!r}: use letters, digits and - only")
    if any(c in value for c in "\r\n\0"):
        shown = "(secret value)" if secret else "value"
        raise UsageError(f"header {name!r} {shown} contains CR, LF or NUL; that would split the request")


def host_problem(host: str) -> str | None:
    """Why a URL's host (in its ASCII form, as yarl's raw_host gives it) can never be
    looked up, or None. Letters, digits, '-', '.' and '_' only (underscores stay allowed:
    service names on private networks use them); DNS limits: no empty label, labels up to
    63 characters, names up to 253; an `xn--` label must be valid punycode."""
    if ":" in host:  # an IPv6 literal; yarl has checked it
        return None
    bad = next((c for c in host if c not in _HOST_CHARS), None)
    if bad is not None:
        return f"host name contains {bad!r} (letters, digits, '-', '_' and '.' only)"
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return f"host name longer than 253 characters ({len(name)})"
    for label in name.split("."):
        if not label:
            return "host name has an empty label"
        if len(label) > 63:
            return f"host name label longer than 63 characters ({len(label)})"
        if label[:4].lower() == "xn--":
            try:
                label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                return f"host name label {label[:70]!r} is not valid punycode"
    return None


@dataclass
class Request:
    """What to send for one source. Re-sent as is on every reconnect."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    params: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | str | None = None
    json: Any = MISSING
    auth_type: str = "none"
    auth_token: str | None = None
    auth_header: str = "Authorization"

    @property
    def display_url(self) -> str:
        """The URL as shown in output and errors (credential-like parts masked)."""
        return self.secrets.display_url(self.url)

    @property
    def secrets(self) -> Secrets:
        """Every form of every credential this request sends (see fanin/redact.py)."""
        return Secrets.of_request(self)

    def is_credential(self, header: str) -> bool:
        """Whether a header carries a credential (dropped when a redirect leaves the origin)."""
        return is_secret_name(header) or (self.auth_type == "api_key" and header.lower() == self.auth_header.lower())

    def validate(self) -> None:
        """Raises UsageError: one line, every secret of this request masked."""
        try:
            self._validate()
        except UsageError as exc:
            raise UsageError(self.secrets.scrub(str(exc))) from None

    def _validate(self) -> None:
        try:
            url = URL(self.url)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"bad URL {redact_url(str(self.url))!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise UsageError(
                f"bad URL {redact_url(self.url)!r}: need an absolute http:// or https:// URL with a host"
            )
        problem = host_problem(url.raw_host)
        if problem:
            raise UsageError(f"bad URL {redact_url(self.url)!r}: {problem}")
        if not self.method or not set(self.method) <= _METHOD_OK:
            raise UsageError(f"bad HTTP method {self.method!r}")
        for name, value in self.headers.items():
            _check_header(name, value, secret=self.is_credential(name))
        if self.auth_type not in AUTH_TYPES:
            raise UsageError(f"bad auth type {self.auth_type!r}: choose one of {', '.join(AUTH_TYPES)}")
        if self.auth_type != "none":
            if not self.auth_token:
                raise UsageError(f"auth type {self.auth_type!r} needs a token")
            if any(c in self.auth_token for c in "\r\n\0"):
                raise UsageError("the auth token contains CR, LF or NUL")
            if self.auth_type == "api_key":
                _check_header(self.auth_header, "")
        if self.body is not None and self.json is not MISSING:
            raise UsageError("give either a raw body or a JSON body, not both")
        self.body_bytes()  # a JSON body that cannot be serialised is refused now, not mid-run

    def build_headers(self, last_event_id: str) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        headers.update(self.headers)
        if self.auth_type == "bearer":
            headers["Authorization"] = f"Bearer {self.auth_token}"
        elif self.auth_type == "api_key":
            headers[self.auth_header] = self.auth_token or ""
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        else:
            headers.pop("Last-Event-ID", None)
        return headers

    def body_bytes(self) -> bytes | None:
        if self.json is not MISSING:
            try:
                return orjson.dumps(self.json)
            except orjson.JSONEncodeError as exc:
                raise UsageError(f"the JSON body cannot be serialised: {exc}") from None
        if isinstance(self.body, str):
            return self.body.encode()
        return self.body


@dataclass
class StreamConfig:
    """Connection behaviour shared by every source of one run."""

    connect_timeout: float = 30.0
    idle_timeout: float | None = None
    retries: int = 3
    reconnect: str = "error"
    max_line_size: int = DEFAULT_MAX_LINE_SIZE
    max_id_size: int = DEFAULT_MAX_ID_SIZE  # bytes of one `id:` value; a longer one fails the source
    last_event_id: str = ""
    default_retry_ms: int = 1000
    max_backoff: float = 30.0
    stop_on: str | None = None  # end a source when an event's data equals this (the event is not emitted)

    def validate(self) -> None:
        if self.reconnect not in RECONNECT_MODES:
            raise UsageError(f"bad reconnect mode {self.reconnect!r}: choose one of {', '.join(RECONNECT_MODES)}")
        for name in ("connect_timeout", "max_backoff"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise UsageError(f"{name.replace('_', '-')} must be a positive number of seconds, got {value!r}")
        if self.idle_timeout is not None and not (self.idle_timeout > 0 and math.isfinite(self.idle_timeout)):
            raise UsageError(f"idle-timeout must be a positive number of seconds, got {self.idle_timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise UsageError(f"retries must be a whole number >= 0, got {self.retries!r}")
        if not isinstance(self.max_line_size, int) or self.max_line_size < 16:
            raise UsageError(f"max-line-size must be at least 16 bytes, got {self.max_line_size!r}")
        if not isinstance(self.max_id_size, int) or self.max_id_size < 1:
            raise UsageError(f"max-id-size must be at least 1 byte, got {self.max_id_size!r}")
        if any(c in self.last_event_id for c in "\r\n\0"):
            raise UsageError("last-event-id contains CR, LF or NUL")
