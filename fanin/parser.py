"""Sans-IO Server-Sent Events parser: bytes in, events out (WHATWG HTML, "Parsing an event
stream" and "Interpreting an event stream").

How it stays exact and fast:
- Line ends are found on the raw bytes (CR/LF normalised per read, bytes.rfind/split,
  never str.splitlines). CR and LF are ASCII and can never sit inside a multi-byte UTF-8
  sequence, so decoding all complete lines of a read at once, with errors="replace",
  gives exactly what decoding the whole stream would. Only the unterminated last line
  stays bytes (it may stop mid-character) until its end arrives.
- One decode per read, then str methods, which are several times cheaper per call than
  their bytes counterparts in CPython.
- Fast paths: most streams are runs of `data: ...\n\n` or `id: N\ndata: ...\n\n`. A
  fast path proves the shape of every line of the run before it takes it (which lines
  are blank, which start with `data: ` or `id: `), then one split per field yields
  every event, with no per-line loop. Anything else takes the per-line loop, and
  tests/test_parser_fuzz.py checks both against a reference of the standard.
- Limits: a line (bytes, checked on the pending tail after each read without rescanning
  it) or one event's data (decoded characters, i.e. bytes for ASCII) longer than
  max_line_size raises EventTooLargeError, so memory stays bounded.
- Output stays bounded by input. Every event carries the last event id, so one long id
  followed by many tiny events would make each of them repeat it: an `id:` (or `event:`)
  value over max_id_size (max_type_size) bytes of UTF-8 fails the source, and the JSON
  bytes of the ids events inherit (rather than carry) may not pass ID_ECHO_FACTOR times
  what those events carried themselves (plus ID_ECHO_ALLOWANCE). That credit is counted
  per event from its fields, never per read, so where a hostile stream fails does not
  depend on its chunking either. The source fails rather than cut the id: the id is what
  a reconnect sends back as Last-Event-ID and what --dedup keys on, and a cut id would
  name another place in the stream.
"""

from __future__ import annotations

from itertools import repeat

import orjson

from .budget import ByteBudget
from .errors import EventTooLargeError

_Msg = tuple[str, str, str, bool]  # (type, data, id, own_id): one event as feed_tuples() returns it

__all__ = [
    "DEFAULT_MAX_ID_SIZE",
    "DEFAULT_MAX_LINE_SIZE",
    "DEFAULT_MAX_TYPE_SIZE",
    "ID_ECHO_ALLOWANCE",
    "ID_ECHO_FACTOR",
    "MAX_RETRY_MS",
    "EventTooLargeError",
    "SSEMessage",
    "SSEParser",
]

DEFAULT_MAX_LINE_SIZE = 16 * 1024 * 1024
# Ids are counters, UUIDs, stream offsets, cursors: tens of bytes. Well over any of them,
# and small enough that a server's id costs every record at most this much.
DEFAULT_MAX_ID_SIZE = 1024
DEFAULT_MAX_TYPE_SIZE = 1024  # event types are names (`message`, `message_end`)
# Inherited ids (JSON-escaped bytes) may reach this many times the bytes the inheriting
# events carried, plus the allowance: an honest stream repeats a short id on events
# larger than it, never near this.
ID_ECHO_FACTOR = 8
ID_ECHO_ALLOWANCE = 64 * 1024
# What an inheriting event is credited besides its data values: `data` + LF of its first
# data line and the blank line (6 bytes, the smallest event there is, minus the +1 per data
# line that _data_size already counts). An id costing at most FACTOR x 6 never needs a check.
_EVENT_FRAMING = 5
_ALWAYS_CARRIED = ID_ECHO_FACTOR * (_EVENT_FRAMING + 1)
MAX_RETRY_MS = 86_400_000  # 24 h: larger retry: values are clamped (timedelta overflows elsewhere)

_BOM = b"\xef\xbb\xbf"
# An event's data lines are joined in groups of this many as they arrive: a list of
# short strings costs ~60 bytes per line whatever the line holds, a group costs one.
_DATA_GROUP = 256
_LINE_COST = 64  # what one pending data line costs besides its characters (str + list slot)


def _decode(raw: bytes) -> str:
    """UTF-8 with U+FFFD per maximal invalid subpart; strict first because it is twice as fast."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def _line_too_long(limit: int) -> str:
    return f"SSE line longer than the limit of {limit} bytes (max_line_size)"


def _over(value: str, limit: int) -> bool:
    """Whether `value` takes more than `limit` bytes of UTF-8 (at most 4 per character)."""
    n = len(value)
    return n > limit or (4 * n > limit and len(value.encode("utf-8")) > limit)


def _escaped_size(value: str) -> int:
    """Bytes `value` takes inside a JSON string (what each record that repeats it pays)."""
    try:
        return len(orjson.dumps(value)) - 2
    except orjson.JSONEncodeError:  # a lone surrogate (a --last-event-id from undecodable argv)
        return 6 * len(value)


class SSEMessage:
    """One dispatched event. `id` is the last event id at dispatch ("" if none yet);
    `own_id` says whether this very block carried a valid `id:` line (for de-duplication)."""

    __slots__ = ("type", "data", "id", "own_id")

    def __init__(self, type: str = "message", data: str = "", id: str = "", own_id: bool = False) -> None:
        self.type = type
        self.data = data
        self.id = id
        self.own_id = own_id

    def __repr__(self) -> str:
        return f"SSEMessage(type={self.type!r}, data={self.data!r}, id={self.id!r}, own_id={self.own_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEMessage):
            return NotImplemented
        return (
            self.type == other.type
            and self.data == other.data
            and self.id == other.id
            and self.own_id == other.own_id
        )

    __hash__ = None  # type: ignore[assignment]  # mutable value object


class SSEParser:
    """Incremental parser for one logical event source.

    Feed it each network read; it returns the events those bytes completed. Results do
    not depend on how the stream is cut into chunks. Call new_connection() when a new
    HTTP response starts: the BOM may be stripped again and a half-received line or
    event is dropped, while last_event_id and retry_ms carry over (they are what the
    reconnect needs).
    """

    # One parser per stream, thousands of streams: slots keep each one small.
    __slots__ = ("max_line_size", "max_id_size", "max_type_size", "budget", "_charged", "last_event_id",
                 "retry_ms", "_at_start", "_head", "_tail", "_swallow_lf", "_data", "_groups", "_data_size",
                 "_type", "_id_buf", "_block_has_id", "_credit", "_echoed", "_echo_id", "_echo_size")

    def __init__(self, *, last_event_id: str = "", max_line_size: int = DEFAULT_MAX_LINE_SIZE,
                 budget: ByteBudget | None = None, max_id_size: int = DEFAULT_MAX_ID_SIZE,
                 max_type_size: int = DEFAULT_MAX_TYPE_SIZE) -> None:
        if max_line_size < 1:
            raise ValueError("max_line_size must be at least 1 byte")
        if max_id_size < 1 or max_type_size < 1:
            raise ValueError("max_id_size and max_type_size must be at least 1 byte")
        self.max_line_size = max_line_size
        self.max_id_size = max_id_size
        self.max_type_size = max_type_size
        self._credit = 0  # bytes the inheriting events carried themselves, over every connection
        self._echoed = 0  # JSON bytes of the ids they inherited
        self._echo_id = ""  # the id _echo_size was measured for
        self._echo_size = 0
        self.budget = budget  # shared bound on what many parsers hold (fanin.budget)
        self._charged = 0  # bytes this parser holds on the budget
        self.last_event_id: str = last_event_id  # committed at dispatch only
        self.retry_ms: int | None = None  # latest valid retry:, applied as soon as its line ends
        self.new_connection()

    def new_connection(self) -> None:
        """Start a new response body: forget partial input, keep last_event_id and retry_ms."""
        self._at_start = True  # BOM not decided yet
        self._head = b""  # up to 2 bytes that may still turn out to be a BOM
        # The unterminated line (never holding CR or LF). A bytearray grows in place, so
        # a long line arriving in many small reads costs its length, not a list of pieces.
        self._tail = bytearray()
        self._swallow_lf = False  # the previous chunk ended with CR: drop an LF that opens the next
        self._reset_event()
        if self._charged:
            self._charge(0)

    def _reset_event(self) -> None:
        self._data: list[str] = []  # data values of the event being built (< _DATA_GROUP)
        self._groups: list[str] = []  # earlier data values, joined _DATA_GROUP at a time
        self._data_size = 0  # characters the joined data would take, +1
        self._type = ""
        self._id_buf = self.last_event_id  # an uncommitted id never outlives its block
        self._block_has_id = False

    def has_partial(self) -> bool:
        """Whether the body so far ends inside a line or an event (fields read, no blank
        line yet). At the end of a body without framing, that is evidence of a cut."""
        return bool(self._tail or self._head or self._data or self._groups or self._type or self._block_has_id)

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Consume one read's bytes; return the events it completed, in order.

        See feed_tuples() for the exceptions; this wraps its tuples as SSEMessage."""
        try:
            return [SSEMessage(*t) for t in self.feed_tuples(chunk)]
        except EventTooLargeError as exc:
            exc.events = [SSEMessage(*t) for t in exc.events]
            raise

    def feed_tuples(self, chunk: bytes) -> list[tuple[str, str, str, bool]]:
        """Consume one read's bytes; return the events it completed as plain
        (type, data, id, own_id) tuples, the engine's hot path: a tuple costs a fraction
        of an object, and most consumers (NDJSON, the Dify tools) never need one.

        Raises EventTooLargeError (with the events completed before it in `.events`)
        when a line or an event's data exceeds max_line_size; the pending event is then
        dropped, and the caller should treat the connection as failed.
        """
        # Hot path: one call per network read, so it is written inline and uses int
        # arguments (`13 in chunk`, rfind(10)), far cheaper than their bytes forms.
        out: list[_Msg] = []
        try:
            if type(chunk) is not bytes:
                chunk = bytes(chunk)  # bytearray / memoryview from some transports
            if self._at_start:
                head = self._head + chunk if self._head else chunk
                if len(head) < 3 and _BOM.startswith(head):
                    self._head = head  # could still be a BOM split across reads
                    return out
                self._at_start = False
                self._head = b""
                chunk = head[3:] if head.startswith(_BOM) else head
            if not chunk:
                return out
            if self._swallow_lf:
                self._swallow_lf = False
                if chunk[0] == 10:
                    chunk = chunk[1:]
                    if not chunk:
                        return out
            if 13 in chunk:
                # A CR ends its line at once; remember it so an LF opening the next read
                # is not taken for a blank line. The tail never holds a CR, so this is safe.
                self._swallow_lf = chunk[-1] == 13
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

            end = chunk.rfind(10) + 1  # buf[:end] will be the complete lines
            tail = self._tail
            if not end:  # still inside one line: look at this read only, never rescan the tail
                tail += chunk
                if len(tail) > self.max_line_size:
                    raise EventTooLargeError(_line_too_long(self.max_line_size))
            else:
                if tail:
                    end += len(tail)
                    buf = b"".join((tail, chunk))
                    self._tail = tail = bytearray()
                else:
                    buf = chunk
                if len(buf) > self.max_line_size:
                    self._check_line_sizes(buf, out)
                if end < len(buf):
                    # The rest may stop inside a multi-byte character: it stays bytes until
                    # its line is complete.
                    self._tail = bytearray(buf[end:])
                    buf = buf[:end]
                self._process_text(_decode(buf), out)
            if self.budget is not None:
                self._charge(len(self._tail) + self._data_size + _LINE_COST * len(self._data))
        except EventTooLargeError as exc:
            exc.events = out
            self._tail = bytearray()
            self._reset_event()
            if self._charged:
                self._charge(0)
            # Without the inner frames: their locals hold the oversized event, and a
            # caller (a retry loop holding the last failure, say) may keep the exception a long time.
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, re-raised bare)
        return out

    def _charge(self, held: int) -> None:
        """Hold `held` bytes on the shared budget (the pending line and event)."""
        budget = self.budget
        if budget is None or held == self._charged:
            return
        if not budget.adjust(held - self._charged):
            raise EventTooLargeError(
                f"SSE data buffered by all streams of this process over its limit of {budget.describe()}"
                f" (this stream held {held} bytes of an unfinished line or event)"
            )
        self._charged = held

    def _process_text(self, text: str, out: list[_Msg]) -> None:
        """Handle complete lines: `text` is non-empty and ends with LF."""
        start = 0
        if self._data or self._groups or self._type or self._block_has_id:
            # An event is half built: finish it line by line up to its blank line.
            blank = text.find("\n\n") + 1
            if not blank:
                self._process_lines(text[:-1].split("\n"), out)
                return
            self._process_lines(text[:blank].split("\n"), out)
            start = blank + 1
        # Fast path: a run of events that are each one `data: ` line. The proof is per
        # line: the run starts with `data: `, and every LF in it belongs to a
        # "\n\ndata: " separator (the count of separators, which cannot overlap, is half
        # the count of LFs), so its lines go data, blank, data, blank... and one split
        # yields every event's data. Every event of the run inherits the last id, so the run
        # is charged to the bound on repeated ids; when it may pass it, the per-line loop
        # finds the event that does.
        if text.startswith("data: ", start):
            last_sep = text.rfind("\n\n", start)
            if last_sep > start:
                run = text[start + 6 : last_sep]
                lid = self.last_event_id
                if "\n" not in run:
                    if not lid or self._echo_run(lid, 1, len(run)):
                        out.append(("message", run, lid, False))
                        start = last_sep + 2
                else:
                    seps = run.count("\n\ndata: ")
                    # n events of data X each carry len(X) + 1 + framing: the run holds 8
                    # characters of separator between two of them
                    if 2 * seps == run.count("\n") and (
                            not lid or self._echo_run(lid, seps + 1, len(run) - 8 * seps)):
                        out += zip(repeat("message"), run.split("\n\ndata: "), repeat(lid), repeat(False))
                        start = last_sep + 2
        elif text.startswith("id: ", start):
            start = self._id_data_run(text, start, out)
        if start < len(text):
            self._process_lines(text[start:-1].split("\n") if start else text[:-1].split("\n"), out)

    def _id_data_run(self, text: str, start: int, out: list[_Msg]) -> int:
        """Fast path for a run of `id: N` + `data: ...` events (the other common shape).

        The shape is proven line by line: the run's lines go id, data, blank, id, data,
        blank... Every third line is blank (their join is empty), and in the id lines
        (joined by LF) every LF is followed by `id: `: as the lines hold no LF, counting
        `\nid: ` against the number of lines checks each line's start; likewise for the
        data lines. Returns where the general loop must continue (unchanged when the run
        does not have this shape)."""
        last_sep = text.rfind("\n\n", start)
        if last_sep <= start:
            return start
        lines = text[start:last_sep].split("\n")
        n = len(lines)
        if n % 3 != 2 or "".join(lines[2::3]):
            return start
        blocks = (n + 1) // 3
        ids = "\n".join(lines[0::3])
        datas = "\n".join(lines[1::3])
        if (
            not ids.startswith("id: ")
            or ids.count("\nid: ") != blocks - 1
            or "\x00" in ids
            or not datas.startswith("data: ")
            or datas.count("\ndata: ") != blocks - 1
        ):
            return start
        id_values = ids[4:].split("\nid: ")
        cap = self.max_id_size
        if 4 * len(ids) > cap and 4 * max(map(len, id_values)) > cap and any(_over(v, cap) for v in id_values):
            return start  # the per-line loop raises at the oversized id, after the events before it
        out += zip(repeat("message"), datas[6:].split("\ndata: "), id_values, repeat(True))
        self.last_event_id = self._id_buf = id_values[-1]
        return last_sep + 2

    def _measure(self, event_id: str) -> int:
        if event_id != self._echo_id:
            self._echo_id = event_id
            self._echo_size = _escaped_size(event_id)
        return self._echo_size

    def _echo(self, event_id: str, carried: int) -> bool:
        """Charge one event that inherits `event_id` (rather than carry an id of its own) and
        carried `carried` bytes of its own fields; False when that passes the bound."""
        credit = self._credit + carried + _EVENT_FRAMING
        echoed = self._echoed + self._measure(event_id)
        if echoed > ID_ECHO_FACTOR * credit + ID_ECHO_ALLOWANCE:
            return False  # nothing charged: the bound keeps holding for what was delivered
        self._credit, self._echoed = credit, echoed
        return True

    def _echo_run(self, event_id: str, count: int, data_chars: int) -> bool:
        """Charge a fast-path run of `count` one-line events inheriting `event_id`, whose data
        takes `data_chars` characters in all, exactly as _echo would one by one; False,
        charging nothing, when that is not proven to stay within the bound at every event
        (the per-line loop then finds the event that passes it)."""
        size = self._measure(event_id)
        echoed = self._echoed + count * size
        if size > _ALWAYS_CARRIED and echoed > ID_ECHO_FACTOR * self._credit + ID_ECHO_ALLOWANCE:
            return False  # even without this run's credit it may not fit: decide event by event
        self._credit += data_chars + count * (1 + _EVENT_FRAMING)
        self._echoed = echoed
        return True

    def _echo_refused(self) -> EventTooLargeError:
        return EventTooLargeError(
            f"SSE event id of {self._echo_size} bytes repeated on events too small to carry it: the output would"
            f" pass {ID_ECHO_FACTOR} times what they carry (a broken or hostile server)")

    def _check_line_sizes(self, buf: bytes, out: list[_Msg]) -> None:
        """Slow path, only when this read could hold an oversized line: process the lines
        before the first oversized one (so results do not depend on chunking), then raise."""
        limit = self.max_line_size
        lines = buf.split(b"\n")
        for index, line in enumerate(lines):
            if len(line) > limit:
                self._tail = bytearray()
                self._process_lines(_decode(b"\n".join(lines[:index])).split("\n") if index else [], out)
                raise EventTooLargeError(_line_too_long(limit))

    # ------------------------------------------------------------- per line

    def _process_lines(self, lines: list[str], out: list[_Msg]) -> None:
        """The general per-line algorithm (spec sections 2 and 3). The parser state lives
        in locals inside the loop and is written back once: that roughly halves its cost."""
        data = self._data
        groups = self._groups
        data_size = self._data_size
        type_ = self._type
        id_buf = self._id_buf
        has_id = self._block_has_id
        limit = self.max_line_size
        max_id, max_type = self.max_id_size, self.max_type_size
        append = out.append
        try:
            for line in lines:
                if not line:  # blank line: dispatch
                    self.last_event_id = id_buf
                    if data_size:
                        if id_buf and not has_id and not self._echo(id_buf, data_size + len(type_)):
                            raise self._echo_refused()
                        if groups:
                            groups += data
                            data = groups
                            groups = []
                        append((type_ or "message", "\n".join(data), id_buf, has_id))
                        data = []
                        data_size = 0
                    type_ = ""
                    has_id = False
                    continue
                name, colon, value = line.partition(":")
                if colon:
                    if not name:
                        continue  # comment; never ends an event
                    if value and value[0] == " ":
                        value = value[1:]
                if name == "data":
                    data.append(value)
                    data_size += len(value) + 1
                    if data_size > limit + 1:
                        raise EventTooLargeError(f"SSE event data longer than the limit of {limit} bytes (max_line_size)")
                    if len(data) == _DATA_GROUP:
                        groups.append("\n".join(data))
                        data = []
                elif name == "event":
                    if 4 * len(value) > max_type and _over(value, max_type):
                        raise EventTooLargeError(
                            f"SSE event type longer than the limit of {max_type} bytes (max_type_size)")
                    type_ = value
                elif name == "id":
                    if "\x00" not in value:
                        if 4 * len(value) > max_id and _over(value, max_id):
                            raise EventTooLargeError(
                                f"SSE event id longer than the limit of {max_id} bytes (max_id_size)")
                        id_buf = value
                        has_id = True
                elif name == "retry":
                    if value.isascii() and value.isdigit():  # 0-9 only; False when empty
                        digits = value.lstrip("0")
                        # 9+ significant digits always exceed the cap; skipping int() also
                        # avoids Python's limit on converting very long digit strings.
                        self.retry_ms = MAX_RETRY_MS if len(digits) > 8 else min(int(digits or "0"), MAX_RETRY_MS)
        finally:
            self._data = data
            self._groups = groups
            self._data_size = data_size
            self._type = type_
            self._id_buf = id_buf
            self._block_has_id = has_id
