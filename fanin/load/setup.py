"""The requests and the engine configuration a load run sends, built from the command line
exactly as `fanin stream` builds them, and checked before any load starts."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import orjson

from fanin.cli.durations import parse_duration
from fanin.errors import UsageError

__all__ = ["build_requests", "build_config", "run_until_stopped"]


def build_requests(args: argparse.Namespace) -> list:
    """One validated Request per URL, built exactly as `fanin stream` builds them."""
    from fanin.cli.options import requests_from_args

    if args.json_body is not None:
        try:
            orjson.loads(args.json_body)
        except orjson.JSONDecodeError:
            raise UsageError("--json-body is not valid JSON") from None
    requests = requests_from_args(args)
    for request in requests:
        if getattr(args, "body_bytes", None) is not None:  # read once by run_load (a file or stdin)
            request.body = args.body_bytes
        request.validate()
    return requests


def build_config(args: argparse.Namespace):
    from fanin.stream import StreamConfig

    config = StreamConfig(
        connect_timeout=parse_duration(args.timeout, option="--timeout"),
        idle_timeout=parse_duration(args.idle_timeout, option="--idle-timeout") if args.idle_timeout else None,
        retries=args.retries,
        reconnect=args.reconnect,
    )
    config.validate()
    return config


async def run_until_stopped(runner: Any) -> dict[str, Any]:
    """Run a load runner (either mode) so that Ctrl-C and SIGTERM stop it gracefully and it
    still reports what it measured."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, runner.stop)
        loop.add_signal_handler(signal.SIGTERM, runner.stop)
    except (NotImplementedError, RuntimeError):  # not the main thread (tests)
        pass
    return await runner.run()
