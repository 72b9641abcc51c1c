"""Which optional extra a sub-command needs, checked before it starts.

`pip install sse-fanin` is the engine alone (aiohttp, orjson); each face's own
dependencies come with an extra. Without the one a command needs, the command says so in one
line that names the extra and the pip command, rather than failing with an ImportError."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from fanin.errors import UsageError

__all__ = ["EXTRA_MODULES", "missing_modules", "check_command", "check_extras"]

# extra -> the import names it provides that a command cannot run without (uvloop is a
# speed-up only: runloop falls back to asyncio without it)
EXTRA_MODULES = {"cli": ("rich",), "load": ("rich", "hdrh", "httptools")}


def missing_modules(extra: str) -> list[str]:
    return [name for name in EXTRA_MODULES[extra] if importlib.util.find_spec(name) is None]


def _refuse(what: str, extra: str) -> None:
    raise UsageError(f"{what} needs the [{extra}] extra: pip install 'sse-fanin[{extra}]'")


def check_command(command: str | None) -> None:
    """Before the parser is built: `fanin load`'s own options import its histograms."""
    if command == "load" and missing_modules("load"):
        _refuse("fanin load", "load")


def check_extras(args: argparse.Namespace) -> None:
    """Raise a UsageError (exit 2) when `args.command` needs an extra that is not installed.
    `fanin stream` and `fanin demo` pick the pretty view on a terminal only when rich is there
    (text otherwise); asking for `--format pretty` without it is refused."""
    if args.command == "load" and missing_modules("load"):
        _refuse("fanin load", "load")
    if args.command in ("stream", "demo") and missing_modules("cli"):
        if args.format == "pretty":
            _refuse(f"fanin {args.command} --format pretty", "cli")
        if args.format is None and sys.stdout is not None and sys.stdout.isatty():
            args.format = "text"
