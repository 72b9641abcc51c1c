"""The built-in SSE server as one aiohttp application: the generic endpoints plus the
Dify-like app API, an OpenAI-compatible chat completions endpoint and an Anthropic-compatible
Messages endpoint. Run it with `fanin serve`, in-process with `start_server()`, or from
synchronous code (pytest) with `ServerThread`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from aiohttp import web

from .anthropic import add_anthropic_routes
from .dify import add_dify_routes
from .generic import add_generic_routes
from .openai import add_openai_routes
from .params import PARAM_NAMES, StreamParams
from .stats import STATS_KEY, STREAM_TASKS, ServerStats, count_requests

__all__ = ["ServerThread", "build_app", "enable_access_log", "endpoint_paths", "start_server"]

LISTEN_BACKLOG = 4096            # room for thousands of simultaneous connects


async def _cancel_open_streams(app: web.Application) -> None:
    for task in list(app[STREAM_TASKS]):
        task.cancel()


def build_app(**defaults: Any) -> web.Application:
    """The server's aiohttp application; `defaults` are /stream parameters (e.g. rate=10)
    used when a request does not give them."""
    unknown = set(defaults) - PARAM_NAMES
    if unknown:
        raise TypeError(f"unknown stream defaults: {', '.join(sorted(unknown))}")
    as_text = {k: ("1" if v is True else "0" if v is False else str(v)) for k, v in defaults.items() if v is not None}
    StreamParams.parse(as_text)   # fail now, not on the first request

    app = web.Application(middlewares=[count_requests])
    app[STATS_KEY] = ServerStats()
    app[STREAM_TASKS] = set()
    app.on_shutdown.append(_cancel_open_streams)
    add_generic_routes(app, as_text)
    add_dify_routes(app)
    add_openai_routes(app)
    add_anthropic_routes(app)
    return app


def endpoint_paths(app: web.Application) -> list[str]:
    """The paths the app answers, in registration order (for the `fanin serve` banner)."""
    paths: list[str] = []
    for resource_ in app.router.resources():
        path = resource_.canonical
        if path not in paths:
            paths.append(path)
    return paths


def enable_access_log() -> None:
    """Send aiohttp's access log (one line per request, written when the request ends) to
    stderr: aiohttp logs it at INFO to a logger nobody set up, so it printed nothing."""
    import logging
    import sys

    logger = web.access_logger
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(getattr(h, "_fanin_access_log", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._fanin_access_log = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


async def start_server(host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False,
                       backlog: int = LISTEN_BACKLOG, **defaults: Any) -> tuple[web.AppRunner, int]:
    """Start the server on the running loop; returns the runner (call .cleanup()) and the port."""
    app = build_app(**defaults)
    if access_log:
        enable_access_log()
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
