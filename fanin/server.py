"""The built-in SSE server: demo source, test fixture, benchmark target, fault injector.

One aiohttp application serves event streams whose every property comes from the query
string (count, rate, size, ids, faults...), so tests, benchmarks and users can ask for
exactly the stream they need without writing a server. Event ids are real (1, 2, 3...)
and resumable with Last-Event-ID, so a client can prove nothing was lost or duplicated.

Run it with `fanin serve`, in-process with `start_server()`, or from synchronous code
(pytest) with `ServerThread`. Endpoints are listed in HELP_TEXT below.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import contextlib
import math
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping

import orjson
from aiohttp import web

__all__ = [
    "HELP_TEXT",
    "STATS_KEY",
    "ServerStats",
    "ServerThread",
    "add_serve_arguments",
    "build_app",
    "open_stream_scope",
    "raise_open_file_limit",
    "run_serve",
    "start_server",
]

EVENT_STREAM = "text/event-stream"
CHUNK_BYTES = 64 * 1024          # rate=0 streams are written in chunks of about this size
MIN_TICK = 0.01                  # paced streams wake at most 100 times a second
LISTEN_BACKLOG = 4096            # room for thousands of simultaneous connects
LAST_EVENT_IDS_KEPT = 1000
LINE_FOREVER_LIMIT = 64 * 1024 * 1024

HELP_TEXT = """\
fanin built-in SSE server. Endpoints (query parameters):

/stream   any method. count=100 (0 = endless) rate=0 (events/s, 0 = as fast as possible)
          size=16 (data bytes; data starts with the sequence number) ids=1 start=1
          retry=MS event=TYPE ts=1 (data is {"seq":N,"ts":EPOCH,"pad":"..."})
          faults: abort_every=K stall_after=N heartbeat=S close_after=N
                  status=CODE retry_after=S fail_first=N content_type=TYPE line_forever=1
          A Last-Event-ID: N header resumes at N+1. Unknown parameters are ignored
          (add tag=... to give a fail_first counter its own key).
/raw      GET b64=URLSAFE_BASE64 (or POST the bytes) chunk=0 pause_ms=1 content_type=TYPE
          abort=1: the exact bytes, N at a time, then a clean end (or an abrupt close).
/echo     any method: one event whose data is JSON {method, path, query, headers, body}.
/redirect to=/path?query code=302
/stats    JSON: open_streams, total_requests, streams_started, last_event_ids.
/         this text.
"""


class BadParameter(ValueError):
    """A query parameter the server cannot use; answered with 400 and this one line."""


# --------------------------------------------------------------------------- stats


class ServerStats:
    """Counters tests read to check that clients closed connections and sent Last-Event-ID.

    Updated on the server's loop; plain attributes, so another thread can read them.
    """

    def __init__(self) -> None:
        self.open_streams = 0        # connections currently inside a stream-like handler
        self.total_requests = 0      # every request except those to /stats
        self.streams_started = 0     # stream-like connections ever opened
        self._last_event_ids: collections.deque[str] = collections.deque(maxlen=LAST_EVENT_IDS_KEPT)

    @property
    def last_event_ids(self) -> list[str]:
        """Last-Event-ID headers received, oldest first (the newest 1000)."""
        return list(self._last_event_ids)

    def record_last_event_id(self, value: str) -> None:
        self._last_event_ids.append(value)

    def snapshot(self) -> dict[str, Any]:
        return {
            "open_streams": self.open_streams,
            "total_requests": self.total_requests,
            "streams_started": self.streams_started,
            "last_event_ids": self.last_event_ids,
        }


STATS_KEY = web.AppKey("fanin_stats", ServerStats)
_STREAM_TASKS = web.AppKey("fanin_stream_tasks", set)
_FAIL_COUNTS = web.AppKey("fanin_fail_counts", dict)
_TICKERS = web.AppKey("fanin_tickers", dict)
_DEFAULTS = web.AppKey("fanin_stream_defaults", dict)


@contextlib.contextmanager
def open_stream_scope(request: web.Request) -> Iterator[None]:
    """Count this handler in stats.open_streams and let server shutdown cancel it.

    Every handler that keeps a response open (also the Dify-like routes) should run
    inside this, so /stats is truthful and ServerThread.__exit__ never waits on it.
    """
    app = request.app
    stats = app[STATS_KEY]
    task = asyncio.current_task()
    stats.open_streams += 1
    stats.streams_started += 1
    if task is not None:
        app[_STREAM_TASKS].add(task)
    try:
        yield
    finally:
        stats.open_streams -= 1
        if task is not None:
            app[_STREAM_TASKS].discard(task)


# --------------------------------------------------------------------------- parameters


@dataclass
class StreamParams:
    """Everything /stream can be asked for; parsed from build_app defaults + query."""

    count: int = 100
    rate: float = 0.0
    size: int = 16
    ids: bool = True
    start: int = 1
    retry: int | None = None
    event: str | None = None
    ts: bool = False
    abort_every: int = 0
    stall_after: int | None = None
    heartbeat: float | None = None
    close_after: int | None = None
    status: int | None = None
    retry_after: int | None = None
    fail_first: int = 0
    content_type: str = EVENT_STREAM
    line_forever: bool = False

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> "StreamParams":
        p = cls()
        p.count = _get_int(values, "count", p.count)
        p.rate = _get_float(values, "rate", p.rate)
        p.size = _get_int(values, "size", p.size, maximum=16 * 1024 * 1024)
        p.ids = _get_bool(values, "ids", p.ids)
        p.start = _get_int(values, "start", p.start)
        p.retry = _get_opt_int(values, "retry")
        p.event = _get_text(values, "event")
        p.ts = _get_bool(values, "ts", p.ts)
        p.abort_every = _get_int(values, "abort_every", 0)
        p.stall_after = _get_opt_int(values, "stall_after")
        heartbeat = _get_float(values, "heartbeat", 0.0)
        p.heartbeat = heartbeat if heartbeat > 0 else None
        p.close_after = _get_opt_int(values, "close_after")
        p.status = _get_opt_int(values, "status")
        if p.status is not None and not 100 <= p.status <= 599:
            raise BadParameter(f"status must be an HTTP status code, got {p.status}")
        p.retry_after = _get_opt_int(values, "retry_after")
        p.fail_first = _get_int(values, "fail_first", 0)
        p.content_type = _get_text(values, "content_type") or EVENT_STREAM
        p.line_forever = _get_bool(values, "line_forever", False)
        return p


_PARAM_NAMES = frozenset(f.name for f in fields(StreamParams))


def _raw_value(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _get_opt_int(values: Mapping[str, str], name: str) -> int | None:
    value = _raw_value(values, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number, got {value[:40]!r}") from None
    if number < 0:
        raise BadParameter(f"{name} must not be negative, got {number}")
    return number


def _get_int(values: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    number = _get_opt_int(values, name)
    if number is None:
        return default
    if maximum is not None and number > maximum:
        raise BadParameter(f"{name} must be at most {maximum}, got {number}")
    return number


def _get_float(values: Mapping[str, str], name: str, default: float) -> float:
    value = _raw_value(values, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {value[:40]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise BadParameter(f"{name} must be a finite number >= 0, got {value[:40]!r}")
    return number


def _get_bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    value = _raw_value(values, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BadParameter(f"{name} must be 0 or 1, got {value[:40]!r}")


def _get_text(values: Mapping[str, str], name: str) -> str | None:
    value = _raw_value(values, name)
    if value is not None and any(c in value for c in "\r\n\0"):
        raise BadParameter(f"{name} must not contain CR, LF or NUL")
    return value


def _bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message + "\n")


def _status_response(status: int, retry_after: int | None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status in (204, 304) or status < 200:
        return web.Response(status=status, headers=headers)
    reason = web.Response(status=status).reason
    return web.Response(status=status, headers=headers, text=f"{status} {reason} (asked for by the request)\n")


# --------------------------------------------------------------------------- event bytes


class EventBuilder:
    """Pre-builds the bytes of many consecutive events at once (bytes %-formatting).

    Per-event Python work is one format operation, which is what lets one server
    process write well over a million small events per second.
    """

    def __init__(self, *, ids: bool, event: str | None, size: int, ts: bool) -> None:
        self._id_part = b"id: %d\n" if ids else b""
        self._event_part = b"event: " + event.encode() + b"\n" if event else b""
        self._ids = ids
        self._size = size
        self._ts = ts
        self._formats: dict[int, bytes] = {}   # digits of seq -> format (ts=0 only)

    @property
    def approx_event_len(self) -> int:
        return len(self._id_part) + len(self._event_part) + 10 + max(self._size, 8) + 8

    def _plain_format(self, digits: int) -> bytes:
        fmt = self._formats.get(digits)
        if fmt is None:
            pad = b" " + b"x" * (self._size - digits - 1) if self._size > digits else b""
            fmt = self._id_part + self._event_part + b"data: %d" + pad + b"\n\n"
            self._formats[digits] = fmt
        return fmt

    def _ts_format(self, digits: int, ts_text: bytes) -> bytes:
        fixed = len(b'{"seq":,"ts":,"pad":""}') + digits + len(ts_text)
        pad = b"x" * max(0, self._size - fixed)
        return (self._id_part + self._event_part + b'data: {"seq":%d,"ts":' + ts_text
                + b',"pad":"' + pad + b'"}\n\n')

    def build(self, first: int, n: int) -> bytes:
        """The bytes of events first .. first+n-1 (ids, data and blank lines)."""
        ts_text = b"%.6f" % time.time() if self._ts else b""
        parts: list[bytes] = []
        seq, end = first, first + n
        while seq < end:
            digits = len(str(seq))
            group_end = min(end, 10 ** digits)
            fmt = self._ts_format(digits, ts_text) if self._ts else self._plain_format(digits)
            if self._ids:
                parts.extend([fmt % (i, i) for i in range(seq, group_end)])
            else:
                parts.extend([fmt % i for i in range(seq, group_end)])
            seq = group_end
        return b"".join(parts)


# --------------------------------------------------------------------------- pacing


class RateTicker:
    """One shared clock per rate: thousands of paced streams, one timer.

    Ticks are scheduled on absolute times (no drift); a stream converts the number of
    ticks since it last woke into events owed, so a late wake-up catches up.
    """

    def __init__(self, rate: float) -> None:
        self.interval = max(1.0 / rate, MIN_TICK)
        self.events_per_tick = rate * self.interval
        self.tick = 0
        self._wakeup = asyncio.Event()
        self._users = 0
        self._task: asyncio.Task | None = None

    def join(self) -> None:
        self._users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def leave(self) -> None:
        self._users -= 1

    async def wait_after(self, seen: int) -> int:
        while self.tick == seen:
            await self._wakeup.wait()
        return self.tick

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        origin = loop.time()
        done = 0
        base = self.tick  # a restarted clock keeps counting up: streams compare against old ticks
        while self._users > 0:
            target = origin + (done + 1) * self.interval
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            done = max(done + 1, int((loop.time() - origin) / self.interval))
            self.tick = base + done
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()


def _ticker_for(app: web.Application, rate: float) -> RateTicker:
    tickers = app[_TICKERS]
    ticker = tickers.get(rate)
    if ticker is None:
        ticker = tickers[rate] = RateTicker(rate)
    return ticker


# --------------------------------------------------------------------------- /stream


async def _prepare_stream(request: web.Request, content_type: str) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = content_type
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    writer = await resp.prepare(request)
    send_headers = getattr(writer, "send_headers", None)
    if send_headers is not None:
        send_headers()   # aiohttp holds headers until the first body write; clients want them now
    return resp


def _first_seq(request: web.Request, start: int) -> int:
    last_id = request.headers.get("Last-Event-ID", "").strip()
    if last_id.isdigit():
        return int(last_id) + 1
    return start


async def handle_stream(request: web.Request) -> web.StreamResponse:
    try:
        params = StreamParams.parse({**request.app[_DEFAULTS], **request.query})
    except BadParameter as exc:
        return _bad_request(str(exc))

    if params.fail_first:
        counts = request.app[_FAIL_COUNTS]
        seen = counts.get(request.query_string, 0)
        counts[request.query_string] = seen + 1
        if seen < params.fail_first:
            return _status_response(params.status or 503, params.retry_after)
    elif params.status is not None:
        return _status_response(params.status, params.retry_after)

    with open_stream_scope(request):
        resp = await _prepare_stream(request, params.content_type)
        try:
            if params.line_forever:
                await _send_endless_line(resp)
            else:
                await _send_events(request, resp, params)
        except ConnectionError:
            pass   # the client went away; nothing to tell anyone
        return resp


async def _send_endless_line(resp: web.StreamResponse) -> None:
    block = b"x" * CHUNK_BYTES
    await resp.write(b"data: ")
    sent = 0
    while sent < LINE_FOREVER_LIMIT:
        await resp.write(block)
        sent += len(block)


def _events_until_checkpoint(sent: int, params: StreamParams) -> int:
    """How many events may go out before the next close/stall/abort point (or a big number)."""
    room = 1 << 62
    if params.close_after is not None:
        room = min(room, params.close_after - sent)
    if params.stall_after is not None:
        room = min(room, params.stall_after - sent)
    if params.abort_every:
        room = min(room, params.abort_every - sent % params.abort_every)
    return room


async def _send_events(request: web.Request, resp: web.StreamResponse, params: StreamParams) -> None:
    builder = EventBuilder(ids=params.ids, event=params.event, size=params.size, ts=params.ts)
    seq = _first_seq(request, params.start)
    last = params.start + params.count - 1 if params.count else None
    per_chunk = max(1, CHUNK_BYTES // builder.approx_event_len)
    sent = 0   # events sent on this connection

    if params.retry is not None:
        await resp.write(b"retry: %d\n\n" % params.retry)

    ticker = _ticker_for(request.app, params.rate) if params.rate > 0 else None
    if ticker is not None:
        ticker.join()
    try:
        credit = 1.0                       # paced streams send their first event at once
        seen_tick = ticker.tick if ticker else 0
        while last is None or seq <= last:
            if params.close_after is not None and sent >= params.close_after:
                return
            if params.stall_after is not None and sent >= params.stall_after:
                await _stall(resp, params.heartbeat)
                return
            if params.abort_every and sent and sent % params.abort_every == 0:
                await _abort_mid_event(request, resp, builder.build(seq, 1))
                return
            if ticker is not None:
                while credit < 1.0:
                    tick = await ticker.wait_after(seen_tick)
                    credit += (tick - seen_tick) * ticker.events_per_tick
                    seen_tick = tick
                n = int(credit)
            else:
                n = per_chunk
            n = min(n, _events_until_checkpoint(sent, params))
            if last is not None:
                n = min(n, last - seq + 1)
            if ticker is not None:
                credit -= n
            await resp.write(builder.build(seq, n))
            seq += n
            sent += n
    finally:
        if ticker is not None:
            ticker.leave()


async def _stall(resp: web.StreamResponse, heartbeat: float | None) -> None:
    """Keep the connection open without events until the client leaves or the server stops."""
    if heartbeat is None:
        await asyncio.get_running_loop().create_future()
    while True:
        await asyncio.sleep(heartbeat)
        await resp.write(b":\n")


async def _abort_mid_event(request: web.Request, resp: web.StreamResponse, next_event: bytes) -> None:
    """Send the first half of an event, then drop the connection without a clean end."""
    await resp.write(next_event[: len(next_event) // 2])
    transport = request.transport
    if transport is None:
        return
    deadline = time.monotonic() + 1.0
    while transport.get_write_buffer_size() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)   # abort() discards unsent bytes; let the half event go first
    transport.abort()


# --------------------------------------------------------------------------- /raw /echo /redirect


async def handle_raw(request: web.Request) -> web.StreamResponse:
    query = request.query
    encoded = query.get("b64")
    try:
        if encoded is not None:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        else:
            payload = await request.read()
        chunk = _get_int(query, "chunk", 0)
        pause_ms = _get_float(query, "pause_ms", 1.0 if chunk else 0.0)
        abort = _get_bool(query, "abort", False)
        content_type = _get_text(query, "content_type") or EVENT_STREAM
    except (BadParameter, binascii.Error, ValueError) as exc:
        return _bad_request(f"bad /raw request: {exc}")

    with open_stream_scope(request):
        resp = await _prepare_stream(request, content_type)
        try:
            if chunk <= 0:
                if payload:
                    await resp.write(payload)
            else:
                for offset in range(0, len(payload), chunk):
                    if offset:
                        await asyncio.sleep(pause_ms / 1000.0)
                    await resp.write(payload[offset: offset + chunk])
            if abort:
                await _abort_mid_event(request, resp, b"")
        except ConnectionError:
            pass
        return resp


async def handle_echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = str(name)  # istr keys are a str subclass orjson refuses
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    report = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": headers,
        "body": body.decode("utf-8", errors="replace"),
    }
    with open_stream_scope(request):
        resp = await _prepare_stream(request, EVENT_STREAM)
        with contextlib.suppress(ConnectionError):
            await resp.write(b"data: " + orjson.dumps(report) + b"\n\n")
        return resp


async def handle_redirect(request: web.Request) -> web.Response:
    target = request.query.get("to", "")
    if not target.startswith("/") or target.startswith("//"):
        return _bad_request("redirect needs to=/path (a path on this server)")
    try:
        code = _get_int(request.query, "code", 302)
    except BadParameter as exc:
        return _bad_request(str(exc))
    if code not in (301, 302, 303, 307, 308):
        return _bad_request(f"code must be 301, 302, 303, 307 or 308, got {code}")
    return web.Response(status=code, headers={"Location": target})


async def handle_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS_KEY].snapshot(), dumps=lambda o: orjson.dumps(o).decode())


async def handle_help(request: web.Request) -> web.Response:
    return web.Response(text=HELP_TEXT)


# --------------------------------------------------------------------------- app


@web.middleware
async def _count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path != "/stats":
        stats = request.app[STATS_KEY]
        stats.total_requests += 1
        last_id = request.headers.get("Last-Event-ID")
        if last_id is not None:
            stats.record_last_event_id(last_id)
    return await handler(request)


async def _cancel_open_streams(app: web.Application) -> None:
    for task in list(app[_STREAM_TASKS]):
        task.cancel()
    for ticker in app[_TICKERS].values():
        ticker.cancel()


def build_app(**defaults: Any) -> web.Application:
    """The server's aiohttp application; `defaults` are /stream parameters (e.g. rate=10)
    used when a request does not give them."""
    unknown = set(defaults) - _PARAM_NAMES
    if unknown:
        raise TypeError(f"unknown stream defaults: {', '.join(sorted(unknown))}")
    as_text = {k: ("1" if v is True else "0" if v is False else str(v)) for k, v in defaults.items() if v is not None}
    StreamParams.parse(as_text)   # fail now, not on the first request

    app = web.Application(middlewares=[_count_requests])
    app[STATS_KEY] = ServerStats()
    app[_STREAM_TASKS] = set()
    app[_FAIL_COUNTS] = {}
    app[_TICKERS] = {}
    app[_DEFAULTS] = as_text
    app.router.add_route("*", "/stream", handle_stream)
    app.router.add_route("*", "/echo", handle_echo)
    app.router.add_route("GET", "/raw", handle_raw)
    app.router.add_route("POST", "/raw", handle_raw)
    app.router.add_get("/redirect", handle_redirect)
    app.router.add_get("/stats", handle_stats)
    app.router.add_get("/", handle_help)
    app.on_shutdown.append(_cancel_open_streams)

    try:
        from fanin.server_dify import add_dify_routes
    except ModuleNotFoundError as exc:   # that module may not exist yet; anything else is a bug
        if exc.name != "fanin.server_dify":
            raise
    else:
        add_dify_routes(app)
    return app


def endpoint_paths(app: web.Application) -> list[str]:
    """The paths the app answers, in registration order (for the `fanin serve` banner)."""
    paths: list[str] = []
    for resource_ in app.router.resources():
        path = resource_.canonical
        if path not in paths:
            paths.append(path)
    return paths


async def start_server(host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False,
                       backlog: int = LISTEN_BACKLOG, **defaults: Any) -> tuple[web.AppRunner, int]:
    """Start the server on the running loop; returns the runner (call .cleanup()) and the port."""
    app = build_app(**defaults)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0,
                           access_log=web.access_logger if access_log else None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=backlog, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


# --------------------------------------------------------------------------- thread


class ServerThread:
    """The server on its own event loop in a daemon thread, for synchronous callers.

        with ServerThread() as server:
            url = server.url("/stream?count=5")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **defaults: Any) -> None:
        self.host = host
        self.port = port
        self._defaults = defaults
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.stats: ServerStats | None = None

    def url(self, path_and_query: str = "/") -> str:
        if not path_and_query.startswith("/"):
            path_and_query = "/" + path_and_query
        return f"http://{self.host}:{self.port}{path_and_query}"

    def start(self) -> "ServerThread":
        self._thread = threading.Thread(target=self._run, name="fanin-sse-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=15):
            raise RuntimeError("fanin test server did not start within 15 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._runner, self.port = loop.run_until_complete(
                start_server(self.host, self.port, **self._defaults))
        except BaseException as exc:   # handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self.stats = self._runner.app[STATS_KEY]
        self._ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):   # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (10,000 streams need 10,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft or soft == resource.RLIM_INFINITY:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--quiet", action="store_true", help="do not print the listening line")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")


async def _serve_forever(args: argparse.Namespace) -> int:
    try:
        runner, port = await start_server(args.host, args.port, access_log=getattr(args, "access_log", False))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"fanin serve: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if not getattr(args, "quiet", False):
            shown_host = f"[{args.host}]" if ":" in args.host else args.host
            endpoints = " ".join(endpoint_paths(runner.app))
            print(f"fanin serve: listening on http://{shown_host}:{port}  (endpoints: {endpoints})", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """`fanin serve`: serve until Ctrl-C or SIGTERM; exit status 0, no traceback."""
    raise_open_file_limit()
    try:
        return asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        return 0
