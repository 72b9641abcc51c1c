"""Run the engine's top coroutine: asyncio.run, on uvloop when it pays.

uvloop cuts the event loop's cost per network read by about a third, which matters with
many streams; its import costs about 60 ms, which a single short stream never earns back."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

__all__ = ["run", "UVLOOP_FROM_STREAMS"]

UVLOOP_FROM_STREAMS = 8


def run(coro: Coroutine[Any, Any, Any], *, streams: int = 1) -> Any:
    gc.freeze()  # start-up objects are permanent: keep the collector's full passes short
    # Every network read makes hundreds of short-lived tuples (one per event); with the
    # default threshold (700) the young generation is scanned after nearly every read.
    gc.set_threshold(50_000, 10, 10)
    if streams >= UVLOOP_FROM_STREAMS:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return asyncio.run(coro, loop_factory=uvloop.new_event_loop)
    return asyncio.run(coro)
