"""Content codings of a response body (RFC 9110, 8.4.1), decoded in bounded pieces.

aiohttp's own decompression knows one coding per response and passes anything else
through undecoded (`gzip, gzip`, `x-gzip`, `compress`...), which the SSE parser then
reads as one endless line: silent loss. Here every coding the standard names is decoded
in the order the server applied them (stacked codings are undone last first), and
anything else is refused by name. Output comes out in pieces of at most PIECE bytes, each
parsed before the next is made, so the parser's max_line_size and the process byte budget
bound decoded bytes: a small compressed body cannot expand in memory (no decompression
bomb)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

try:  # aiohttp imports it too when present (it advertises br then): no extra start-up cost
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the installation
    _brotli = None

__all__ = ["BodyDecoder", "DecodeError", "UnsupportedCoding", "decoder_for", "SUPPORTED", "ACCEPT_ENCODING", "PIECE"]

PIECE = 65536  # bytes of decoded output per step (the size of one network read)
_BROTLI_OK = _brotli is not None and hasattr(_brotli, "Decompressor") and hasattr(
    _brotli.Decompressor(), "can_accept_more_data")
SUPPORTED: tuple[str, ...] = ("gzip", "x-gzip", "deflate") + (("br",) if _BROTLI_OK else ())
# What requests ask for: exactly what can be decoded here (aiohttp's default would also name
# zstd wherever a zstd module is installed).
ACCEPT_ENCODING = ", ".join(c for c in SUPPORTED if c != "x-gzip")


class UnsupportedCoding(ValueError):
    """A Content-Encoding this client cannot decode (str() names it)."""


class DecodeError(ValueError):
    """The body is not valid data of its declared coding."""


class _Zlib:
    """gzip (with several members, as RFC 1952 allows) or deflate (zlib-wrapped as RFC 9110
    says, or raw, as some servers send)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.gzip = coding != "deflate"
        self._head = b""  # deflate: the first bytes, until the wrapper is known
        self._d: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._d is None:  # deflate: a zlib header (RFC 1950) or raw deflate (RFC 1951)?
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._d = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        d = self._d
        try:
            while data or not d.eof:
                if d.eof:
                    if not self.gzip or not data.strip(b"\0"):
                        return  # bytes after the end (zero padding, trailing junk): ignored, as zlib does
                    d = self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
                out = d.decompress(data, PIECE)
                data = d.unconsumed_tail
                if d.eof and d.unused_data:
                    data = d.unused_data
                if out:
                    yield out
                if not data and len(out) < PIECE:
                    return
        except zlib.error as exc:
            raise DecodeError(f"bad {self.coding} data ({exc})") from None

    @property
    def finished(self) -> bool:
        return self._d is not None and self._d.eof


class _Brotli:
    def __init__(self) -> None:
        assert _brotli is not None
        self._d = _brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._d.process(data, output_buffer_limit=PIECE)
            while True:
                if out:
                    yield out
                if self._d.can_accept_more_data():
                    return
                out = self._d.process(b"", output_buffer_limit=PIECE)
        except _brotli.error as exc:
            raise DecodeError(f"bad br data ({exc})") from None

    @property
    def finished(self) -> bool:
        return bool(self._d.is_finished())


class BodyDecoder:
    """Undoes a list of codings, given in the order the server applied them."""

    def __init__(self, codings: list[str]) -> None:
        self.codings = codings
        self._stages = [_Brotli() if c == "br" else _Zlib(c) for c in reversed(codings)]
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded bytes of `data`, in pieces of at most PIECE bytes, made one at a time."""
        self._fed = self._fed or bool(data)
        return self._through(0, data)

    def _through(self, stage: int, data: bytes) -> Iterator[bytes]:
        if stage == len(self._stages):
            yield data
            return
        for piece in self._stages[stage].feed(data):
            yield from self._through(stage + 1, piece)

    @property
    def finished(self) -> bool:
        """Every coding reached its end (else the body stopped inside its compressed data).
        An empty body is finished: there was nothing to decode."""
        return not self._fed or all(s.finished for s in self._stages)


def decoder_for(headers: Mapping[str, str]) -> BodyDecoder | None:
    """The decoder a response's Content-Encoding header(s) call for; None when the body is
    not encoded. Several headers are one list (RFC 9110, 5.3). Raises UnsupportedCoding."""
    getall = getattr(headers, "getall", None)
    values = getall("Content-Encoding", []) if getall else [headers.get("Content-Encoding", "")]
    codings = [c.strip().lower() for value in values for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    for coding in codings:
        if coding not in SUPPORTED:
            raise UnsupportedCoding(coding[:40])
    return BodyDecoder(codings)
