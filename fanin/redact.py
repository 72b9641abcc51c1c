"""Keep secrets out of anything a user sees: URLs shown in output lose their password and
the values of credential-looking query parameters, and error texts lose the tokens."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "scrub"]

_SECRET_PARAM = re.compile(r"(?i)(token|key|secret|password|passwd|auth|signature|sig|credential)")
MASK = "***"


def redact_url(url: str) -> str:
    """The URL as it may be shown: no userinfo password, credential-like query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query and _SECRET_PARAM.search(query):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """Replace every secret (tokens, auth header values) in a message by ***."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
