"""`fanin` command line: stream, serve, demo, load.

Exit status: 0 every source completed, 1 a source failed (or the output cannot be written),
2 bad usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Every error is one line on
stderr starting `fanin: error: ` (or `fanin: source N failed: `), never a traceback; with
--format ndjson stdout holds only JSON lines. An interrupted or terminated `fanin stream`
still writes its summary, with `stopped_by: "interrupt"` (runloop.StopSignals).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from fanin import __version__
from fanin.errors import FaninError, UsageError

from .lazy_tls import import_aiohttp

import_aiohttp()  # before anything imports aiohttp: its CA bundle loads on first TLS use
from fanin.parser import DEFAULT_MAX_LINE_SIZE

from . import runloop
from .console import shown_error
from .extras import check_command, check_extras
from .options import (
    add_reconnect_arguments,
    add_request_arguments,
    byte_size,
    duration,
    expand_urls,
    json_path,
    request_method,
    whole_number,
)

__all__ = ["main", "build_parser"]

FORMATS = ("ndjson", "text", "pretty")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what could not be
    written does not print a second error."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"fanin: error: {message}\n")


# --------------------------------------------------------------------------- parser
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
    g.add_argument("--max-events", type=whole_number(1), metavar="N", help="stop after N events in all")
    g.add_argument("--max-duration", type=duration("--max-duration"), metavar="TIME",
                   help="stop after this long (e.g. 30, 2.5, 500ms, 2s, 1m, 1h; a bare number is seconds)")
    g.add_argument("--timeout", type=duration("--timeout"), default=30.0, metavar="TIME",
                   help="connect timeout: connect and response headers (default 30s)")
    g.add_argument("--idle-timeout", type=duration("--idle-timeout"), metavar="TIME",
                   help="reconnect when a stream sends nothing for this long (default: never)")
    add_reconnect_arguments(g)
    g.add_argument("--stop-on", metavar="TEXT", help="end a source when an event's data equals TEXT, e.g. [DONE]")
    g.add_argument("--last-event-id", default="", metavar="ID", help="resume from a known event id")
    g.add_argument("--max-line-size", type=byte_size, default=DEFAULT_MAX_LINE_SIZE, metavar="BYTES",
                   help="fail a stream whose line or event grows past this (default 16MiB)")
    g = s.add_argument_group("order and output")
    g.add_argument("--format", choices=FORMATS, default=None,
                   help="ndjson (default when piped), pretty (default on a terminal), text (data only)")
    g.add_argument("--order-by", metavar="PATH", help="event-time order by a timestamp at PATH in each event's JSON")
    g.add_argument("--reorder-window", type=duration("--reorder-window", default_unit="ms", allow_zero=True),
                   default=0.5, metavar="TIME",
                   help="how long --order-by holds events (default 500ms; a bare number is milliseconds)")
    g.add_argument("--extract", type=json_path("--extract"), metavar="PATH",
                   help="print the text at PATH in each event's JSON, e.g. choices.0.delta.content"
                        " (events with nothing there print nothing; ndjson adds an \"extracted\" field)")
    g.add_argument("--dedup", action="store_true", help="drop events whose own id repeats one already seen")

    sv = sub.add_parser("serve", help="run the built-in SSE server (demo, tests, load targets)")
    if command == "serve":
        from fanin.server.command import add_serve_arguments

        add_serve_arguments(sv)

    d = sub.add_parser("demo", help="built-in server + fan-in of three live streams; ends by itself")
    d.add_argument("--format", choices=FORMATS, default=None)

    ld = sub.add_parser("load", help="load-test SSE servers with many concurrent streams")
    if command == "load":
        from fanin.load.command import add_load_arguments

        add_load_arguments(ld)
    return parser


# --------------------------------------------------------------------------- stream
# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        check_command(command)
    except UsageError as exc:
        print(f"fanin: error: {exc}", file=sys.stderr)
        return 2
    if command == "load" and argv[argv.index("load") + 1:][:1] == ["compare"] and ("-h" in argv or "--help" in argv):
        from fanin.load.compare import print_compare_help

        print_compare_help()
        return 0
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        check_extras(args)
        if getattr(args, "urls", None):
            if "@-" in args.urls and getattr(args, "data", None) == "@-":
                raise UsageError("stdin can feed the URL list or the body, not both")
            args.urls = expand_urls(args.urls)
        if hasattr(args, "method"):  # stream and load: one rule for the method (options.request_method)
            has_body = (args.data is not None or args.json_body is not None or bool(getattr(args, "dataset", None))
                        or getattr(args, "input_tokens", None) is not None  # load: synthetic bodies
                        or getattr(args, "output_tokens", None) is not None)
            args.method = request_method(args.method, has_body=has_body)
        if args.command == "stream":
            from .stream_command import run_stream

            return runloop.run(run_stream(args), streams=len(args.urls), signals=runloop.StopSignals())
        if args.command == "demo":
            from .demo import run_demo

            return runloop.run(run_demo(args), signals=runloop.StopSignals())
        if args.command == "serve":
            from fanin.server.command import run_serve

            return run_serve(args)
        if args.command == "load":
            from fanin.load.command import run_load

            return run_load(args)
    except UsageError as exc:
        print(f"fanin: error: {shown_error(str(exc))}", file=sys.stderr)
        return 2
    except FaninError as exc:
        from .writers import OutputError

        if isinstance(exc, OutputError):
            _silence_stdout()
        print(f"fanin: error: {shown_error(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fanin: interrupted", file=sys.stderr)
        return 130
    except runloop.Stopped as exc:
        print(f"fanin: {exc}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stop quietly like other Unix tools.
        _silence_stdout()
        return 0
    except OSError as exc:  # e.g. `fanin load --json - > /dev/full`: one line, never a traceback
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except OSError:
            _silence_stdout()
        print(f"fanin: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
