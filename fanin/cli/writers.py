"""How `fanin stream` and `fanin demo` print records: ndjson (machine), text (data only),
pretty (a coloured live view with a summary table, via rich).

All writers flush once per batch (one network read), so output is live without paying a
system call per event."""

from __future__ import annotations

import sys
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


def _pct(raw: bytes) -> bytes:
    return raw.replace(b"%", b"%%")


class NdjsonWriter:
    """stdout holds only JSON lines: events, errors as they happen, the summary last.

    Hot path: the fields a batch shares (source, url, timestamp, and usually the event
    type) are encoded once into a %-template, so each event costs one orjson call per
    string it owns. The bytes equal orjson.dumps(event.to_dict()) (tests check that)."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout.buffer
        self._templates: dict[tuple, bytes] = {}

    def _template(self, batch: Batch, event_type: str) -> bytes:
        key = (batch.source, batch.wall_ns, event_type, batch.late)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) > 256:
                self._templates.clear()
            template = (
                b'{"type":"event","event_number":%d,"source":' + str(batch.source).encode()
                + b',"url":' + _pct(orjson.dumps(batch.url))
                + b',"event_type":' + _pct(orjson.dumps(event_type))
                + b',"data":%s,"event_id":%s,"timestamp":"' + format_wall_ns(batch.wall_ns).encode() + b'"'
                + (b',"late":true' if batch.late else b"") + b"}\n"
            )
            self._templates[key] = template
        return template

    def encode(self, batch: Batch) -> bytes:
        json_str = orjson.dumps
        fmt = self._template(batch, "message")
        template = self._template
        return b"".join([
            (fmt if t == "message" else template(batch, t)) % (n, json_str(d), json_str(i))
            for n, (t, d, i, _) in enumerate(batch.messages, batch.first_number)
        ])

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
