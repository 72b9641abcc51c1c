"""The one place that keeps secrets out of every text the product makes.

`Secrets` is built once from what a request sends (the token, the values of auth-like
headers, credential-like query values, URL userinfo and its `Basic` base64 pair, the URL's
fragment, credential-like fields of a JSON or form body) and from what the session adds to it
(the userinfo of every proxy URL in the environment, as aiohttp's trust_env sends it in
Proxy-Authorization, and the ~/.netrc entries aiohttp may send), and matches
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
import netrc
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote

__all__ = ["MASK", "Secrets", "is_secret_name", "redact_url"]

MASK = "***"
MIN_FRAGMENT = 8  # a whole fragment this long may be a bare token; shorter ones are anchors (#top)
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
    is then a token), credential-like query values masked, the fragment masked whole (never
    sent, it is where OAuth puts `#access_token=...`); the rest exactly as given."""
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
    if len(fragment) > 1:
        fragment = "#" + MASK
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
    if not char.isascii() or not char.isprintable():
        spellings.add(json.dumps(char)[1:-1])  # \u20ac, \n, \u0001
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
    _head, authority, _path, query, fragment = _parts(url)
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
    yield from _pair_values(query or "")
    fragment = fragment[1:]
    if len(fragment) >= MIN_FRAGMENT:
        yield from (fragment, unquote(fragment))
    yield from _pair_values(fragment)  # #access_token=...&token_type=bearer


def _pair_values(text: str) -> Iterator[str]:
    """The values of credential-like keys in `k=v&k=v` text, as sent and decoded."""
    for piece in text.split("&"):
        key, _, raw_value = piece.partition("=")
        if is_secret_name(unquote(key)):
            yield raw_value
            yield unquote(raw_value.replace("+", " "))


def _json_values(document: Any) -> Iterator[str]:
    """Every scalar under a credential-like key of a JSON document, however deep (walked with
    a stack: a body nested past the recursion limit is still walked)."""
    stack = [(document, False)]
    while stack:
        node, secret = stack.pop()
        if isinstance(node, dict):
            stack.extend((value, secret or is_secret_name(str(key))) for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, secret) for value in node)
        elif secret and isinstance(node, (str, int, float)) and not isinstance(node, bool):
            yield node if isinstance(node, str) else json.dumps(node)


@functools.lru_cache(maxsize=64)
def _raw_body_values(body: bytes) -> tuple[str, ...]:
    """Credential-like fields of a raw body: JSON (`{"password": ...}`), else form-encoded
    (`user=a&password=...`). Cached: every source of a run sends the same body."""
    text = body.decode("utf-8", "replace")
    try:
        return tuple(_json_values(json.loads(text)))
    except ValueError:  # not JSON: read it as a form
        return tuple(_pair_values(text))
    except RecursionError:  # JSON nested deeper than the json module parses
        return ()


def _body_values(request: Any) -> Iterator[str]:
    json_body = getattr(request, "json", None)
    if isinstance(json_body, (dict, list, tuple)):
        yield from _json_values(json_body)
    body = request.body
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if body:
        yield from _raw_body_values(bytes(body))


def _netrc_path() -> str:
    """Where aiohttp's trust_env reads netrc credentials from: $NETRC, else ~/.netrc."""
    given = os.environ.get("NETRC")
    return given if given is not None else os.path.expanduser("~/.netrc")


@functools.lru_cache(maxsize=8)
def _netrc_entries(path: str, _mtime_ns: int) -> dict[str, tuple[str, str]]:
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        return {}
    return {host: (login or account or "", password or "") for host, (login, account, password) in hosts.items()}


def _netrc_values(hosts: Iterable[str]) -> Iterator[str]:
    path = _netrc_path()
    try:
        mtime = os.stat(path).st_mtime_ns
    except (OSError, ValueError):
        return
    entries = _netrc_entries(path, mtime)
    for host in hosts:
        entry = entries.get(host) or entries.get("default")
        if entry and entry[1]:
            yield entry[1]
            yield from _basic_forms(*entry)


@functools.lru_cache(maxsize=8)
def _proxy_values(proxies: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Every form of every proxy credential: userinfo as given, decoded, `user:password` and
    its Basic base64 (what Proxy-Authorization carries)."""
    values: list[str] = []
    for scheme, url in proxies:
        if scheme != "no":  # no_proxy is a list of hosts, not a proxy
            values += _url_values(_with_scheme(url))
    return tuple(values)


# The proxy variables that matter to aiohttp for http(s) URLs, in their usual spellings: a
# cheap key that says when to read every *_proxy variable again. NO_PROXY alone also turns
# trust_env on in the engine's session (and with it netrc).
_PROXY_NAMES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY")


@functools.lru_cache(maxsize=8)
def _proxies(_key: tuple[str | None, ...]) -> tuple[tuple[str, str], ...]:
    """urllib's reading of every *_proxy variable (any case), as aiohttp's trust_env uses it;
    read again whenever one of the usual spellings changes (a full read costs 25 us)."""
    return tuple(sorted(urllib.request.getproxies().items()))


def _session_values(url: str) -> Iterator[str]:
    """What the session may add to a request to `url` on its own: proxy credentials from the
    environment and netrc entries for the host and the proxies. aiohttp reads both only with
    trust_env, which the engine's session turns on exactly when a proxy is configured
    (fanin.merge.make_session), so without one there is nothing to look up."""
    get = os.environ.get
    proxies = _proxies(tuple(get(name) for name in _PROXY_NAMES))
    if proxies:
        yield from _proxy_values(proxies)
        hosts = [_host_of(url)] + [_host_of(_with_scheme(proxy)) for scheme, proxy in proxies if scheme != "no"]
        yield from _netrc_values(h for h in hosts if h)


def _with_scheme(proxy: str) -> str:
    return proxy if "://" in proxy else "http://" + proxy  # `user:pw@host:3128`, as curl reads it


def _host_of(url: str) -> str:
    authority = _parts(url)[1].rsplit("@", 1)[-1]
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


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
        values += _body_values(request)
        values += _session_values(str(request.url))
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
