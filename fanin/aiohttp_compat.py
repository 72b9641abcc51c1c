"""Where the engine reaches into aiohttp's internals: every such place, with the upstream
behaviour it works around. Each one degrades to aiohttp's own behaviour (never a crash)
on an aiohttp that lacks the attribute it uses.

1. Buffered bytes are lost when a read fails. `StreamReader.read*()` raise a stored
   error before handing out what is still buffered, so a connection cut under
   backpressure loses the events already received (the same design as asyncio's
   StreamReader: python/cpython#75044; asked of aiohttp in aio-libs/aiohttp#3026).
"""

from __future__ import annotations

import aiohttp

__all__ = ["received_before_the_error"]


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
