"""`fanin stream`: drive a FanIn to its end and write every record."""

from __future__ import annotations

import argparse
import contextlib
import sys

from fanin.stream import StreamConfig, StreamObserver

from .fd_limit import check_open_files
from .options import requests_from_args
from .writers import make_writer, output_errors

__all__ = ["run_stream", "consume", "default_format"]


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
