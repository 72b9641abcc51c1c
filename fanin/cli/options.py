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
from fanin.stream import MISSING, Request

__all__ = ["positive_float", "whole_number", "byte_size", "header_pair", "query_pair",
           "add_request_arguments", "read_body", "expand_urls", "requests_from_args"]


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
    body = read_body(args.data)
    requests = []
    for url in args.urls:
        requests.append(Request(
            url=url, method=args.method.upper(), headers=dict(args.header), params=list(args.query),
            body=body, json=json_body if args.json_body is not None else MISSING,
            auth_type=auth_type, auth_token=token, auth_header=args.api_key_header,
        ))
    return requests
