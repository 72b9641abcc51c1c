"""A lean HTTP/1.1 client for holding very many long-lived streams: the slice of
`aiohttp.ClientSession` that `SSEStream` and `fanin.redirects` use, on llhttp (httptools).

Why: an aiohttp response keeps about 9 KB of objects per connection for its whole life
(the response and its cached headers, the parser's copy of the last headers, a protocol,
three deques), none of which a stream needs once it is open. At 100,000 streams that is
most of a load test's memory, and building each request through `ClientSession` is most
of the CPU of opening them. Here one connection is a transport, a protocol with slots, an
llhttp parser and the few headers the engine reads (`KEPT_HEADERS`).

What it does not do, because a load test of the URLs a user gave needs none of it:
connection pooling (each request has its own connection, closed on release), proxies,
cookies, automatic decompression (the engine decodes bodies itself, `fanin.decoding`),
following redirects (`fanin.redirects` asks again, hop by hop, as with aiohttp).
Failures are raised as the aiohttp exceptions the engine already tells apart, so a stream
fails with the same kind on either client.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import aiohttp
import httptools
from yarl import URL

from fanin import __version__
from fanin.aiohttp_compat import MalformedBody

__all__ = ["LeanSession", "LeanResponse", "KEPT_HEADERS", "MAX_HEADER_BYTES", "MAX_HEADERS"]

# The response headers the engine reads (status checks, body framing and decoding,
# Retry-After, redirects). The rest are parsed and dropped.
KEPT_HEADERS = frozenset({b"content-type", b"content-encoding", b"transfer-encoding", b"content-length",
                          b"retry-after", b"location"})
MAX_HEADERS = 128  # as aiohttp
MAX_HEADER_BYTES = 65536  # the whole head: a server that never ends its headers is cut here
PAUSE_AT = 1 << 18  # buffered body bytes at which reading pauses until the consumer catches up
RESUME_AT = 1 << 16
DNS_TTL = 300.0  # seconds a resolved name is reused (aiohttp's ttl_dns_cache in the load session)
USER_AGENT = f"fanin/{__version__}"


class _Key(NamedTuple):
    """What aiohttp's connection errors print: host, port and whether TLS was used."""

    host: str
    port: int
    is_ssl: bool
    ssl: bool


class _Headers(dict):  # type: ignore[type-arg]
    """The kept response headers, by lower-cased name; a repeated header is one
    comma-joined value (RFC 9110, 5.3)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())


class LeanResponse(asyncio.Protocol):
    """One request's connection, its response head, and its body as a byte reader with
    the `read` / `read_nowait` an `aiohttp.StreamReader` has. The response is its own
    `content`."""

    __slots__ = ("transport", "_parser", "status", "reason", "headers", "_head_bytes", "_head_count", "_head",
                 "_buffer", "_waiter", "_exception", "_eof", "_paused", "_session", "__weakref__")

    def __init__(self, session: LeanSession) -> None:
        self._session = session
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = ""
        self.headers = _Headers()
        self._head_bytes = 0
        self._head_count = 0
        self._head: asyncio.Future[None] | None = None  # resolved once the head has arrived
        self._buffer = b""
        self._waiter: asyncio.Future[None] | None = None
        self._exception: BaseException | None = None
        self._eof = False
        self._paused = False

    # ------------------------------------------------------------------ the engine's view
    @property
    def content(self) -> LeanResponse:
        return self

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.strip().isdigit() else None

    def release(self) -> None:
        """Done with this response: its connection closes (there is no pool to return it to)."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._session._open.discard(self)

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes of the body (all that is buffered for -1); b"" at its end. Bytes
        already received come back before a failure is raised."""
        while not self._buffer:
            if self._exception is not None:
                raise self._exception
            if self._eof:
                return b""
            self._waiter = self._session.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.read_nowait(n)

    def read_nowait(self, n: int = -1) -> bytes:
        data = self._buffer
        if n < 0 or len(data) <= n:
            self._buffer = b""
        else:
            data, self._buffer = data[:n], data[n:]
        if self._paused and len(self._buffer) < RESUME_AT and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(aiohttp.ClientConnectionError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__  # a callback's own error, wrapped by httptools
            if isinstance(cause, _HeadTooLarge):
                self._fail(aiohttp.ClientConnectionError(str(cause)))
                return
            detail = " ".join(str(exc).split())[:120] or exc.__class__.__name__
            if self.status:
                self._fail(MalformedBody(detail))
            else:
                self._fail(aiohttp.ClientConnectionError(f"malformed HTTP response: {detail}"))
            return
        # Bounded here, not per header: llhttp keeps an unfinished header's pieces itself.
        if not self.status and self._head_bytes > MAX_HEADER_BYTES:
            self._fail(aiohttp.ClientConnectionError(f"response head over {MAX_HEADER_BYTES // 1024} KiB"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost says how the body ended

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._session._open.discard(self)
        if self._eof or self._exception is not None:
            return
        if not self.status:
            self._fail(aiohttp.ServerDisconnectedError() if exc is None else
                       aiohttp.ClientOSError(getattr(exc, "errno", 0) or 0, str(exc) or exc.__class__.__name__))
        elif self._close_delimited():
            self._eof = True  # the body's end is the connection's close (RFC 9112, 6.3)
            self._wake()
        else:
            self._fail(aiohttp.ClientPayloadError(
                "Response payload is not completed" + (f": {exc!r}" if exc is not None else "")))

    # ------------------------------------------------------------------ llhttp callbacks
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One whole header (httptools joins the pieces llhttp hands it)."""
        self._head_count += 1
        if self._head_count > MAX_HEADERS:
            raise _HeadTooLarge(f"more than {MAX_HEADERS} response headers")
        name = name.lower()
        if name in KEPT_HEADERS:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            previous = dict.get(self.headers, key)
            self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim response (100 Continue, 103 Early Hints): the real one follows
            self.reason, self._head_count = "", 0
            self.headers.clear()
            return
        self.status = status
        self.reason = self.reason.strip()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer = body if not self._buffer else self._buffer + body
        if not self._paused and len(self._buffer) >= PAUSE_AT and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status:
            self._eof = True
            self._wake()

    # ------------------------------------------------------------------ internals
    def _close_delimited(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", "").lower()

    def _fail(self, exc: BaseException) -> None:
        if self._exception is None and not self._eof:
            self._exception = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _HeadTooLarge(Exception):
    pass


class LeanSession:
    """Opens one connection per request; see the module docstring for what it leaves out."""

    connector = None  # (SSEStream offers aiohttp's connector its protocol fix: nothing to fix here)

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._open: set[LeanResponse] = set()
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._resolving: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._tls: ssl.SSLContext | None = None

    async def request(self, method: str, url: URL | str, *, params: Iterable[tuple[str, str]] | None = None,
                      headers: dict[str, str] | None = None, data: bytes | None = None, **_aiohttp_only: Any,
                      ) -> LeanResponse:
        """Send one request and wait for its response head. `timeout`, `allow_redirects` and
        `auto_decompress` are accepted and ignored: the caller times the wait, redirects
        are never followed here and bodies are never decoded here."""
        url = URL(url) if isinstance(url, str) else url
        if params:
            url = url.extend_query(params)
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise aiohttp.InvalidURL(url)
        is_tls = url.scheme == "https"
        port = url.port or (443 if is_tls else 80)
        key = _Key(url.raw_host, port, is_tls, is_tls)
        response = LeanResponse(self)
        response._head = self.loop.create_future()
        try:
            await self._connect(response, url.raw_host, port, is_tls, key)
            assert response.transport is not None
            response.transport.write(_head(method, url, headers or {}, data))
            if data:
                response.transport.write(data)
            await response._head
        except BaseException:
            response.release()
            raise
        finally:
            response._head = None
        return response

    async def close(self) -> None:
        for response in list(self._open):
            response.release()

    async def _connect(self, response: LeanResponse, host: str, port: int, is_tls: bool, key: _Key) -> None:
        if is_tls and self._tls is None:
            self._tls = ssl.create_default_context()
        tls = self._tls if is_tls else None
        try:
            addresses = await self._addresses(host, port)
        except OSError as exc:
            raise aiohttp.ClientConnectorDNSError(key, exc) from exc  # type: ignore[arg-type]
        last: OSError | None = None
        for address in addresses:
            try:
                await self.loop.create_connection(lambda: response, address, port, ssl=tls,
                                                  server_hostname=host if is_tls else None)
                self._open.add(response)
                return
            except ssl.SSLCertVerificationError as exc:
                raise aiohttp.ClientConnectorCertificateError(key, exc) from exc  # type: ignore[arg-type]
            except ssl.SSLError as exc:
                raise aiohttp.ClientConnectorSSLError(key, exc) from exc  # type: ignore[arg-type]
            except OSError as exc:
                last = exc
        assert last is not None
        raise aiohttp.ClientConnectorError(key, last) from last  # type: ignore[arg-type]

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The host's addresses, an IP literal as it is; a name is resolved once per
        DNS_TTL for every stream that asks meanwhile."""
        bare = host[1:-1] if host.startswith("[") else host
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in bare else socket.AF_INET, bare)
            return [bare]
        except OSError:
            pass
        key = (host, port)
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._resolving.get(key)
        if pending is None:
            pending = self._resolving[key] = asyncio.ensure_future(self._resolve(host, port))
            pending.add_done_callback(lambda _: self._resolving.pop(key, None))
        return await asyncio.shield(pending)

    async def _resolve(self, host: str, port: int) -> list[str]:
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise socket.gaierror(f"no address for {host}")
        self._resolved[(host, port)] = (time.monotonic() + DNS_TTL, addresses)
        return addresses


def _head(method: str, url: URL, headers: dict[str, str], data: bytes | None) -> bytes:
    """The request line and headers (header values were checked for CR, LF and NUL when
    the request was validated)."""
    names = {name.lower() for name in headers}
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
    if "user-agent" not in names:
        lines.append(f"User-Agent: {USER_AGENT}")
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    if data is not None and "content-length" not in names:
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
