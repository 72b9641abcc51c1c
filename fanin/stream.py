"""One SSE source: the request, response validation, reading and reconnecting.

A connection attempt either ends the source (completed: clean end, 204; failed: a fatal
status, a wrong content type, an oversized event) or raises `Reconnect`, which the
tenacity policy in `retry.py` turns into a wait and another attempt carrying
`Last-Event-ID`. Every network read is parsed at once and handed on as one batch of
stamped events, so the merger pays one queue operation per read, not per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from .budget import process_budget
from .errors import EventTooLargeError, FailureKind, FaninError, UsageError
from .events import Batch, SourceReport
from .parser import DEFAULT_MAX_ID_SIZE, DEFAULT_MAX_LINE_SIZE, SSEParser
from .redact import Secrets, is_secret_name, redact_url
from .redirects import HopCheck, RedirectError, request_following_redirects
from .retry import Reconnect, ReconnectPolicy, retry_after_seconds

__all__ = [
    "MISSING",
    "host_problem",
    "Request",
    "StreamConfig",
    "StreamObserver",
    "SSEStream",
    "StreamFailed",
    "RECONNECT_MODES",
    "AUTH_TYPES",
]

class _Missing:
    """The 'no JSON body' marker. Pickled by name, so a request sent to a `--workers`
    process still has no JSON body there (a plain object() would arrive as a new object)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
READ_SIZE = 65536  # bytes per read: bounds one batch (and so the merger's memory per source)
RECONNECT_MODES = ("error", "always", "never")
AUTH_TYPES = ("none", "bearer", "api_key")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHOD_OK = _TOKEN_CHARS
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})  # RFC 9110, 9.2.2


class StreamFailed(FaninError):
    """The source ended for good with an error (no further reconnect)."""

    def __init__(self, kind: FailureKind, message: str, *, http_status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.retry_after = retry_after


def _check_header(name: str, value: str, *, secret: bool = False) -> None:
    if not name or not set(name) <= _TOKEN_CHARS:
        raise UsageError(f"bad header name {name!r}: use letters, digits and - only")
    if any(c in value for c in "\r\n\0"):
        shown = "(secret value)" if secret else "value"
        raise UsageError(f"header {name!r} {shown} contains CR, LF or NUL; that would split the request")


def host_problem(host: str) -> str | None:
    """Why a URL's host (in its ASCII form, as yarl's raw_host gives it) can never be
    looked up, or None. DNS limits: no empty label, labels up to 63 characters, names up
    to 253; an `xn--` label must be valid punycode. Underscores stay allowed (service
    names on private networks use them)."""
    if ":" in host:  # an IPv6 literal; yarl has checked it
        return None
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


class StreamObserver:
    """Hooks for metrics (used by `fanin load`). Every method is a cheap no-op here."""

    def on_connect(self, source: int, connect_ns: int) -> None: ...
    def on_bytes(self, source: int, n: int) -> None: ...
    def on_failure(self, source: int, kind: str, message: str) -> None: ...
    def on_reconnect(self, source: int) -> None: ...
    def on_end(self, source: int, status: str) -> None: ...


_NULL_OBSERVER = StreamObserver()

Deliver = Callable[[Batch], Awaitable[None]]


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    return retry_after_seconds(resp.headers.get("Retry-After", ""))


async def _excerpt(resp: aiohttp.ClientResponse, secrets: Secrets, limit: int = 300) -> str:
    """The start of an error response's body on one line (servers such as Dify explain
    the refusal there). Bounded in size and time. Secrets are masked before the cut, and
    enough is read past it that a secret starting before the cut is masked whole."""
    try:
        async with asyncio.timeout(2):
            raw = await resp.content.read(limit * 4 + secrets.longest)
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        return ""
    text = " ".join(secrets.scrub(raw.decode("utf-8", "replace")).split())
    return text[:limit] + ("..." if len(text) > limit else "")


async def _read_or_idle(content: aiohttp.StreamReader, idle: float) -> bytes:
    """The next bytes of the body; TimeoutError only after `idle` seconds of waiting with
    nothing buffered. Bytes already received always come back first, however long the
    consumer kept us from reading (only the wait for new bytes is timed)."""
    try:
        async with asyncio.timeout(idle):
            return await content.read(READ_SIZE)
    except TimeoutError:
        late = content.read_nowait(READ_SIZE)  # bytes that landed as the timer fired
        if late:
            return late
        raise


def _received_before_the_error(content: aiohttp.StreamReader) -> bytes:
    """The bytes a broken connection had already delivered. aiohttp's reads raise the error
    before handing out what is still buffered, and under backpressure (a slow consumer) that
    can be many events. There is no public way to take them, so the error is set aside for
    one non-blocking read; on an aiohttp without that attribute nothing is taken (the old
    loss, never a crash)."""
    error = getattr(content, "_exception", None)
    if error is None:
        return b""
    content._exception = None
    try:
        return content.read_nowait(-1)
    except Exception:  # whatever this aiohttp does, the caller still raises the original error
        return b""
    finally:
        content._exception = error


def _guard_kind(exc: BaseException) -> FailureKind:
    """The kind a destination guard (or hop check) names on its refusal."""
    try:
        return FailureKind(getattr(exc, "kind", FailureKind.REFUSED_DESTINATION))
    except ValueError:
        return FailureKind.REFUSED_DESTINATION


def _content_type_essence(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class SSEStream:
    """One source read to its end, reconnecting per `StreamConfig.reconnect`."""

    def __init__(self, session: aiohttp.ClientSession, source: int, request: Request,
                 config: StreamConfig, observer: StreamObserver | None = None, *,
                 check_hop: HopCheck | None = None, open_gate: asyncio.Semaphore | None = None) -> None:
        self.session = session
        self.source = source
        self.request = request
        self.config = config
        self.observer = observer or _NULL_OBSERVER
        self.check_hop = check_hop  # judges every URL (first and each redirect) before it is requested
        # Shared by the sources of one run: bounds the requests waiting for their response
        # headers at once (see FanIn). The connect timeout starts once a place is held.
        self.open_gate = open_gate or contextlib.nullcontext()
        self.secrets = request.secrets  # the boundary: every text this source makes passes secrets.scrub
        self.url = self.secrets.display_url(request.url)
        self.report = SourceReport(source, self.url)
        self.stopped_by_stop_on = False
        self.parser = SSEParser(last_event_id=config.last_event_id, max_line_size=config.max_line_size,
                                budget=process_budget(), max_id_size=config.max_id_size)
        self.policy = ReconnectPolicy(
            retries=config.retries, default_retry_ms=config.default_retry_ms, max_backoff=config.max_backoff
        )
        self._body = request.body_bytes()
        self._json_type = request.json is not MISSING
        # No sock_read: aiohttp's read timer fails the body even when bytes are buffered, so
        # a slow consumer lost events; the idle gap is timed around each read instead.
        self._timeout = aiohttp.ClientTimeout(total=None)

    # ------------------------------------------------------------------ public
    async def run(self, deliver: Deliver) -> SourceReport:
        """Read until the source ends; returns (and keeps) the source's report.

        Never raises for stream failures: they land in report.status/error. Cancellation
        propagates (the caller is shutting everything down) and marks the source stopped.
        """
        try:
            try:
                await self._attempt(deliver)
            except Reconnect as first:
                # The retry machinery is built only now: held by every stream for its whole
                # life it costs ~3 KiB each (10,000 streams: 30 MiB). Its first attempt
                # re-raises this failure, so it decides and waits exactly as if it had run it.
                replay = [first]

                async def attempt(deliver: Deliver) -> None:
                    if replay:
                        raise replay.pop()
                    await self._attempt(deliver)

                await self.policy.retrying(before_sleep=self._before_sleep)(attempt, deliver)
            self.report.status = "completed"
        except Reconnect as exc:  # retries exhausted
            if exc.kind == FailureKind.CLEAN_END:
                self.report.status = "completed"
            else:
                self._fail(exc.kind, self._with_attempts(str(exc)), exc.http_status, exc.retry_after)
        except StreamFailed as exc:
            self._fail(exc.kind, str(exc), exc.http_status, exc.retry_after)
        except asyncio.CancelledError:
            if self.report.status == "pending":
                self.report.status = "stopped"
            raise
        except Exception as exc:  # a bug, a raising observer, a library error nobody foresaw
            self.fail_unexpected(exc)
        self.observer.on_end(self.source, self.report.status)
        return self.report

    # ----------------------------------------------------------------- internals
    def _clean(self, message: str) -> str:
        """A message as it may be shown: every form of every secret masked (some aiohttp
        errors quote the raw URL, query-string credentials included; servers echo tokens),
        on one line (some aiohttp errors span several)."""
        return " ".join(self.secrets.scrub(message).split())

    def fail_unexpected(self, exc: BaseException) -> None:
        """Mark the source failed by an exception nobody planned for, in one clean line:
        such a source must never end up counted as completed."""
        text = self._clean(str(exc))  # masked before the cut, never after
        text = text[:300] + ("..." if len(text) > 300 else "")
        self._fail(FailureKind.INTERNAL, f"unexpected error: {exc.__class__.__name__}" + (f": {text}" if text else ""))

    def _fail(self, kind: FailureKind, message: str, http_status: int | None = None,
              retry_after: float | None = None) -> None:
        self.report.fail(kind, self._clean(message), http_status, retry_after)

    def _with_attempts(self, message: str) -> str:
        attempts = self.policy.failures
        return f"{message} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})" if attempts > 1 else message

    def _before_sleep(self, state) -> None:
        self.report.reconnects += 1
        self.observer.on_reconnect(self.source)

    async def _attempt(self, deliver: Deliver) -> None:
        try:
            try:
                await self._connect_and_read(deliver)
            except Reconnect as exc:
                if not self._may_resend(exc):
                    raise StreamFailed(
                        exc.kind, f"{exc}; not re-sending the {self.request.method} request, which the server"
                        " may have acted on", http_status=exc.http_status, retry_after=exc.retry_after,
                    ) from None
                raise
        except Reconnect as exc:
            self.policy.record(exc)
            self.policy.server_retry_ms = self.parser.retry_ms
            if exc.counts_as_failure:
                self.observer.on_failure(self.source, exc.kind, self._clean(str(exc)))
            raise
        except StreamFailed as exc:
            self.observer.on_failure(self.source, exc.kind, self._clean(str(exc)))
            raise

    async def _open(self) -> aiohttp.ClientResponse:
        req = self.request
        headers = req.build_headers(self.parser.last_event_id)
        if self._json_type:
            headers.setdefault("Content-Type", "application/json")
        start = time.monotonic_ns()
        trail: list[URL] = []  # the URLs requested so far: redirects are followed hop by hop
        try:
            async with self.open_gate, asyncio.timeout(self.config.connect_timeout):
                resp = await request_following_redirects(
                    self.session, req.method, req.url, params=req.params or None, headers=headers,
                    data=self._body, timeout=self._timeout, is_credential=req.is_credential,
                    check_hop=self.check_hop, trail=trail, shown=self.url,
                )
        except TimeoutError:
            raise Reconnect(FailureKind.TIMEOUT, f"no response within {self.config.connect_timeout:g}s from {self.url}") from None
        except RedirectError as exc:
            raise StreamFailed(exc.kind, str(exc)) from None
        except aiohttp.InvalidURL as exc:
            raise StreamFailed(FailureKind.BAD_URL, f"bad URL {self._where(trail)!r}: {exc}") from None
        except aiohttp.ClientSSLError as exc:
            raise StreamFailed(FailureKind.TLS, f"TLS error talking to {self._where(trail)}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, FaninError):  # a destination guard refused the address
                raise StreamFailed(_guard_kind(exc.os_error),
                                   f"{exc.os_error} ({self._where(trail)})") from None
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            kind = FailureKind.REFUSED if refused else FailureKind.NETWORK
            if refused:
                reason = "connection refused"
            else:
                reason = (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else str(exc)
            raise Reconnect(kind, f"cannot connect to {self._where(trail)}: {reason}", maybe_processed=False) from None
        except aiohttp.ClientError as exc:
            raise Reconnect(FailureKind.NETWORK, f"network error from {self._where(trail)}:"
                                       f" {exc.__class__.__name__}: {exc}") from None
        except FaninError as exc:  # e.g. a destination guard refusing the address
            raise StreamFailed(_guard_kind(exc), str(exc)) from None
        excerpt = ""
        if 400 <= resp.status < 500 and resp.status not in (408, 429):
            excerpt = await _excerpt(resp, self.secrets)
        self._check_response(resp, excerpt)
        self.observer.on_connect(self.source, time.monotonic_ns() - start)
        return resp

    def _where(self, trail: list[URL]) -> str:
        """The source's URL, and the hop that failed when a redirect led elsewhere (masked
        like every URL; the message is scrubbed again when it becomes a report)."""
        if len(trail) < 2:
            return self.url
        return f"{redact_url(str(trail[-1]))} (redirected from {self.url})"

    def _check_response(self, resp: aiohttp.ClientResponse, excerpt: str = "") -> None:
        """Open the stream (200 + text/event-stream), stop (204), retry or fail; `excerpt`
        is the start of a 4xx body, added to the error."""
        status = resp.status
        if status == 200:
            ctype = resp.headers.get("Content-Type", "")
            if _content_type_essence(ctype) != "text/event-stream":
                resp.release()
                shown = ctype or "none"
                raise StreamFailed(
                    FailureKind.CONTENT_TYPE,
                    f"wrong content type {shown!r} from {self.url} (expected text/event-stream)", http_status=status)
            return
        reason = f"HTTP {status} {resp.reason or ''}".rstrip() + f" from {self.url}"
        resp.release()
        if status == 204:
            raise _NoMoreEvents()
        if status in (408, 429) or status >= 500:
            kind = {408: FailureKind.HTTP_408, 429: FailureKind.HTTP_429}.get(status, FailureKind.HTTP_5XX)
            retry_after = _retry_after(resp)
            # 408, 429 and a 503 that names a time to come back say the request was not acted on.
            refused = status in (408, 429) or (status == 503 and retry_after is not None)
            raise Reconnect(kind, reason, retry_after=retry_after, maybe_processed=not refused, http_status=status)
        if 400 <= status < 500:
            raise StreamFailed(FailureKind.HTTP_4XX, f"{reason}: {excerpt}" if excerpt else reason,
                               http_status=status, retry_after=_retry_after(resp))
        raise StreamFailed(FailureKind.HTTP_STATUS, f"{reason} (expected 200 with text/event-stream)",
                           http_status=status)

    async def _connect_and_read(self, deliver: Deliver) -> None:
        try:
            resp = await self._open()
        except _NoMoreEvents:
            return  # 204: the server says there is nothing more; stop without retrying
        parser = self.parser
        parser.new_connection()
        source, url, observer = self.source, self.url, self.observer
        delivered_here = 0
        idle = self.config.idle_timeout
        try:
            content = resp.content
            while True:
                cut: Reconnect | None = None
                try:
                    chunk = await content.read(READ_SIZE) if idle is None else await _read_or_idle(content, idle)
                except TimeoutError:
                    raise Reconnect(FailureKind.IDLE, f"no data for {self.config.idle_timeout:g}s from {url}") from None
                except aiohttp.ClientPayloadError:
                    chunk, cut = _received_before_the_error(content), Reconnect(
                        FailureKind.TRUNCATED, f"connection cut mid-stream by {url}")
                except (aiohttp.ClientError, ConnectionError) as exc:
                    chunk, cut = _received_before_the_error(content), Reconnect(
                        FailureKind.NETWORK, f"connection lost from {url}: {exc.__class__.__name__}")
                if not chunk:
                    if cut is not None:
                        raise cut
                    break
                arrival = time.monotonic_ns()
                wall = time.time_ns()
                observer.on_bytes(source, len(chunk))
                try:
                    messages = parser.feed_tuples(chunk)
                except EventTooLargeError as exc:
                    messages = exc.events
                    if messages:
                        await self._deliver(deliver, messages, arrival, wall)
                    raise StreamFailed(FailureKind.TOO_LARGE, f"{exc} from {url}") from None
                if messages:
                    delivered_here += len(messages)
                    await self._deliver(deliver, messages, arrival, wall)
                if cut is not None:
                    raise cut
        except _NoMoreEvents:
            return  # stop_on matched: this source is done
        except Reconnect as exc:
            if delivered_here and not self._may_resend():
                raise StreamFailed(
                    exc.kind,
                    f"{exc} after {self.report.events} events; not re-sending the {self.request.method} request"
                    " because the stream carries no event ids", http_status=exc.http_status,
                ) from None
            if self.config.reconnect == "never":
                raise StreamFailed(exc.kind, str(exc), http_status=exc.http_status, retry_after=exc.retry_after) from None
            raise
        finally:
            resp.release()
            parser.new_connection()  # a partial line or event dies with its connection (and frees its budget)
        # Clean end of the body.
        if self.config.reconnect == "always":
            if not self._may_resend():
                return
            raise Reconnect(FailureKind.CLEAN_END, f"stream ended by {url}", counts_as_failure=delivered_here == 0)

    def _may_resend(self, exc: Reconnect | None = None) -> bool:
        """Whether the request may go out again. Idempotent methods: always. Others (POST
        runs an LLM call or a Dify app): when the stream resumes by event id after
        delivering events, or when `exc` proves the request was not acted on (no
        connection, 408, 429, 503 with Retry-After); never after a timeout, a 5xx or a
        cut that may have come after the server started the work."""
        if self.request.method.upper() in _IDEMPOTENT:
            return True
        if self.report.events and self.parser.last_event_id:
            return True
        return exc is not None and not exc.maybe_processed

    async def _deliver(self, deliver: Deliver, messages: list, arrival: int, wall: int) -> None:
        stop_on = self.config.stop_on
        if stop_on is not None:
            for index, m in enumerate(messages):
                if m[1] == stop_on:
                    messages = messages[:index]
                    self.stopped_by_stop_on = True
                    break
        if messages:
            self.report.events += len(messages)
            self.policy.delivered()
            await deliver(Batch(self.source, self.url, arrival, wall, messages))
        if self.stopped_by_stop_on:
            raise _NoMoreEvents()


class _NoMoreEvents(Exception):
    """HTTP 204: stop cleanly."""
