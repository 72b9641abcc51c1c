"""`fanin serve`: run the built-in server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from fanin.cli.fd_limit import raise_soft_limit

from .app import endpoint_paths, start_server

__all__ = ["add_serve_arguments", "run_serve"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--quiet", action="store_true", help="do not print the listening line")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")


async def _serve_forever(args: argparse.Namespace) -> int:
    try:
        runner, port = await start_server(args.host, args.port, access_log=getattr(args, "access_log", False))
    except OSError as exc:
        # aiohttp's text repeats the address ("error while attempting to bind on address ..."):
        # the errno's own words are enough after ours
        reason = os.strerror(exc.errno).lower() if exc.errno else (exc.strerror or str(exc))
        print(f"fanin: error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
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
    raise_soft_limit()  # 10,000 streams need 10,000 sockets
    try:
        return asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        return 0
