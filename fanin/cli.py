"""`fanin` command line: stream, serve, demo, load.

Exit status: 0 every source completed, 1 a source failed, 2 bad usage, 130 interrupted.
Every error is one line on stderr; with --format ndjson stdout holds only JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from typing import Any

import orjson

from . import __version__, runloop
from .errors import FaninError, UsageError
from .output import make_writer
from .parser import DEFAULT_MAX_LINE_SIZE
from .stream import RECONNECT_MODES, Request, StreamConfig, StreamObserver

__all__ = ["main", "build_parser", "requests_from_args"]

FORMATS = ("ndjson", "text", "pretty")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- value parsers
def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1000**3, "gib": 1024**3}


def byte_size(text: str) -> int:
    """16777216, 64KiB, 16M, 1GB -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes, or a suffix such as 64KiB or 16MiB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def header_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"bad header {text.split(':')[0]!r}: use 'Name: value'")
    return name.strip(), value.strip()


def query_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"bad query parameter {text!r}: use key=value")
    return name, value


# --------------------------------------------------------------------------- parser
def add_request_arguments(parser: argparse.ArgumentParser, *, body_flags: tuple[str, ...] = ("-d", "--data"),
                          json_flag: str = "--json") -> argparse._ArgumentGroup:
    """Request options shared by `fanin stream` and `fanin load` (which names the body
    options --body and --json-body, as -d and --json mean duration and report file there)."""
    g = parser.add_argument_group("request")
    g.add_argument("-X", "--method", default="GET", help="HTTP method (default GET)")
    g.add_argument("-H", "--header", action="append", type=header_pair, default=[], metavar="'K: V'",
                   help="request header (repeatable)")
    g.add_argument("--query", action="append", type=query_pair, default=[], metavar="k=v",
                   help="query parameter added to every URL (repeatable)")
    g.add_argument(*body_flags, dest="data", metavar="BODY", help="raw request body; @FILE reads a file, @- stdin")
    g.add_argument(json_flag, dest="json_body", metavar="JSON", help="JSON request body (sets Content-Type)")
    g.add_argument("--bearer", metavar="TOKEN", help="Authorization: Bearer TOKEN (or set FANIN_BEARER)")
    g.add_argument("--api-key", metavar="TOKEN", help="send TOKEN in an API-key header (or set FANIN_API_KEY)")
    g.add_argument("--api-key-header", default="Authorization", metavar="NAME",
                   help="header for --api-key (default Authorization)")
    return g


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; a sub-command's options are only built when it is the one asked
    for (`command`), so `fanin stream` does not pay for importing the server or the load
    tester at start-up."""
    parser = _Parser(prog="fanin", description="Read many Server-Sent Events streams as one ordered stream.")
    parser.add_argument("--version", action="version", version=f"fanin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("stream", help="read one or many SSE streams and print their events",
                       description="Read SSE streams, merge them in arrival order, print every event.")
    s.add_argument("urls", nargs="+", metavar="URL", help="stream URL; @FILE reads URLs from a file (@- stdin)")
    add_request_arguments(s)
    g = s.add_argument_group("limits and reconnects")
    g.add_argument("--max-events", type=whole_number(1), help="stop after N events in all")
    g.add_argument("--max-duration", type=positive_float, metavar="S", help="stop after S seconds")
    g.add_argument("--timeout", type=positive_float, default=30.0, metavar="S",
                   help="connect timeout: connect and response headers (default 30)")
    g.add_argument("--idle-timeout", type=positive_float, metavar="S",
                   help="reconnect when a stream sends nothing for S seconds")
    g.add_argument("--retries", type=whole_number(0), default=3, metavar="N",
                   help="consecutive failed attempts allowed per source (default 3)")
    g.add_argument("--reconnect", choices=RECONNECT_MODES, default="error",
                   help="error: only after an abnormal end (default); always: also after a clean end; never")
    g.add_argument("--stop-on", metavar="TEXT", help="end a source when an event's data equals TEXT, e.g. [DONE]")
    g.add_argument("--last-event-id", default="", metavar="ID", help="resume from a known event id")
    g.add_argument("--max-line-size", type=byte_size, default=DEFAULT_MAX_LINE_SIZE, metavar="BYTES",
                   help="fail a stream whose line or event grows past this (default 16MiB)")
    g = s.add_argument_group("order and output")
    g.add_argument("--format", choices=FORMATS, default=None,
                   help="ndjson (default when piped), pretty (default on a terminal), text (data only)")
    g.add_argument("--order-by", metavar="PATH", help="event-time order by a timestamp at PATH in each event's JSON")
    g.add_argument("--reorder-window", type=float, default=500.0, metavar="MS",
                   help="how long --order-by holds events (default 500 ms)")
    g.add_argument("--dedup", action="store_true", help="drop events whose own id repeats one already seen")

    sv = sub.add_parser("serve", help="run the built-in SSE server (demo, tests, load targets)")
    if command == "serve":
        from .server import add_serve_arguments

        add_serve_arguments(sv)

    d = sub.add_parser("demo", help="built-in server + fan-in of three live streams; ends by itself")
    d.add_argument("--format", choices=FORMATS, default=None)

    ld = sub.add_parser("load", help="load-test SSE servers with many concurrent streams")
    if command == "load":
        from .load import add_load_arguments

        add_load_arguments(ld)
    return parser


# --------------------------------------------------------------------------- stream
def _read_body(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value.startswith("@"):
        name = value[1:]
        try:
            if name == "-":
                return sys.stdin.buffer.read()
            with open(name, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read body file {name!r}: {exc.strerror}") from None
    return value.encode()


def expand_urls(items: list[str]) -> list[str]:
    """URL arguments, where `@FILE` (or `@-` for stdin) stands for the URLs in a file, one
    per line (blank lines and `#` comments skipped): thousands of URLs exceed a command line."""
    urls: list[str] = []
    for item in items:
        if not item.startswith("@"):
            urls.append(item)
            continue
        name = item[1:]
        try:
            text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read URL list {name!r}: {getattr(exc, 'strerror', None) or exc}") from None
        found = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise UsageError(f"URL list {name!r} holds no URL")
        urls += found
    return urls


def requests_from_args(args: argparse.Namespace) -> list[Request]:
    """Turn the shared request options into one Request per URL."""
    json_body: Any = None
    if args.json_body is not None:
        try:
            json_body = orjson.loads(args.json_body)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"--json is not valid JSON: {exc}") from None
        if args.data is not None:
            raise UsageError("give either --data or --json, not both")
    bearer = args.bearer or os.environ.get("FANIN_BEARER")
    api_key = args.api_key or os.environ.get("FANIN_API_KEY")
    if bearer and api_key:
        raise UsageError("give either --bearer or --api-key, not both")
    auth_type, token = ("bearer", bearer) if bearer else ("api_key", api_key) if api_key else ("none", None)
    body = _read_body(args.data)
    from .stream import MISSING

    requests = []
    for url in args.urls:
        requests.append(Request(
            url=url, method=args.method.upper(), headers=dict(args.header), params=list(args.query),
            body=body, json=json_body if args.json_body is not None else MISSING,
            auth_type=auth_type, auth_token=token, auth_header=args.api_key_header,
        ))
    return requests


def _default_format(requested: str | None) -> str:
    if requested:
        return requested
    return "pretty" if sys.stdout.isatty() else "ndjson"


async def run_stream(args: argparse.Namespace) -> int:
    from .merge import FanIn

    config = StreamConfig(
        connect_timeout=args.timeout, idle_timeout=args.idle_timeout, retries=args.retries,
        reconnect=args.reconnect, max_line_size=args.max_line_size, last_event_id=args.last_event_id,
    )
    fan = FanIn(
        requests_from_args(args), config, max_events=args.max_events, max_duration=args.max_duration,
        stop_on=args.stop_on, order_by=args.order_by, reorder_window_ms=args.reorder_window, dedup=args.dedup,
    )
    return await consume(fan, _default_format(args.format), n_sources=len(args.urls))


async def consume(fan, fmt: str, *, n_sources: int) -> int:
    """Drive a FanIn to its end, writing every record in `fmt`; returns the exit status."""
    writer = make_writer(fmt, n_sources=n_sources)
    if isinstance(writer, StreamObserver) and fan.observer is None:
        fan.observer = writer
    try:
        async with contextlib.aclosing(fan.stream_batches()) as batches:
            async for batch in batches:
                writer.batch(batch)
    finally:
        if fan.summary is not None:
            writer.summary(fan.summary)
        writer.close()
    return 1 if fan.summary and fan.summary.status != "completed" else 0


# --------------------------------------------------------------------------- demo
async def run_demo(args: argparse.Namespace) -> int:
    from .merge import FanIn
    from .server import ServerThread

    with ServerThread() as server:
        urls = [
            server.url("/stream?count=30&rate=6&size=24&event=tick&retry=300"),
            server.url("/stream?count=40&rate=8&ts=1&retry=300"),
            server.url("/stream?count=45&rate=9&size=32&abort_every=12&retry=300"),
        ]
        fmt = _default_format(args.format)
        if fmt != "ndjson":
            print(f"fanin demo: built-in server on http://127.0.0.1:{server.port}; fanning in {len(urls)} streams"
                  " (the third drops its connection every 12 events and resumes with Last-Event-ID)",
                  file=sys.stderr, flush=True)
        fan = FanIn([Request(url=u) for u in urls], StreamConfig(idle_timeout=5), max_duration=15)
        return await consume(fan, fmt, n_sources=len(urls))


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if getattr(args, "urls", None):
            if "@-" in args.urls and getattr(args, "data", None) == "@-":
                raise UsageError("stdin can feed the URL list or the body, not both")
            args.urls = expand_urls(args.urls)
        if args.command == "stream":
            return runloop.run(run_stream(args), streams=len(args.urls))
        if args.command == "demo":
            return runloop.run(run_demo(args))
        if args.command == "serve":
            from .server import run_serve

            return run_serve(args)
        if args.command == "load":
            from .load import run_load

            return run_load(args)
    except UsageError as exc:
        print(f"fanin: error: {exc}", file=sys.stderr)
        return 2
    except FaninError as exc:
        print(f"fanin: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fanin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stop quietly like other Unix tools.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
