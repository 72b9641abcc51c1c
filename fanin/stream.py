"""One SSE source on the wire: response validation, reading and reconnecting.

Each connection attempt ends in one `Ending` (how it ended: an `Outcome` plus the kind and
message a report shows); `fanin.decision.decide` says whether to try again, fail or stop,
and `fanin.retry.ReconnectPolicy` how long to wait and when to give up. Every network
read is parsed at once and handed on as one batch of stamped events, so the merger pays
one queue operation per read, not per event. What to send is `fanin.request`.
"""

from __future__ import annotations

import asyncio
# Loaded now, not on a first connection or a first failure: an import then needs a free
# file descriptor, and a process out of them turned a retryable failure into an
# "internal" one. concurrent.futures.thread is the resolver's thread pool.
import concurrent.futures.thread  # noqa: F401
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .aiohttp_compat import MALFORMED_BODY, body_error_detail, received_before_the_error, surface_body_errors
from .budget import process_budget
from .decision import Outcome, Reason, Verdict, decide
from .decoding import ACCEPT_ENCODING, SUPPORTED, BodyDecoder, DecodeError, UnsupportedCoding, decoder_for
from .error_body import shown_excerpt
from .errors import EventTooLargeError, FailureKind, FaninError
from .events import Batch, SourceReport
from .parser import SSEParser
from .redact import Secrets, redact_url
from .redirects import HopCheck, RedirectError, request_following_redirects
from .request import AUTH_TYPES, IDEMPOTENT_METHODS, MISSING, RECONNECT_MODES, Request, StreamConfig, host_problem
from .retry import ReconnectPolicy, retry_after_seconds

__all__ = [
    "MISSING",
    "host_problem",
    "Request",
    "StreamConfig",
    "StreamObserver",
    "SSEStream",
    "Ending",
    "RECONNECT_MODES",
    "AUTH_TYPES",
]

READ_SIZE = 65536  # bytes per read: bounds one batch (and so the merger's memory per source)
EXCERPT_READ = 8192  # bytes of an error body read for its excerpt (an HTML page's text may start late)


@dataclass(slots=True)
class Ending:
    """How one connection attempt ended: what `decide` needs (the outcome) and what the
    report shows (kind, message, status). kind is None for a clean end or a stop."""

    outcome: Outcome
    kind: FailureKind | None = None
    message: str = ""
    http_status: int | None = None
    retry_after: float | None = None


_STOPPED = Ending(Outcome.STOPPED)


class _Ended(Exception):
    """Carries an Ending out of the helpers of one attempt (caught in `_attempt`)."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.message)
        self.ending = ending


def _ended(outcome: Outcome, kind: FailureKind, message: str, *, http_status: int | None = None,
           retry_after: float | None = None) -> _Ended:
    return _Ended(Ending(outcome, kind, message, http_status, retry_after))


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


async def _excerpt(resp: aiohttp.ClientResponse, secrets: Secrets) -> str:
    """The start of an error response's body on one line (servers such as Dify explain
    the refusal there), decoded, HTML reduced to its text, dropped when it only repeats
    the status. Bounded in size and time. Secrets are masked before the cut, and enough
    is read past it that a secret starting before the cut is masked whole."""
    want = EXCERPT_READ + secrets.longest
    try:
        decoder = decoder_for(resp.headers)
    except UnsupportedCoding as exc:
        return f"(a body in the {str(exc)!r} encoding)"
    try:
        async with asyncio.timeout(2):
            raw = await resp.content.read(want)
        if decoder is not None:
            pieces, got = [], 0
            for piece in decoder.feed(raw):
                pieces.append(piece)
                got += len(piece)
                if got >= want:
                    break
            raw = b"".join(pieces)[:want]
    except (TimeoutError, aiohttp.ClientError, ConnectionError, DecodeError, *MALFORMED_BODY):
        return ""
    size = resp.content_length if resp.content_length is not None else (len(raw) if len(raw) < want else None)
    return shown_excerpt(secrets.scrub(raw.decode("utf-8", "replace")), status=resp.status, reason=resp.reason or "",
                         content_type=resp.headers.get("Content-Type", ""), size=size)


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


def _guard_kind(exc: BaseException) -> FailureKind:
    """The kind a destination guard (or hop check) names on its refusal."""
    try:
        return FailureKind(getattr(exc, "kind", FailureKind.REFUSED_DESTINATION))
    except ValueError:
        return FailureKind.REFUSED_DESTINATION


def _close_delimited(resp: aiohttp.ClientResponse) -> bool:
    """The body's end is the connection's close (RFC 9112, 6.3: neither chunked nor a length)."""
    headers = resp.headers
    return "Content-Length" not in headers and "chunked" not in headers.get("Transfer-Encoding", "").lower()


def _content_type_essence(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class SSEStream:
    """One source read to its end, reconnecting per `StreamConfig.reconnect`."""

    def __init__(self, session: aiohttp.ClientSession, source: int, request: Request,
                 config: StreamConfig, observer: StreamObserver | None = None, *,
                 check_hop: HopCheck | None = None, open_gate: asyncio.Semaphore | None = None,
                 shown: tuple[Secrets, str] | None = None) -> None:
        self.session = session
        surface_body_errors(session.connector)  # a malformed body fails at once, never hangs
        self.source = source
        self.request = request
        self.config = config
        self.observer = observer or _NULL_OBSERVER
        self.check_hop = check_hop  # judges every URL (first and each redirect) before it is requested
        # Shared by the sources of one run: bounds the requests waiting for their response
        # headers at once (see FanIn). The connect timeout starts once a place is held.
        self.open_gate = open_gate or contextlib.nullcontext()
        # The boundary: every text this source makes passes secrets.scrub. `shown` is
        # (request.secrets, request.display_url) made once for the many streams of one request.
        if shown is None:
            secrets = request.secrets
            shown = (secrets, secrets.display_url(request.url))
        self.secrets, self.url = shown
        self.report = SourceReport(source, self.url)
        self.stopped_by_stop_on = False
        self.parser = SSEParser(last_event_id=config.last_event_id, max_line_size=config.max_line_size,
                                budget=process_budget(), max_id_size=config.max_id_size)
        self.policy = ReconnectPolicy(
            retries=config.retries, default_retry_ms=config.default_retry_ms, max_backoff=config.max_backoff
        )
        self._body = request.body_bytes()
        self._json_type = request.json is not MISSING
        self._ask_encodings = not any(name.lower() == "accept-encoding" for name in request.headers)
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
            await self._run(deliver)
        except asyncio.CancelledError:
            if self.report.status == "pending":
                self.report.status = "stopped"
            raise
        except Exception as exc:  # a bug, a raising observer, a library error nobody foresaw
            self.fail_unexpected(exc)
        self.observer.on_end(self.source, self.report.status)
        return self.report

    # ----------------------------------------------------------------- internals
    async def _run(self, deliver: Deliver) -> None:
        """Attempt, decide, wait, attempt again: the whole reconnect loop."""
        policy, method = self.policy, self.request.method
        idempotent = method.upper() in IDEMPOTENT_METHODS
        while True:
            before = self.report.events
            ending = await self._attempt(deliver)
            delivered = self.report.events > before
            policy.server_retry_ms = self.parser.retry_ms
            verdict, reason = decide(ending.outcome, idempotent=idempotent, delivered=delivered,
                                     has_ids=bool(self.report.events and self.parser.last_event_id),
                                     mode=self.config.reconnect)
            if verdict is Verdict.DONE:
                self.report.status = "completed"
                return
            kind = ending.kind or FailureKind.CLEAN_END
            message = ending.message
            if verdict is Verdict.FAIL:
                if reason is Reason.MAY_HAVE_ACTED:
                    message += f"; not re-sending the {method} request, which the server may have acted on"
                elif reason is Reason.NO_EVENT_IDS:
                    message += (f" after {self.report.events} events; not re-sending the {method} request"
                                " because the stream carries no event ids")
                self.observer.on_failure(self.source, kind, self._clean(message))
                self._fail(kind, message, ending.http_status, ending.retry_after)
                return
            # A clean end (reconnect=always) after events is not a failure: the backoff stays.
            if not (ending.outcome is Outcome.END and delivered):
                policy.record_failure()
                self.observer.on_failure(self.source, kind, self._clean(message))
            if policy.exhausted:
                if kind is FailureKind.CLEAN_END:
                    self.report.status = "completed"
                else:
                    self._fail(kind, self._with_attempts(message), ending.http_status, ending.retry_after)
                return
            self.report.reconnects += 1  # counted when decided, as the wait starts
            self.observer.on_reconnect(self.source)
            await asyncio.sleep(policy.wait_for(ending.retry_after))

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

    async def _attempt(self, deliver: Deliver) -> Ending:
        """One connection: open it, read it to its end; how it ended."""
        try:
            resp, decoder = await self._open()
        except _Ended as ended:
            return ended.ending
        try:
            return await self._read(resp, decoder, deliver)
        except _Ended as ended:
            return ended.ending
        finally:
            resp.release()
            self.parser.new_connection()  # a partial line or event dies with its connection (and frees its budget)

    async def _open(self) -> tuple[aiohttp.ClientResponse, BodyDecoder | None]:
        req = self.request
        headers = req.build_headers(self.parser.last_event_id)
        if self._json_type:
            headers.setdefault("Content-Type", "application/json")
        if self._ask_encodings:
            headers["Accept-Encoding"] = ACCEPT_ENCODING
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
            raise _ended(Outcome.NO_ANSWER, FailureKind.TIMEOUT,
                         f"no response within {self.config.connect_timeout:g}s from {self.url}") from None
        except RedirectError as exc:
            raise _ended(Outcome.FATAL, exc.kind, str(exc)) from None
        except aiohttp.InvalidURL as exc:
            raise _ended(Outcome.FATAL, FailureKind.BAD_URL, f"bad URL {self._where(trail)!r}: {exc}") from None
        except aiohttp.ClientSSLError as exc:
            raise _ended(Outcome.FATAL, FailureKind.TLS, f"TLS error talking to {self._where(trail)}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, FaninError):  # a destination guard refused the address
                raise _ended(Outcome.FATAL, _guard_kind(exc.os_error),
                             f"{exc.os_error} ({self._where(trail)})") from None
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            kind = FailureKind.REFUSED if refused else FailureKind.NETWORK
            if refused:
                reason = "connection refused"
            else:
                reason = (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else str(exc)
            raise _ended(Outcome.NOT_SENT, kind, f"cannot connect to {self._where(trail)}: {reason}") from None
        except aiohttp.ClientError as exc:
            raise _ended(Outcome.NO_ANSWER, FailureKind.NETWORK, f"network error from {self._where(trail)}:"
                         f" {exc.__class__.__name__}: {exc}") from None
        except FaninError as exc:  # e.g. a destination guard refusing the address
            raise _ended(Outcome.FATAL, _guard_kind(exc), str(exc)) from None
        excerpt = ""
        if 400 <= resp.status < 500 and resp.status not in (408, 429):
            excerpt = await _excerpt(resp, self.secrets)
        decoder = self._check_response(resp, excerpt)
        self.observer.on_connect(self.source, time.monotonic_ns() - start)
        return resp, decoder

    def _where(self, trail: list[URL]) -> str:
        """The source's URL, and the hop that failed when a redirect led elsewhere (masked
        like every URL; the message is scrubbed again when it becomes a report)."""
        if len(trail) < 2:
            return self.url
        return f"{redact_url(str(trail[-1]))} (redirected from {self.url})"

    def _check_response(self, resp: aiohttp.ClientResponse, excerpt: str = "") -> BodyDecoder | None:
        """Open the stream (200 + text/event-stream; returns the body's decoder, if it is
        encoded), stop (204), retry or fail; `excerpt` is the start of a 4xx body, added to
        the error."""
        status = resp.status
        if status == 200:
            ctype = resp.headers.get("Content-Type", "")
            if _content_type_essence(ctype) != "text/event-stream":
                resp.release()
                shown = ctype or "none"
                raise _ended(Outcome.FATAL, FailureKind.CONTENT_TYPE,
                             f"wrong content type {shown!r} from {self.url} (expected text/event-stream)",
                             http_status=status)
            try:
                return decoder_for(resp.headers)
            except UnsupportedCoding as exc:
                resp.release()
                raise _ended(Outcome.FATAL, FailureKind.ENCODING,
                             f"content encoding {str(exc)!r} from {self.url} cannot be decoded"
                             f" (supported: {', '.join(SUPPORTED)})", http_status=status) from None
        reason = f"HTTP {status} {resp.reason or ''}".rstrip() + f" from {self.url}"
        resp.release()
        if status == 204:
            raise _Ended(_STOPPED)
        if status in (408, 429) or status >= 500:
            kind = {408: FailureKind.HTTP_408, 429: FailureKind.HTTP_429}.get(status, FailureKind.HTTP_5XX)
            retry_after = _retry_after(resp)
            # 408, 429 and a 503 that names a time to come back say the request was not acted on.
            declined = status in (408, 429) or (status == 503 and retry_after is not None)
            raise _ended(Outcome.DECLINED if declined else Outcome.NO_ANSWER, kind, reason,
                         retry_after=retry_after, http_status=status)
        if 400 <= status < 500:
            raise _ended(Outcome.FATAL, FailureKind.HTTP_4XX, f"{reason}: {excerpt}" if excerpt else reason,
                         http_status=status, retry_after=_retry_after(resp))
        raise _ended(Outcome.FATAL, FailureKind.HTTP_STATUS, f"{reason} (expected 200 with text/event-stream)",
                     http_status=status)

    async def _read(self, resp: aiohttp.ClientResponse, decoder: BodyDecoder | None, deliver: Deliver) -> Ending:
        """Read the body to its end, delivering each read's events."""
        parser = self.parser
        parser.new_connection()
        source, url, observer = self.source, self.url, self.observer
        idle = self.config.idle_timeout
        content = resp.content
        while True:
            cut: Ending | None = None
            try:
                chunk = await content.read(READ_SIZE) if idle is None else await _read_or_idle(content, idle)
            except TimeoutError:
                return Ending(Outcome.CUT, FailureKind.IDLE, f"no data for {self.config.idle_timeout:g}s from {url}")
            except MALFORMED_BODY as exc:
                chunk, cut = received_before_the_error(content), Ending(
                    Outcome.CUT, FailureKind.PROTOCOL, f"malformed response body from {url}: {body_error_detail(exc)}")
            except aiohttp.ClientPayloadError:
                chunk, cut = received_before_the_error(content), Ending(
                    Outcome.CUT, FailureKind.TRUNCATED, f"connection cut mid-stream by {url}")
            except (aiohttp.ClientError, ConnectionError) as exc:
                chunk, cut = received_before_the_error(content), Ending(
                    Outcome.CUT, FailureKind.NETWORK, f"connection lost from {url}: {exc.__class__.__name__}")
            if not chunk:
                return cut or self._end_of_body(resp, decoder)
            arrival = time.monotonic_ns()
            wall = time.time_ns()
            observer.on_bytes(source, len(chunk))
            if decoder is None:
                failed = await self._take(chunk, deliver, arrival, wall)
            else:
                failed = None
                try:
                    for piece in decoder.feed(chunk):
                        failed = await self._take(piece, deliver, arrival, wall)
                        if failed is not None:
                            break
                except DecodeError as exc:
                    failed = Ending(Outcome.FATAL, FailureKind.ENCODING, f"{exc} from {url}")
            if failed is not None:
                return failed
            if cut is not None:
                return cut

    async def _take(self, data: bytes, deliver: Deliver, arrival: int, wall: int) -> Ending | None:
        """Parse one piece of the body and deliver its events; an Ending if it was too large."""
        try:
            messages = self.parser.feed_tuples(data)
        except EventTooLargeError as exc:
            if exc.events:
                await self._deliver(deliver, exc.events, arrival, wall)
            return Ending(Outcome.FATAL, FailureKind.TOO_LARGE, f"{exc} from {self.url}")
        if messages:
            await self._deliver(deliver, messages, arrival, wall)
        return None

    def _end_of_body(self, resp: aiohttp.ClientResponse, decoder: BodyDecoder | None) -> Ending:
        """The body ended without an error: cleanly, or cut where only its content can tell."""
        if decoder is not None and not decoder.finished:
            return Ending(Outcome.CUT, FailureKind.TRUNCATED,
                          f"connection cut mid-stream by {self.url}: the {', '.join(decoder.codings)} data stopped"
                          " before its end")
        # A body without Content-Length or chunked framing ends when the connection closes,
        # so only its content can show a cut: it ended inside a line or an event.
        if self.parser.has_partial() and _close_delimited(resp):
            return Ending(Outcome.CUT, FailureKind.TRUNCATED,
                          f"connection cut mid-stream by {self.url}: the body (framed by the connection close)"
                          " ended inside an event")
        return Ending(Outcome.END, FailureKind.CLEAN_END, f"stream ended by {self.url}")

    async def _deliver(self, deliver: Deliver, messages: list[tuple[str, str, str, bool]], arrival: int,
                       wall: int) -> None:
        """Hand one read's events on; stop_on ends the attempt (raises _Ended)."""
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
            raise _Ended(_STOPPED)
