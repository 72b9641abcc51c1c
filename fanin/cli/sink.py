"""Standard output as a file descriptor that takes every byte or raises.

Through Python's buffered stdout, a write the kernel cut short (Linux stops one write at
about 2 GiB; a signal stops one into a full pipe after what fitted) could lose the rest
while the summary counted it. Here every write goes out in pieces of at most PIECE bytes and
each count is checked: a write returns only when all of it is out, so a stop signal can only
land between whole records."""

from __future__ import annotations

import errno
import io
import os
import select
from typing import IO, Any

__all__ = ["Sink", "TextSink", "PIECE", "stdout_sink"]

PIECE = 1 << 20  # far below the kernel's per-write cap; big enough that the pieces cost nothing


class Sink:
    """Bytes to one file descriptor, each write whole (or an OSError)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            try:
                written = os.write(self.fd, view[:PIECE])  # EINTR is retried by Python (PEP 475)
            except BlockingIOError:  # a descriptor left non-blocking by whoever started us
                select.select([], [self.fd], [])
                continue
            if written <= 0:
                raise OSError(errno.EIO, "the output took no bytes")
            view = view[written:]

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return os.isatty(self.fd)


def stdout_sink() -> Sink | _StreamSink:
    """A Sink on standard output's descriptor (what Python buffered so far goes out first);
    when stdout has no descriptor (replaced in-process, as test runners do), its own write."""
    import sys

    stream = sys.stdout
    try:
        stream.flush()
        return Sink(stream.fileno())
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return _StreamSink(stream)


class _StreamSink:
    """Bytes to a stream that has no file descriptor."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.fd = -1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        target = getattr(self.stream, "buffer", None)
        if target is not None:
            target.write(bytes(data))
        elif isinstance(self.stream, io.TextIOBase):
            self.stream.write(bytes(data).decode("utf-8", "replace"))
        else:  # a binary stream (io.BytesIO...)
            self.stream.write(bytes(data))
        self.stream.flush()

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class TextSink:
    """The file object rich and the text writer print to: text encoded as UTF-8 into a Sink."""

    def __init__(self, sink: Sink | _StreamSink | IO[Any]) -> None:
        # a plain file object (a library user's io.StringIO, say) is written through as it is
        self.sink = sink if isinstance(sink, (Sink, _StreamSink)) else _StreamSink(sink)

    def write(self, text: str) -> int:
        self.sink.write(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.sink.isatty()

    def fileno(self) -> int:
        return self.sink.fd
