"""The one place that keeps secrets out of every text the product makes.

`Secrets` is built once from what a request sends (the token, the values of auth-like
headers, credential-like query values, URL userinfo and its `Basic` base64 pair) and matches
each in every spelling it can come back in: as sent, percent-encoded in any mix (yarl, aiohttp
and servers each escape different characters) and twice (a URL inside a URL), `+` for space,
JSON- or repr-escaped, in either case. `scrub(text)` masks them all. The engine applies it where text is made
(source errors and reports, validation errors); the Dify tools and `fanin load` reuse the same
value for the text they compose, so no face keeps a list of its own.

Scrubbing always happens before any truncation, so a cut can never leave a secret's first part.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

__all__ = ["MASK", "Secrets", "is_secret_name", "redact_url"]

MASK = "***"
MIN_SECRET = 3  # shorter values are not secrets anyone could rely on, and masking them would garble text

# Header names and query keys that carry credentials (X-Auth-Token, X-Api-Key, Cookie,
# Proxy-Authorization, access_token, sig, session_id, ...). Over-matching only masks more.
_SECRET_NAME = re.compile(r"(?i)(auth|key|token|secret|passw|pwd|cookie|session|sig|credential)")


# Names that match the pattern above but hold counts, not credentials (LLM APIs' max_tokens,
# max_new_tokens, num_tokens...): masking them would hide a load test's own settings.
_COUNT_NAME = re.compile(r"(?i)^[a-z_]*tokens$")


def is_secret_name(name: str) -> bool:
    """True for a header name or query key whose value is a credential."""
    return bool(_SECRET_NAME.search(name)) and not _COUNT_NAME.match(name)


# RFC 3986 appendix B: splits any string (it never fails), so a URL too broken for a URL
# parser is still masked before it is quoted in an error.
_URL_PARTS = re.compile(r"^(?P<head>(?:[^:/?#]+:)?(?://)?)(?P<authority>(?<=//)[^/?#]*)?(?P<path>[^?#]*)"
                        r"(?:\?(?P<query>[^#]*))?(?P<fragment>#.*)?$", re.DOTALL)


def _parts(url: str) -> tuple[str, str, str, str | None, str]:
    """(head, authority, path, query or None, fragment) of any string."""
    m = _URL_PARTS.match(url)
    assert m is not None  # every group is optional
    return m["head"], m["authority"] or "", m["path"], m["query"], m["fragment"] or ""


def redact_url(url: str) -> str:
    """The URL as it may be shown: userinfo masked (the password, or a lone user name, which
    is then a token), credential-like query values masked; the rest exactly as given."""
    head, authority, path, query, fragment = _parts(url)
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    if query:
        pieces = []
        for piece in query.split("&"):
            key, equals, _value = piece.partition("=")
            pieces.append(f"{key}={MASK}" if equals and is_secret_name(unquote(key)) else piece)
        query = "&".join(pieces)
    return head + authority + path + ("" if query is None else "?" + query) + fragment


def _char_pattern(char: str) -> str:
    """A character in any spelling it can come back in: as is, percent-encoded once or twice
    (a URL carried inside another URL's query, as in a login redirect's `?next=`), `+` for a
    space, JSON- or repr-escaped. Hex digits match in either case (the pattern ignores case)."""
    utf8 = char.encode("utf-8")
    spellings = {char, "".join(f"%{b:02x}" for b in utf8), "".join(f"%25{b:02x}" for b in utf8)}
    if char == " ":
        spellings |= {"+", "%2b"}
    if char in "/\\\"'":
        spellings.add("\\" + char)
    if not char.isascii():
        spellings.add(json.dumps(char)[1:-1])  # \u20ac
        spellings.add(char.encode("unicode_escape").decode("ascii"))  # \xe9
    return "(?:" + "|".join(map(re.escape, sorted(spellings, key=len, reverse=True))) + ")"


def _value_pattern(value: str) -> str:
    """A secret in every spelling at once, mixed ones included (yarl, aiohttp and servers
    each leave different characters unescaped)."""
    return "".join(_char_pattern(c) for c in value)


def _basic_forms(user: str, password: str | None) -> Iterator[str]:
    pair = f"{user}:{password or ''}"
    yield pair
    for encoding in ("latin-1", "utf-8"):
        try:
            yield base64.b64encode(pair.encode(encoding)).decode("ascii")
        except UnicodeEncodeError:
            continue


def _header_values(name: str, value: str) -> Iterator[str]:
    """A credential header's value, its credential part ("Bearer abc" -> abc), a Basic
    pair decoded, and each cookie's value."""
    yield value
    scheme, _, credential = value.strip().partition(" ")
    credential = credential.strip()
    if credential:
        yield credential
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                decoded = ""
            if decoded:
                yield decoded
                yield decoded.partition(":")[2]
    if "cookie" in name.lower():
        for part in value.split(";"):
            yield part.partition("=")[2].strip()


def _url_values(url: str) -> Iterator[str]:
    _head, authority, _path, query, _fragment = _parts(url)
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        raw_user, colon, raw_password = userinfo.partition(":")
        user, password = unquote(raw_user), unquote(raw_password)
        if colon:
            yield from (raw_password, password, userinfo)
            yield from _basic_forms(user, password)
        else:
            yield from (raw_user, user)
            yield from _basic_forms(user, None)
    for piece in (query or "").split("&"):
        key, _, raw_value = piece.partition("=")
        if is_secret_name(unquote(key)):
            yield raw_value
            yield unquote(raw_value.replace("+", " "))


@functools.lru_cache(maxsize=64)
def _compile(values: frozenset[str]) -> re.Pattern[str]:
    """One pattern for a set of secrets, shared by every stream that sends the same ones
    (ten thousand sources with one token build it once)."""
    ordered = sorted(values, key=len, reverse=True)  # longest first: no half-masked overlap
    return re.compile("|".join(map(_value_pattern, ordered)), re.IGNORECASE)


class Secrets:
    """Every secret one run (or one request) sends, matched in every spelling; `scrub` masks them."""

    __slots__ = ("values", "_pattern")

    def __init__(self, values: Iterable[str] = ()) -> None:
        found: set[str] = set()
        for value in values:
            if value and len(value) >= MIN_SECRET:
                found.add(value)
                if "%" in value:  # given percent-encoded (in a URL): what a server decodes
                    found.add(unquote(value))
        self.values = frozenset(found)
        self._pattern: re.Pattern[str] | None = None

    @classmethod
    def of_request(cls, request: Any) -> Secrets:
        """From a `fanin.stream.Request` (read by attribute: this module sits below it)."""
        values: list[str] = []
        if request.auth_token:
            values.append(request.auth_token)
        api_key_header = request.auth_header.lower() if request.auth_type == "api_key" else None
        for name, value in request.headers.items():
            if is_secret_name(name) or name.lower() == api_key_header:
                values += _header_values(name, value)
        values += _url_values(str(request.url))
        for key, value in request.params or ():
            if is_secret_name(str(key)):
                values.append(str(value))
        return cls(values)

    @classmethod
    def union(cls, many: Iterable[Secrets]) -> Secrets:
        merged = cls()
        merged.values = frozenset().union(*(s.values for s in many))
        return merged

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def longest(self) -> int:
        """Bytes of the longest spelling (every character escaped): how far past a cut a
        secret may reach."""
        return max((6 * len(v.encode("utf-8")) for v in self.values), default=0)

    def scrub(self, text: str) -> str:
        """`text` with every spelling of every secret replaced by ***."""
        if not self.values or not text:
            return text
        if self._pattern is None:
            self._pattern = _compile(self.values)
        return self._pattern.sub(MASK, text)

    def display_url(self, url: str) -> str:
        """A URL as it may be shown in output and errors."""
        return self.scrub(redact_url(url))
