"""`fanin stream` and `fanin demo`: drive a FanIn to its end and write every record."""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap

from fanin.stream import Request, StreamConfig, StreamObserver

from .console import is_terminal, terminal_width
from .fd_limit import check_open_files
from .options import requests_from_args
from .writers import make_writer, output_errors

__all__ = ["run_stream", "run_demo", "consume", "default_format"]


def default_format(requested: str | None) -> str:
    if requested:
        return requested
    return "pretty" if sys.stdout is not None and sys.stdout.isatty() else "ndjson"


async def run_stream(args: argparse.Namespace) -> int:
    from fanin.merge import FanIn

    requests = requests_from_args(args)  # bad usage first, then the limit that it may meet
    check_open_files(len(requests))

    config = StreamConfig(
        connect_timeout=args.timeout, idle_timeout=args.idle_timeout, retries=args.retries,
        reconnect=args.reconnect, max_line_size=args.max_line_size, last_event_id=args.last_event_id,
    )
    fan = FanIn(
        requests, config, max_events=args.max_events, max_duration=args.max_duration,
        stop_on=args.stop_on, order_by=args.order_by, reorder_window_ms=args.reorder_window * 1000, dedup=args.dedup,
    )
    return await consume(fan, default_format(args.format), n_sources=len(args.urls), retries=args.retries,
                         extract=args.extract)


async def consume(fan, fmt: str, *, n_sources: int, retries: int = 3, extract: tuple[str, ...] | None = None) -> int:
    """Drive a FanIn to its end, writing every record in `fmt`; returns the exit status.
    The summary is written however the run ends (a limit, Ctrl-C, SIGTERM), unless the
    output itself failed; a failed write raises OutputError (one line, exit 1)."""
    with output_errors():
        writer = make_writer(fmt, n_sources=n_sources, retries=retries, extract=extract)
        if isinstance(writer, StreamObserver) and fan.observer is None:
            fan.observer = writer
        output_failed = False
        try:
            async with contextlib.aclosing(fan.stream_batches()) as batches:
                async for batch in batches:
                    writer.batch(batch)
        except OSError:
            output_failed = True
            raise
        finally:
            if fan.summary is not None and not output_failed:
                writer.summary(fan.summary)
            writer.close()
    return 1 if fan.summary and fan.summary.status != "completed" else 0


async def run_demo(args: argparse.Namespace) -> int:
    from fanin.merge import FanIn
    from fanin.server.app import ServerThread

    with ServerThread() as server:
        urls = [
            server.url("/stream?count=30&rate=6&size=24&event=tick&retry=300"),
            server.url("/stream?count=40&rate=8&ts=1&retry=300"),
            server.url("/stream?count=45&rate=9&size=32&abort_every=12&retry=300"),
        ]
        fmt = default_format(args.format)
        if fmt != "ndjson":
            banner = (f"fanin: demo: built-in server on http://127.0.0.1:{server.port}; fanning in {len(urls)}"
                      " streams (the third drops its connection every 12 events and resumes with Last-Event-ID)")
            if is_terminal(2):  # wrapped at the terminal's width, between words
                banner = textwrap.fill(banner, width=terminal_width(2), break_long_words=False)
            print(banner, file=sys.stderr, flush=True)
        fan = FanIn([Request(url=u) for u in urls], StreamConfig(idle_timeout=5), max_duration=15)
        return await consume(fan, fmt, n_sources=len(urls))
