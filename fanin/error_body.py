"""The start of an error response's body, made fit for a one-line error message.

Servers such as Dify explain a refusal in the body, so it is worth showing; but a body
that only repeats the status line (`404: Not Found`) says nothing new, and an HTML error
page must not land whole in a terminal or a workflow output. Pure text functions: the
stream reads the bytes (bounded) and masks secrets before they come here."""

from __future__ import annotations

import re

__all__ = ["shown_excerpt", "LIMIT"]

LIMIT = 300  # characters of body text an error line carries
_SCRIPTS = re.compile(r"<(script|style|head)\b.*?(</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]*>|<[^>]*\Z")
_WORDS = re.compile(r"[^\W_]+")
# The entities error pages use. Not the stdlib `html` module: its table of 2,000 names
# costs ~4 ms of every start-up, and nothing on a failure path may import late.
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " ", "copy": "\u00a9",
             "mdash": "\u2014", "ndash": "\u2013", "hellip": "\u2026"}
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name[0] != "#":
        return _ENTITIES.get(name, match.group(0))
    code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
    return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def unescape(text: str) -> str:
    """Character references as an error page uses them; unknown names stay as written."""
    return _ENTITY.sub(_entity, text) if "&" in text else text


def looks_like_html(text: str, content_type: str) -> bool:
    head = text.lstrip()[:15].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype html", "<html"))


def _page_text(page: str) -> str:
    """An HTML page's title and visible text, tags dropped and entities decoded."""
    title = re.search(r"<title\b[^>]*>(.*?)</title\s*>", page, re.IGNORECASE | re.DOTALL)
    body = _TAGS.sub(" ", _SCRIPTS.sub(" ", page))
    text = unescape(body)
    if title:
        title_text = unescape(_TAGS.sub(" ", title.group(1))).strip()
        if title_text and title_text not in text:
            text = f"{title_text} {text}"
    return " ".join(text.split())


def _says_only_the_status(text: str, status: int, reason: str) -> bool:
    """Whether every word of `text` is the status code, its reason phrase or 'HTTP'/'error'."""
    known = {w.lower() for w in _WORDS.findall(f"{status} {reason} http error")}
    return all(w.lower() in known for w in _WORDS.findall(text))


def shown_excerpt(text: str, *, status: int, reason: str, content_type: str = "", size: int | None = None,
                  limit: int = LIMIT) -> str:
    """`text` (already masked) as it may follow "HTTP <status> <reason> from <url>: ", or
    "" when it adds nothing. `size` is the body's length in bytes, when known."""
    is_html = looks_like_html(text, content_type)
    if is_html:
        text = _page_text(text)
    text = " ".join(text.split())
    if not text:
        return f"(HTML error page, {size} bytes)" if is_html and size else ""
    if _says_only_the_status(text, status, reason):
        return ""
    return text[:limit] + ("..." if len(text) > limit else "")
