"""What the built-in server counts (open streams, requests, Last-Event-ID headers seen), and
the scope every long-lived handler runs in so /stats is truthful and shutdown cancels it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, Iterator

from aiohttp import web

__all__ = ["ServerStats", "STATS_KEY", "STREAM_TASKS", "open_stream_scope", "count_requests"]

LAST_EVENT_IDS_KEPT = 1000


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
STREAM_TASKS = web.AppKey("fanin_stream_tasks", set)


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
        app[STREAM_TASKS].add(task)
    try:
        yield
    finally:
        stats.open_streams -= 1
        if task is not None:
            app[STREAM_TASKS].discard(task)


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path != "/stats":
        stats = request.app[STATS_KEY]
        stats.total_requests += 1
        last_id = request.headers.get("Last-Event-ID")
        if last_id is not None:
            stats.record_last_event_id(last_id)
    return await handler(request)
