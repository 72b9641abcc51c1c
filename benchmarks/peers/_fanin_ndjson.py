"""The output half every fan-in peer shares: one NDJSON stream, fanin's event shape
(event_number across all sources, source index, url), orjson into a buffered stdout."""

from __future__ import annotations

import sys
import threading

import orjson
from _ndjson import WallStamp

_DUMPS = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class FanInWriter:
    def __init__(self) -> None:
        self.count = 0
        self.out = sys.stdout.buffer
        self.lock = threading.Lock()  # the thread-per-stream peer writes from many threads
        self._stamp = WallStamp()

    def write(self, source: int, url: str, event_type: str | None, data: str, event_id: str | None) -> None:
        self.count += 1
        self.out.write(_DUMPS({
            "type": "event", "event_number": self.count, "source": source, "url": url,
            "event_type": event_type or "message", "data": data, "event_id": event_id or "",
            "timestamp": self._stamp(),
        }, option=_NEWLINE))

    def close(self) -> None:
        self.out.flush()


def read_urls() -> tuple[list[str], int]:
    """argv: a file with one URL a line, and the events each stream sends."""
    with open(sys.argv[1]) as f:
        urls = [line.strip() for line in f if line.strip()]
    return urls, int(sys.argv[2])
