"""`fanin demo`: the built-in server (a face of its own) and a fan-in of three of its live
streams, written by `fanin stream`'s writers. It starts two faces together, so it sits with
the entry points, above both, and neither face imports the other."""

from __future__ import annotations

import argparse
import sys
import textwrap

from fanin.stream import Request, StreamConfig

from .console import is_terminal, terminal_width
from .stream_command import consume, default_format

__all__ = ["run_demo"]


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
