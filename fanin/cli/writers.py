"""How `fanin stream` and `fanin demo` print records: ndjson (machine), text (data only),
pretty (a coloured live view with a summary table, via rich).

All writers flush once per batch (one network read), so output is live without paying a
system call per event."""

from __future__ import annotations

import sys
from itertools import chain, repeat
from typing import Protocol

import orjson

from fanin.events import Batch, SourceError, Summary, dumps, format_wall_ns
from fanin.stream import StreamObserver

__all__ = ["make_writer", "Writer"]

_SOURCE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


class Writer(Protocol):
    def batch(self, items: list) -> None: ...
    def summary(self, summary: Summary) -> None: ...
    def close(self) -> None: ...


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _error_line(error: SourceError) -> str:
    return f"fanin: source {error.source} failed: {error.error}"


_LINE_HEAD = b'{"type":"event","event_number":'
_ID_KEY = b'","event_id":"'


def _json_strings(values: tuple[str, ...]) -> list[bytes]:
    """Each string's JSON form without its quotes, from one orjson call for them all.

    The array is cut at each `","`. A match is an element boundary unless its first quote
    is an escaped one (a string ending in `"` or `\\`, or in `",` then its closing quote),
    and then the text holds `\\","`; only then is each string encoded on its own."""
    text = orjson.dumps(values)
    if b'\\","' not in text:
        return text[2:-2].split(b'","')
    return [orjson.dumps(value)[1:-1] for value in values]


class NdjsonWriter:
    """stdout holds only JSON lines: events, errors as they happen, the summary last.

    Hot path, per batch (one network read), with no Python code run per event: orjson
    encodes all the batch's data strings in one call, its ids in another and its event
    numbers in a third, and each JSON array is cut back into its elements (see
    _json_strings for why the cut is exact). One bytes.join then lays the elements between
    the constant pieces of the line (the fields a batch shares are encoded once). The
    bytes equal orjson.dumps(event.to_dict()) (tests check that)."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout.buffer
        self._middles: dict[tuple, bytes] = {}

    def _middle(self, batch: Batch, event_type: str) -> bytes:
        """The line from after the event number up to the data's opening quote."""
        key = (batch.source, batch.url, event_type)
        middle = self._middles.get(key)
        if middle is None:
            if len(self._middles) > 256:
                self._middles.clear()
            middle = (
                b',"source":' + str(batch.source).encode() + b',"url":' + orjson.dumps(batch.url)
                + b',"event_type":' + orjson.dumps(event_type) + b',"data":"'
            )
            self._middles[key] = middle
        return middle

    def encode(self, batch: Batch) -> bytes:
        types, datas, ids, _ = zip(*batch.messages)
        count = len(types)
        first = batch.first_number
        numbers = orjson.dumps(list(range(first, first + count)))[1:-1].split(b",")
        datas = _json_strings(datas)
        ids = repeat(orjson.dumps(ids[0])[1:-1]) if ids.count(ids[0]) == count else _json_strings(ids)
        if types.count(types[0]) == count:
            middles = repeat(self._middle(batch, types[0]))
        else:
            middles = [self._middle(batch, t) for t in types]
        tail = (b'","timestamp":"' + format_wall_ns(batch.wall_ns).encode() + b'"'
                + (b',"late":true}\n' if batch.late else b"}\n"))
        pieces = [_LINE_HEAD]
        pieces += chain.from_iterable(zip(numbers, middles, datas, repeat(_ID_KEY), ids, repeat(tail + _LINE_HEAD)))
        pieces[-1] = tail
        return b"".join(pieces)

    def batch(self, items: list) -> None:
        parts = []
        for item in items:
            if type(item) is Batch:
                parts.append(self.encode(item))
            else:
                parts.append(dumps(item))
                _stderr_line(_error_line(item))
        self.out.write(b"".join(parts))
        self.out.flush()

    def summary(self, summary: Summary) -> None:
        self.out.write(dumps(summary))
        self.out.flush()

    def close(self) -> None:
        pass


class TextWriter:
    """Each event's data on its own line (prefixed `[source]` when there are several
    sources); errors and the summary go to stderr so stdout is just the data."""

    def __init__(self, n_sources: int, out=None) -> None:
        self.out = out or sys.stdout
        self.prefixed = n_sources > 1

    def batch(self, items: list) -> None:
        lines = []
        for item in items:
            if type(item) is Batch:
                if self.prefixed:
                    lines += [f"[{item.source}] {m[1]}" for m in item.messages]
                else:
                    lines += [m[1] for m in item.messages]
            else:
                _stderr_line(_error_line(item))
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def summary(self, summary: Summary) -> None:
        _stderr_line(f"fanin: {summary.text}")

    def close(self) -> None:
        pass


class PrettyWriter(StreamObserver):
    """A readable, coloured live view for people, and a summary table at the end. It is
    also the run's observer, so people see a stream drop and resume as it happens."""

    def __init__(self, n_sources: int) -> None:
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)
        self.n_sources = n_sources
        self._last_failure: dict[int, str] = {}

    def batch(self, items: list) -> None:
        from rich.text import Text

        for item in [e for i in items for e in (i.events() if type(i) is Batch else [i])]:
            if type(item) is not SourceError:
                colour = _SOURCE_COLOURS[item.source % len(_SOURCE_COLOURS)]
                line = Text()
                line.append(format_wall_ns(item.wall_ns)[11:23], style="dim")
                line.append(f" #{item.event_number:<5}", style="dim")
                line.append(f" [{item.source}]", style=f"bold {colour}")
                if item.event_type != "message":
                    line.append(f" {item.event_type}", style=colour)
                if item.event_id:
                    line.append(f" id={item.event_id}", style="dim")
                if item.late:
                    line.append(" late", style="bold yellow")
                line.append("  ")
                line.append(item.data)
                self.console.print(line)
            else:
                self.console.print(Text(f"[{item.source}] failed: {item.error}", style="bold red"))

    def on_failure(self, source: int, kind: str, message: str) -> None:
        self._last_failure[source] = message

    def on_reconnect(self, source: int) -> None:
        from rich.text import Text

        reason = self._last_failure.pop(source, "stream ended")
        self.console.print(Text(f"[{source}] {reason}; reconnecting", style="yellow"))

    def summary(self, summary: Summary) -> None:
        from rich.table import Table

        table = Table(title=f"{summary.status}: {summary.total_events} events in {summary.connection_duration:.1f}s"
                      + (f" (stopped by {summary.stopped_by})" if summary.stopped_by else ""))
        for column in ("source", "url", "status", "events", "reconnects", "error"):
            table.add_column(column, overflow="fold")
        styles = {"completed": "green", "failed": "red", "stopped": "yellow"}
        for s in summary.sources:
            table.add_row(str(s.source), s.url, f"[{styles.get(s.status, 'white')}]{s.status}[/]", str(s.events),
                          str(s.reconnects), s.error or "")
        self.console.print(table)

    def close(self) -> None:
        pass


def make_writer(fmt: str, *, n_sources: int) -> Writer:
    if fmt == "ndjson":
        return NdjsonWriter()
    if fmt == "text":
        return TextWriter(n_sources)
    return PrettyWriter(n_sources)
