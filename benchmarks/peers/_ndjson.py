"""The output half every peer shares, so the benchmark compares SSE clients and not JSON
writers: fanin's NDJSON event shape, written with orjson into a buffered stdout, with the
wall-clock stamp formatted once per second (the same trick fanin uses)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

import orjson

_DUMPS = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE


class WallStamp:
    """Now as UTC ISO-8601 with microseconds and `Z`, the date part formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self) -> str:
        second, rest = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._prefix}{rest // 1000:06d}Z"


class NdjsonWriter:
    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.out = sys.stdout.buffer
        self._stamp = WallStamp()

    def write(self, event_type: str | None, data: str, event_id: str | None) -> None:
        self.count += 1
        self.out.write(
            _DUMPS(
                {
                    "type": "event",
                    "event_number": self.count,
                    "source": 0,
                    "url": self.url,
                    "event_type": event_type or "message",
                    "data": data,
                    "event_id": event_id or "",
                    "timestamp": self._stamp(),
                },
                option=_NEWLINE,
            )
        )

    def close(self) -> None:
        self.out.flush()


def args() -> tuple[str, int]:
    """URL and the number of events to stop after (0: read to the end of the stream)."""
    url = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    return url, limit
