"""The generic SSE endpoints: /stream (any count, rate, size, ids, and faults on request),
/raw (exact bytes), /echo, /redirect, /stats and a help text.

Every property of a stream comes from the query string, so tests, benchmarks and users can
ask for exactly the stream they need without writing a server. Event ids are real (1, 2,
3...) and resumable with Last-Event-ID, so a client can prove nothing was lost or duplicated."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time

import orjson
from aiohttp import web

from .params import EVENT_STREAM, BadParameter, StreamParams, get_bool, get_float, get_int, get_text
from .stats import STATS_KEY, open_stream_scope

__all__ = ["HELP_TEXT", "add_generic_routes", "cancel_tickers", "route_lines"]

CHUNK_BYTES = 64 * 1024          # rate=0 streams are written in chunks of about this size
MIN_TICK = 0.01                  # paced streams wake at most 100 times a second
LINE_FOREVER_LIMIT = 64 * 1024 * 1024

HELP_TEXT = """\
fanin built-in SSE server. Endpoints (query parameters):

/stream   any method. count=100 (0 = endless) rate=0 (events/s, 0 = as fast as possible)
          size=16 (data bytes; data starts with the sequence number) ids=1 start=1
          retry=MS event=TYPE ts=1 (data is {"seq":N,"ts":EPOCH,"pad":"..."})
          faults: abort_every=K stall_after=N heartbeat=S close_after=N
                  drop_every=K (ids K, 2K, ... are never sent: a gap to count)
                  status=CODE retry_after=S fail_first=N content_type=TYPE line_forever=1
          A Last-Event-ID: N header resumes at N+1. Unknown parameters are ignored
          (add tag=... to give a fail_first counter its own key).
/raw      GET b64=URLSAFE_BASE64 (or POST the bytes) chunk=0 pause_ms=1 content_type=TYPE
          abort=1: the exact bytes, N at a time, then a clean end (or an abrupt close).
/echo     any method: one event whose data is JSON {method, path, query, headers, body}.
/redirect to=/path?query code=302
/stats    JSON: open_streams, total_requests, streams_started, last_event_ids.
/         this text.
The Dify-like app API and the OpenAI-compatible endpoint are described in the docs.
"""


_FAIL_COUNTS = web.AppKey("fanin_fail_counts", dict)
_TICKERS = web.AppKey("fanin_tickers", dict)
_DEFAULTS = web.AppKey("fanin_stream_defaults", dict)


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

    try:
        drop_every = get_int({**request.app[_DEFAULTS], **request.query}, "drop_every", 0)
    except BadParameter as exc:
        return _bad_request(str(exc))

    with open_stream_scope(request):
        resp = await _prepare_stream(request, params.content_type)
        try:
            if params.line_forever:
                await _send_endless_line(resp)
            else:
                await _send_events(request, resp, params, drop_every)
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


async def _send_events(request: web.Request, resp: web.StreamResponse, params: StreamParams,
                       drop_every: int = 0) -> None:
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
            if drop_every:  # the drop fault: id seq is skipped when a multiple of K
                if seq % drop_every == 0:
                    seq += 1
                    continue
                n = min(n, drop_every - seq % drop_every)
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
    # abort() discards unsent bytes: let the half event go first (the transport has no event to await)
    while transport.get_write_buffer_size() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
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
        chunk = get_int(query, "chunk", 0)
        pause_ms = get_float(query, "pause_ms", 1.0 if chunk else 0.0)
        abort = get_bool(query, "abort", False)
        content_type = get_text(query, "content_type") or EVENT_STREAM
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
        code = get_int(request.query, "code", 302)
    except BadParameter as exc:
        return _bad_request(str(exc))
    if code not in (301, 302, 303, 307, 308):
        return _bad_request(f"code must be 301, 302, 303, 307 or 308, got {code}")
    return web.Response(status=code, headers={"Location": target})


async def handle_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS_KEY].snapshot(), dumps=lambda o: orjson.dumps(o).decode())


def route_lines(app: web.Application) -> list[str]:
    """Every route the app answers, `METHOD /path`, read from its router (so the list can
    never miss one); `*` is any method, HEAD (added for each GET) is not repeated."""
    lines: list[str] = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        line = f"{route.method:<6} {route.resource.canonical if route.resource else ''}"
        if line not in lines:
            lines.append(line)
    return lines


async def handle_help(request: web.Request) -> web.Response:
    routes = "\n".join("  " + line for line in route_lines(request.app))
    return web.Response(text=f"{HELP_TEXT}\nEvery route:\n{routes}\n")



def add_generic_routes(app: web.Application, defaults: dict[str, str]) -> None:
    """Register the generic endpoints; `defaults` are /stream parameters (as text) used when
    a request does not give them."""
    app[_FAIL_COUNTS] = {}
    app[_TICKERS] = {}
    app[_DEFAULTS] = defaults
    app.router.add_route("*", "/stream", handle_stream)
    app.router.add_route("*", "/echo", handle_echo)
    app.router.add_route("GET", "/raw", handle_raw)
    app.router.add_route("POST", "/raw", handle_raw)
    app.router.add_get("/redirect", handle_redirect)
    app.router.add_get("/stats", handle_stats)
    app.router.add_get("/", handle_help)
    app.on_shutdown.append(cancel_tickers)


async def cancel_tickers(app: web.Application) -> None:
    for ticker in app[_TICKERS].values():
        ticker.cancel()
