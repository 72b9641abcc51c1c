"""Run the engine's top coroutine: asyncio.run, on uvloop when it pays, with Ctrl-C and
SIGTERM stopping the run the same way in every command.

uvloop cuts the event loop's cost per network read by about a third, which matters with
many streams; its import costs about 60 ms, which a single short stream never earns back.

Signals: the first SIGINT or SIGTERM asks the run to stop (by default the coroutine is
cancelled, so its `finally` still writes the summary or report; a load runner passes its
own `stop`), and is remembered so the command exits 130 or 143. The handler is a plain
Python signal handler, not the loop's: it runs even while the process is blocked writing to
a reader that stopped reading, and the stop waits until that write has finished, so the
output always ends on a whole line. A second signal stops the process at once (exit status
the same), for a reader that never comes back."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run", "UVLOOP_FROM_STREAMS", "StopSignals", "Stopped", "SIGNAL_WORDS"]

UVLOOP_FROM_STREAMS = 8
SIGNAL_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Stopped(Exception):
    """The run was cancelled by a stop signal; `exit_status` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(SIGNAL_WORDS.get(signum, "stopped"))
        self.signum = signum
        self.exit_status = 128 + signum


class StopSignals:
    """SIGINT and SIGTERM for one run. `on_stop` is called once, on the loop, at the first
    signal (None: cancel the run's coroutine); `received` is that signal's number."""

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        self.on_stop = on_stop
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def exit_status(self) -> int | None:
        """130 after SIGINT, 143 after SIGTERM, None when no signal came."""
        return None if self.received is None else 128 + self.received

    @property
    def word(self) -> str:
        return SIGNAL_WORDS.get(self.received or 0, "stopped")

    def install(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
        """Handle both signals until remove(); `stop` is used when on_stop is None (on_stop
        is read when the signal comes, so a run may set it once its runner exists). Does
        nothing outside the main thread (signals can only be handled there)."""

        def action() -> None:
            (self.on_stop or stop)()

        def handler(signum: int, frame: object) -> None:
            if self.received is not None:  # the second signal: the user insists
                with contextlib.suppress(OSError):
                    os.write(2, f"fanin: {SIGNAL_WORDS.get(signum, 'stopped')} again: stopping now\n".encode())
                os._exit(128 + signum)
            self.received = signum
            loop.call_soon_threadsafe(action)

        try:
            for signum in SIGNAL_WORDS:
                self._previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            self.remove()

    def remove(self) -> None:
        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        self._previous.clear()


async def _with_signals(coro: Coroutine[Any, Any, Any], signals: StopSignals) -> Any:
    task = asyncio.current_task()
    signals.install(asyncio.get_running_loop(), lambda: task.cancel() if task is not None else None)
    try:
        return await coro
    finally:
        signals.remove()


def run(coro: Coroutine[Any, Any, Any], *, streams: int = 1, signals: StopSignals | None = None) -> Any:
    """Run `coro` to its end. With `signals`, a stop signal that cancels the coroutine
    raises Stopped (after the coroutine's own clean-up); one that calls on_stop lets the
    coroutine return as usual, and the caller reads `signals.received`."""
    gc.freeze()  # start-up objects are permanent: keep the collector's full passes short
    # Every network read makes hundreds of short-lived tuples (one per event); with the
    # default threshold (700) the young generation is scanned after nearly every read.
    gc.set_threshold(50_000, 10, 10)
    main = coro if signals is None else _with_signals(coro, signals)
    loop_factory = None
    if streams >= UVLOOP_FROM_STREAMS:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop_factory = uvloop.new_event_loop
    try:
        return asyncio.run(main, loop_factory=loop_factory)
    except asyncio.CancelledError:
        if signals is not None and signals.received is not None:
            raise Stopped(signals.received) from None
        raise
