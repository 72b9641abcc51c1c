"""URL arguments, where `@FILE` (or `@-` for stdin) stands for the URLs in a file, one per
line (blank lines and `#` comments skipped): thousands of URLs exceed a command line.

A list is read line by line within fixed bounds, so a hostile or mistaken file (32 MiB of
NUL, one 16 MiB line) costs neither memory nor a terminal full of echo: a URL is at most
MAX_URL_BYTES (servers refuse longer request lines anyway, with 414), a list at most
MAX_LIST_BYTES and MAX_URLS, and an error names `file:line` with an excerpt of at most
EXCERPT_CHARS characters, never the whole line."""

from __future__ import annotations

import sys
from typing import BinaryIO

from fanin.errors import UsageError

__all__ = ["expand_urls", "excerpt", "MAX_URL_BYTES", "MAX_LIST_BYTES", "MAX_URLS", "EXCERPT_CHARS"]

MAX_URL_BYTES = 8 * 1024
MAX_LIST_BYTES = 64 * 1024 * 1024
MAX_URLS = 100_000
EXCERPT_CHARS = 80


def excerpt(raw: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """The start of `raw`, quoted and escaped (NUL shows as \\x00): at most `limit`
    characters of it and at most 2 x `limit` characters shown, with … when cut."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    shown = repr(text[:limit])
    if len(shown) > 2 * limit:
        return shown[: 2 * limit] + "…"
    return shown + ("…" if len(text) > limit else "")


def _check_url(url: str, where: str) -> None:
    size = len(url.encode("utf-8", "replace"))
    if size > MAX_URL_BYTES:
        raise UsageError(f"{where}: URL of {size:,} bytes, over the limit of {MAX_URL_BYTES:,}"
                         f" (starts {excerpt(url)})")


def _read_list(name: str, stream: BinaryIO) -> list[str]:
    """The URLs of one list; UsageError naming `name:line` for the first bad line."""
    shown = "stdin" if name == "-" else name
    urls: list[str] = []
    total = 0
    number = 0
    while True:
        raw = stream.readline(MAX_URL_BYTES + 2)  # room for the line end: a longer line is over
        if not raw:
            break
        number += 1
        total += len(raw)
        where = f"{shown}:{number}"
        if total > MAX_LIST_BYTES:
            raise UsageError(f"{shown}: URL list larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB")
        line = raw.rstrip(b"\r\n")
        if len(line) > MAX_URL_BYTES:
            raise UsageError(f"{where}: line longer than {MAX_URL_BYTES:,} bytes (starts {excerpt(line)})")
        if b"\0" in line:
            raise UsageError(f"{where}: NUL byte in the line (starts {excerpt(line)})")
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{where}: not UTF-8 text (starts {excerpt(line)})") from None
        if not text or text.startswith("#"):
            continue
        if len(urls) >= MAX_URLS:
            raise UsageError(f"{shown}: more than {MAX_URLS:,} URLs")
        urls.append(text)
    if not urls:
        raise UsageError(f"URL list {shown!r} holds no URL")
    return urls


def expand_urls(items: list[str]) -> list[str]:
    """The URLs of the command line, lists expanded, each within the bounds above."""
    urls: list[str] = []
    for position, item in enumerate(items, 1):
        if not item.startswith("@"):
            _check_url(item, f"URL argument {position}")
            urls.append(item)
            continue
        name = item[1:]
        try:
            if name == "-":
                urls += _read_list(name, sys.stdin.buffer)
            else:
                with open(name, "rb") as stream:
                    urls += _read_list(name, stream)
        except OSError as exc:
            raise UsageError(f"cannot read URL list {name!r}: {exc.strerror or exc}") from None
        if len(urls) > MAX_URLS:
            raise UsageError(f"more than {MAX_URLS:,} URLs in all")
    return urls
