"""How `fanin stream` and `fanin demo` print records: ndjson (machine), text (data only),
pretty (a coloured live view with a summary table, via rich; plain lines when piped).

All writers write once per batch (one network read), so output is live without paying a
system call per event, and each write goes out whole (sink.py): the output ends on a whole
line however the run is stopped, and the summary counts exactly the events written.

With --extract PATH, text and pretty print the text at PATH in each event's JSON (events
with nothing there, such as `[DONE]` or a role-only delta, add nothing: as the Dify tool
does), joined as it arrives, a new line (prefixed `[N]` when there are several sources) when
the source changes; ndjson events gain an "extracted" field (null when nothing is there)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Protocol

import orjson

from fanin.errors import FaninError
from fanin.events import Batch, SourceError, Summary, dumps, format_wall_ns
from fanin.extract import text_at
from fanin.stream import StreamObserver

from .console import is_terminal, make_console, shorten_middle, shown_error, terminal_width, visible
from .sink import TextSink, stdout_sink

__all__ = ["make_writer", "Writer", "OutputError", "output_errors"]


class OutputError(FaninError):
    """The output cannot be written (a full disk, a closed descriptor): one line, exit 1."""


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """Turn a failed write into one OutputError line. A broken pipe (the reader went away,
    as with `| head`) is left as it is: the command stops quietly, like other Unix tools."""
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise OutputError("cannot write the output: standard output is closed")
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None

_SOURCE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


class Writer(Protocol):
    def batch(self, items: list) -> None: ...
    def summary(self, summary: Summary) -> None: ...
    def close(self) -> None: ...


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _error_line(error: SourceError) -> str:
    return f"fanin: source {error.source} failed: {shown_error(error.error)}"


def _pct(raw: bytes) -> bytes:
    return raw.replace(b"%", b"%%")


class NdjsonWriter:
    """stdout holds only JSON lines: events, errors as they happen, the summary last.

    Hot path: the fields a batch shares (source, url, timestamp, and usually the event
    type) are encoded once into a %-template, so each event costs one orjson call per
    string it owns. The bytes equal orjson.dumps(event.to_dict()) (tests check that)."""

    def __init__(self, out=None, *, extract: tuple[str, ...] | None = None) -> None:
        self.out = out or stdout_sink()
        self.extract = extract
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
                + b',"data":%s,"event_id":%s' + (b',"extracted":%s' if self.extract else b"")
                + b',"timestamp":"' + format_wall_ns(batch.wall_ns).encode() + b'"'
                + (b',"late":true' if batch.late else b"") + b"}\n"
            )
            self._templates[key] = template
        return template

    def encode(self, batch: Batch) -> bytes:
        json_str = orjson.dumps
        fmt = self._template(batch, "message")
        template = self._template
        if self.extract is not None:
            path = self.extract
            return b"".join([
                (fmt if t == "message" else template(batch, t)) % (n, json_str(d), json_str(i), json_str(text_at(d, path)))
                for n, (t, d, i, _) in enumerate(batch.messages, batch.first_number)
            ])
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
        if hasattr(self.out, "flush"):
            self.out.flush()

    def summary(self, summary: Summary) -> None:
        self.out.write(dumps(summary))
        if hasattr(self.out, "flush"):
            self.out.flush()

    def close(self) -> None:
        pass


class ExtractFlow:
    """The --extract text of a run as it arrives: one source's pieces joined, a new line
    (prefixed `[N] ` when there are several sources) whenever the source changes."""

    def __init__(self, path: tuple[str, ...], n_sources: int) -> None:
        self.path = path
        self.prefixed = n_sources > 1
        self.source: int | None = None  # the source whose text the open line holds
        self.open = False  # the last text written did not end with a newline

    def text(self, batch: Batch) -> str:
        parts = []
        for message in batch.messages:
            piece = text_at(message[1], self.path)
            if not piece:
                continue
            if self.source != batch.source and self.open:
                parts.append("\n")
                self.open = False
            if self.prefixed and not self.open:  # a line of its own: say whose
                parts.append(f"[{batch.source}] ")
            self.source = batch.source
            parts.append(piece)
            self.open = not piece.endswith("\n")
        return "".join(parts)

    def end_line(self) -> str:
        """What ends the open line (before a note, the summary, or the end)."""
        if not self.open:
            return ""
        self.open, self.source = False, None
        return "\n"


class TextWriter:
    """Each event's data on its own line (prefixed `[source]` when there are several
    sources); errors and the summary go to stderr so stdout is just the data. On a terminal
    control characters are written out (`visible`); into a pipe or file the data is exact."""

    def __init__(self, n_sources: int, out=None, *, extract: tuple[str, ...] | None = None) -> None:
        self.on_terminal = out is None and is_terminal(1)
        self.out = TextSink(out or stdout_sink())
        self.prefixed = n_sources > 1
        self.flow = ExtractFlow(extract, n_sources) if extract else None

    def batch(self, items: list) -> None:
        lines = []
        flow = self.flow
        for item in items:
            if type(item) is Batch:
                if flow is not None:
                    lines.append(flow.text(item))
                elif self.prefixed:
                    lines.append("".join([f"[{item.source}] {m[1]}\n" for m in item.messages]))
                else:
                    lines.append("".join([m[1] + "\n" for m in item.messages]))
            else:
                self._end_line(lines)
                _stderr_line(_error_line(item))
        self._write(lines)

    def _end_line(self, lines: list[str]) -> None:
        """Before a line on stderr, end the open --extract line (and write what came before)."""
        if self.flow is not None and self.flow.open:
            lines.append(self.flow.end_line())
            self._write(lines)
            lines.clear()

    def _write(self, lines: list[str]) -> None:
        text = "".join(lines)
        if text:
            self.out.write(visible(text) if self.on_terminal else text)

    def summary(self, summary: Summary) -> None:
        self._end_line([])
        _stderr_line(f"fanin: {summary.text}")

    def close(self) -> None:
        self._end_line([])


class PrettyWriter(StreamObserver):
    """A readable, coloured live view for people, and a summary at the end. It is also the
    run's observer, so people see a stream drop and resume as it happens.

    On a terminal, lines wrap at its width (never cut) and the summary is a table whose URLs
    are shortened in the middle to fit; piped, the same lines without colour and the summary
    as plain aligned lines, URLs whole, no padding.

    Attempts are shown as they are: a source that never connected is "retrying (attempt 2
    of 4)", and has 0 reconnects in the summary; a reconnect is a new attempt after the
    source had connected."""

    def __init__(self, n_sources: int, *, retries: int = 3, extract: tuple[str, ...] | None = None,
                 out=None) -> None:
        sink = out or stdout_sink()
        self.terminal = is_terminal(sink.fd) if hasattr(sink, "fd") and sink.fd >= 0 else False
        self.width = terminal_width(sink.fd) if self.terminal else None
        self.out = TextSink(sink)
        self.console = make_console(self.out, sink.fd if self.terminal else -1)
        self.n_sources = n_sources
        self.attempts = retries + 1
        self.flow = ExtractFlow(extract, n_sources) if extract else None
        self._last_failure: dict[int, str] = {}
        self._failures: dict[int, int] = {}   # consecutive failed attempts, as the engine counts them
        self._connected: set[int] = set()
        self._reconnects: dict[int, int] = {}
        self._held: list[str] | None = None  # piped: lines of the batch being written

    # ------------------------------------------------------------------ lines
    def _write(self, text: str) -> None:
        if self._held is not None:
            self._held.append(text)
        else:
            self.out.write(text)

    def _print(self, text) -> None:
        if self.flow is not None and self.flow.open:
            self._write(self.flow.end_line())
        if self.terminal:
            self.console.print(text)
        else:
            self._write(text.plain.rstrip() + "\n")

    def batch(self, items: list) -> None:
        from rich.text import Text

        if not self.terminal:  # piped: the batch's lines go out in one write
            self._held = []
        try:
            for item in items:
                if type(item) is Batch:
                    self._failures.pop(item.source, None)  # it delivered: the engine's count starts again
                    if self.flow is not None:
                        self._flow_text(item)
                        continue
                    for event in item.events():
                        self._event_line(event)
                else:
                    self._print(Text(f"[{item.source}] failed: {shown_error(item.error)}", style="bold red"))
        finally:
            held, self._held = self._held, None
            if held:
                self.out.write("".join(held))

    def _flow_text(self, batch: Batch) -> None:
        text = self.flow.text(batch)
        if not text:
            return
        if self.terminal:
            from rich.text import Text

            colour = _SOURCE_COLOURS[batch.source % len(_SOURCE_COLOURS)]
            self.console.print(Text(visible(text), style=colour if self.flow.prefixed else ""), end="",
                               soft_wrap=True)
        else:
            self._write(text)

    def _event_line(self, item) -> None:
        from rich.text import Text

        colour = _SOURCE_COLOURS[item.source % len(_SOURCE_COLOURS)]
        line = Text()
        line.append(format_wall_ns(item.wall_ns)[11:23], style="dim")
        line.append(f" #{item.event_number:<5}", style="dim")
        line.append(f" [{item.source}]", style=f"bold {colour}")
        if item.event_type != "message":
            line.append(f" {visible(item.event_type)}", style=colour)
        if item.event_id:
            line.append(f" id={visible(item.event_id)}", style="dim")
        if item.late:
            line.append(" late", style="bold yellow")
        line.append("  ")
        line.append(visible(item.data))  # piped too: pretty is for people
        self._print(line)

    # ------------------------------------------------------------------ observer
    def on_connect(self, source: int, connect_ns: int) -> None:
        self._connected.add(source)

    def on_failure(self, source: int, kind: str, message: str) -> None:
        self._last_failure[source] = shown_error(message)
        self._failures[source] = self._failures.get(source, 0) + 1

    def on_reconnect(self, source: int) -> None:
        from rich.text import Text

        reason = self._last_failure.pop(source, None)
        connected = source in self._connected
        if connected:
            self._reconnects[source] = self._reconnects.get(source, 0) + 1
        if reason is None:  # a clean end, reconnected by --reconnect always
            note = "stream ended; reconnecting"
        else:
            attempt = self._failures.get(source, 0) + 1
            verb = "reconnecting" if connected else "retrying"
            note = f"{reason}; {verb} (attempt {attempt} of {self.attempts})"
        self._print(Text(f"[{source}] {note}", style="yellow"))

    # ------------------------------------------------------------------ summary
    def summary(self, summary: Summary) -> None:
        if self.flow is not None and self.flow.open:
            self.out.write(self.flow.end_line())
        rows = [(str(s.source), s.status, str(s.events), str(self._reconnects.get(s.source, 0)), s.url)
                for s in summary.sources]
        title = summary.text
        if self.terminal:
            self._summary_table(title, rows)
        else:
            self._summary_lines(title, rows)
        for s in summary.sources:
            if s.error:
                from rich.text import Text

                self._print(Text(f"[{s.source}] {shown_error(s.error)}", style="red"))

    def _summary_table(self, title: str, rows: list[tuple[str, ...]]) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        styles = {"completed": "green", "failed": "red", "stopped": "yellow"}
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_COLUMNS[:4])]
        room = max(16, (self.width or 80) - sum(widths) - 2 * len(_COLUMNS) - 4)
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        for name in _COLUMNS:
            table.add_column(name, overflow="fold", no_wrap=name != "url",
                             justify="right" if name in ("events", "reconnects") else "left")
        for source, status, events, reconnects, url in rows:  # Text: a URL's [brackets] are not markup
            table.add_row(source, Text(status, style=styles.get(status, "white")), events, reconnects,
                          Text(shorten_middle(url, room)))
        self.console.print(table)

    def _summary_lines(self, title: str, rows: list[tuple[str, ...]]) -> None:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_COLUMNS[:4])]
        lines = [title]
        for row in [_COLUMNS, *rows]:
            cells = [row[i].ljust(widths[i]) if i < 2 else row[i].rjust(widths[i]) for i in range(4)]
            lines.append(("  ".join(cells) + "  " + row[4]).rstrip())
        self.out.write("\n".join(lines) + "\n")

    def close(self) -> None:
        if self.flow is not None and self.flow.open:
            self.out.write(self.flow.end_line())


_COLUMNS = ("source", "status", "events", "reconnects", "url")


def make_writer(fmt: str, *, n_sources: int, retries: int = 3, extract: tuple[str, ...] | None = None) -> Writer:
    if fmt == "ndjson":
        return NdjsonWriter(extract=extract)
    if fmt == "text":
        return TextWriter(n_sources, extract=extract)
    return PrettyWriter(n_sources, retries=retries, extract=extract)
