"""Where the engine reaches into aiohttp's internals: every such place, with the upstream
behaviour it works around. Each one degrades to aiohttp's own behaviour (never a crash)
on an aiohttp that lacks the attribute it uses.

1. Buffered bytes are lost when a read fails. `StreamReader.read*()` raise a stored
   error before handing out what is still buffered, so a connection cut under
   backpressure loses the events already received (the same design as asyncio's
   StreamReader: python/cpython#75044; asked of aiohttp in aio-libs/aiohttp#3026).
2. A malformed body hangs the reader. When the HTTP parser fails inside a body (a chunk
   size of `zz`), `ResponseHandler.data_received` stores the error on the protocol and
   closes the transport, but the response's `StreamReader` gets neither the error nor an
   end, so a read waits forever (related parser hangs: aio-libs/aiohttp#10355,
   aio-libs/aiohttp#10596). `surface_body_errors` gives a session's connector a
   protocol that hands such an error to the body reader as `MalformedBody`, at once.
   (aiohttp's pure-Python parser, AIOHTTP_NO_EXTENSIONS=1, hands the reader the parser's own
   `HttpProcessingError` instead: `MALFORMED_BODY` names both.)
"""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_exceptions import HttpProcessingError, TransferEncodingError

__all__ = ["received_before_the_error", "surface_body_errors", "MalformedBody", "MALFORMED_BODY", "body_error_detail"]


class MalformedBody(aiohttp.ClientPayloadError):
    """The response body broke the HTTP framing rules (bad chunk size, bad chunk end...)."""


# What a body read raises when the body broke the framing rules.
MALFORMED_BODY = (MalformedBody, HttpProcessingError)


def body_error_detail(exc: BaseException) -> str:
    """The parser's own words for a malformed body, on one line, bounded, with what broke."""
    if isinstance(exc, MalformedBody):
        return str(exc)
    detail = " ".join(str(getattr(exc, "message", "") or exc).split())[:120].rstrip(" ^")
    if isinstance(exc, TransferEncodingError) and "chunk" not in detail.lower():
        detail = f"bad chunked encoding: {detail}"
    return detail or exc.__class__.__name__


class _BodyErrorSurfacingHandler(ResponseHandler):
    """aiohttp's protocol, except that a parser error inside a body reaches the body's reader."""

    def set_exception(self, exc: BaseException, *args: Any, **kwargs: Any) -> None:
        payload = getattr(self, "_payload", None)
        if (isinstance(exc, HttpProcessingError) and payload is not None and not payload.is_eof()
                and payload.exception() is None):
            cause = args[0] if args and isinstance(args[0], HttpProcessingError) else exc  # the parser's own error
            payload.set_exception(MalformedBody(body_error_detail(cause)))
        super().set_exception(exc, *args, **kwargs)


def surface_body_errors(connector: aiohttp.BaseConnector | None) -> None:
    """Make the connections `connector` opens from now on surface body errors (item 2).
    A connector with a protocol factory of its own is left as it is."""
    factory = getattr(connector, "_factory", None)
    if isinstance(factory, functools.partial) and factory.func is ResponseHandler:
        connector._factory = functools.partial(_BodyErrorSurfacingHandler, *factory.args,  # type: ignore[union-attr]
                                               **factory.keywords)


def received_before_the_error(content: aiohttp.StreamReader) -> bytes:
    """The bytes a broken connection had already delivered. There is no public way to
    take them, so the stored error is set aside for one non-blocking read; on an aiohttp
    without that attribute nothing is taken (the old loss, never a crash)."""
    error = getattr(content, "_exception", None)
    if error is None:
        return b""
    content._exception = None
    try:
        return content.read_nowait(-1)
    except Exception:  # whatever this aiohttp does, the caller still raises the original error
        return b""
    finally:
        content._exception = error
