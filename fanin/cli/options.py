"""Command-line options shared by `fanin stream` and `fanin load`: value parsers, the
request options (method, headers, query, body, auth) and how they become `Request`s."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

import orjson

from fanin.errors import UsageError
from fanin.extract import parse_path
from fanin.stream import MISSING, Request

from .durations import FORMS, parse_duration
from .url_lists import expand_urls

__all__ = ["positive_float", "whole_number", "byte_size", "header_pair", "query_pair", "duration", "json_path",
           "request_method", "add_request_arguments", "add_reconnect_arguments", "read_body", "expand_urls", "requests_from_args"]


def duration(option: str, *, default_unit: str = "s", allow_zero: bool = False):
    """An argparse type for a duration option, in seconds: 2, 2.5, 500ms, 2s, 1m, 1h (the
    forms every command takes; a bare number is in `default_unit`)."""

    def parse(text: str) -> float:
        try:
            value = parse_duration(text, option=option, default_unit=default_unit)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(f"bad duration {text!r} ({FORMS})") from exc
        if value <= 0 and not allow_zero:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
        return value

    return parse


def json_path(option: str):
    """An argparse type for a dotted JSON path (choices.0.delta.content)."""

    def parse(text: str) -> tuple[str, ...]:
        try:
            return parse_path(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"empty JSON path {text!r} (use e.g. choices.0.delta.content)") from None

    return parse


def request_method(method: str | None, *, has_body: bool) -> str:
    """The one rule of `fanin stream` and `fanin load`: the method -X names; without -X,
    POST when a body is given (-d/--data, --json, --body, --json-body, a dataset), else GET.
    That is what curl does with -d, and what an OpenAI-style endpoint expects."""
    if method:
        return method.upper()
    return "POST" if has_body else "GET"


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
    if not sep or not name:  # the text is not echoed: it may be a credential typed without its key
        raise argparse.ArgumentTypeError("bad query parameter: use key=value")
    return name, value


def add_request_arguments(parser: argparse.ArgumentParser, *, body_flags: tuple[str, ...] = ("-d", "--data"),
                          json_flag: str = "--json") -> argparse._ArgumentGroup:
    """Request options shared by `fanin stream` and `fanin load` (which names the body
    options --body and --json-body, as -d and --json mean duration and report file there)."""
    g = parser.add_argument_group("request")
    g.add_argument("-X", "--method", default=None,
                   help="HTTP method (default GET, or POST when a body is given)")
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


def add_reconnect_arguments(group: argparse._ArgumentGroup) -> None:
    """--retries and --reconnect, worded (and defaulted) the same in `fanin stream` and `fanin load`."""
    from fanin.stream import RECONNECT_MODES

    group.add_argument("--retries", type=whole_number(0), default=3, metavar="N",
                       help="how often a source is retried after failed attempts in a row"
                            " (default 3, so 4 attempts; 0: never)")
    group.add_argument("--reconnect", choices=RECONNECT_MODES, default="error",
                       help="when to open a stream again: error = only after an abnormal end (the default);"
                            " always = also after a clean end, as a browser does; never")


def read_body(value: str | None) -> bytes | None:
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
    body = read_body(args.data)
    args.method = request_method(args.method, has_body=body is not None or args.json_body is not None)
    requests = []
    for url in args.urls:
        requests.append(Request(
            url=url, method=args.method, headers=dict(args.header), params=list(args.query),
            body=body, json=json_body if args.json_body is not None else MISSING,
            auth_type=auth_type, auth_token=token, auth_header=args.api_key_header,
        ))
    return requests
