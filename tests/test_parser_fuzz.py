"""Differential fuzz of fanin.parser against an independent reference of the standard.

The reference below is written from the WHATWG HTML standard ("Parsing an event stream",
"Interpreting an event stream") one character at a time, with no shortcuts, and shares no
code with fanin.parser or the other parser tests. Random streams are built from a grammar
of the lines that trip parsers up (multi-line data, ids with and without NUL, empty ids,
event types, retry values, comments, fields without a colon, unknown fields, BOMs, CR /
LF / CRLF mixes, invalid UTF-8) and biased towards the shapes the parser's fast paths
look for, then cut into random chunks. Every result (events with type, data, id and
own_id; last event id; retry) must equal the reference's, both through feed() and
feed_tuples().

A seeded loop runs for a few seconds in `make test`; FANIN_FUZZ_SECONDS=600 runs it for
ten minutes (and FANIN_FUZZ_SEED picks another seed):

    FANIN_FUZZ_SECONDS=600 .venv/bin/python -m pytest tests/test_parser_fuzz.py -q
"""

from __future__ import annotations

import codecs
import os
import random
import time

import pytest

from fanin.parser import SSEParser

SECONDS = float(os.environ.get("FANIN_FUZZ_SECONDS", "3"))
SEED = int(os.environ.get("FANIN_FUZZ_SEED", "20261129"))
RETRY_CAP_MS = 86_400_000


# ----------------------------------------------------------------------- reference


class Reference:
    """The standard's algorithm, fed one decoded character at a time."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.first_char = True
        self.after_cr = False
        self.line: list[str] = []
        self.data = ""
        self.event_type = ""
        self.id_buffer = ""
        self.own_id = False
        self.last_event_id = ""
        self.retry = None
        self.events: list[tuple[str, str, str, bool]] = []

    def feed_all(self, stream: bytes) -> None:
        for char in self.decoder.decode(stream, final=False):  # EOF: an incomplete tail is dropped
            self.char(char)

    def char(self, c: str) -> None:
        if self.first_char:
            self.first_char = False
            if c == "\ufeff":
                return
        if self.after_cr:
            self.after_cr = False
            if c == "\n":
                return
        if c == "\r":
            self.after_cr = True
            self.end_line()
        elif c == "\n":
            self.end_line()
        else:
            self.line.append(c)

    def end_line(self) -> None:
        line = "".join(self.line)
        self.line = []
        if line == "":
            self.dispatch()
            return
        if line[0] == ":":
            return
        position = line.find(":")
        if position >= 0:
            name = line[:position]
            value = line[position + 1:]
            if value[:1] == " ":
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            self.event_type = value
        elif name == "data":
            self.data = self.data + value + "\n"
        elif name == "id":
            if "\x00" not in value:
                self.id_buffer = value
                self.own_id = True
        elif name == "retry":
            if value and all("0" <= c <= "9" for c in value):
                number = 0
                for c in value:
                    number = min(number * 10 + ord(c) - 48, 10 * RETRY_CAP_MS)
                self.retry = min(number, RETRY_CAP_MS)

    def dispatch(self) -> None:
        self.last_event_id = self.id_buffer
        if self.data == "":
            self.event_type = ""
            self.own_id = False
            return
        data = self.data[:-1] if self.data.endswith("\n") else self.data
        self.events.append((self.event_type or "message", data, self.last_event_id, self.own_id))
        self.data = ""
        self.event_type = ""
        self.own_id = False


def reference(stream: bytes):
    ref = Reference()
    ref.feed_all(stream)
    return ref.events, ref.last_event_id, ref.retry


# ------------------------------------------------------------------------- grammar

VALUE_PIECES = ["a", "b", "7", "42", " ", "  ", "\t", ":", "data: x", "id: 9", "\x00", "\u00e9", "\u20ac",
                "\U0001f600", "\ufeff", "\u2028", "\x85", "\x0b", "x" * 40]
RAW_BYTES = [b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf"]
TERMINATORS = [b"\n"] * 6 + [b"\r\n", b"\r"]


def value(rng: random.Random) -> str:
    return "".join(rng.choice(VALUE_PIECES) for _ in range(rng.choice((0, 1, 1, 1, 2, 3))))


def line(rng: random.Random) -> bytes:
    kind = rng.randrange(20)
    if kind < 6:
        return b"data: " + value(rng).encode()
    if kind < 9:
        return b"id: " + rng.choice(["1", "2", "17", "", "a b", "x\x00y", value(rng)]).encode()
    if kind == 9:
        return b"event: " + rng.choice(["", "message", "tick", value(rng)]).encode()
    if kind == 10:
        return b"retry: " + rng.choice(["1000", "02000", "0", "1000x", "-1", "", " 5", "99999999999", "\uff11"]).encode()
    if kind == 11:
        return b":" + value(rng).encode()  # comment
    if kind == 12:
        return rng.choice([b"data", b"id", b"event", b"retry", b"foo", b"Data", b"data ", b"\xef\xbb\xbfdata"])
    if kind == 13:
        return rng.choice([b"data:", b"id:", b"data:  two", b"id:\t3", b"foo: bar", b"DATA: up"])
    if kind == 14:
        return b"data: " + rng.choice(RAW_BYTES) + value(rng).encode()
    return b""  # blank line: dispatch


def block(rng: random.Random) -> bytes:
    """Mostly well-formed events in the shapes fast paths look for, with tricky lines mixed in."""
    shape = rng.randrange(10)
    if shape < 3:
        lines = [b"data: " + value(rng).encode()]
    elif shape < 6:
        lines = [b"id: " + str(rng.randrange(100)).encode(), b"data: " + value(rng).encode()]
    elif shape == 6:
        lines = [b"id: " + str(rng.randrange(100)).encode()] + [b"data: " + value(rng).encode()
                                                              for _ in range(rng.randrange(0, 4))]
    else:
        lines = [line(rng) for _ in range(rng.randrange(1, 6))]
    if rng.random() < 0.3:
        lines.insert(rng.randrange(len(lines) + 1), line(rng))
    terminator = rng.choice(TERMINATORS)
    out = b"".join(item + (terminator if rng.random() < 0.9 else rng.choice(TERMINATORS)) for item in lines)
    return out + (terminator if rng.random() < 0.95 else b"")


def stream(rng: random.Random) -> bytes:
    head = rng.choice([b"", b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xef\xbb"])
    body = b"".join(block(rng) for _ in range(rng.randrange(1, 12)))
    if rng.random() < 0.3:
        body += line(rng)  # unterminated tail
    return head + body


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    mode = rng.randrange(4)
    if mode == 0 or len(data) < 2:
        return [data]
    if mode == 1:
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 8))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


# --------------------------------------------------------------------------- checks


def run_parser(pieces: list[bytes], tuples: bool):
    parser = SSEParser()
    events = []
    for piece in pieces:
        if tuples:
            events += parser.feed_tuples(piece)
        else:
            events += [(m.type, m.data, m.id, m.own_id) for m in parser.feed(piece)]
    return list(events), parser.last_event_id, parser.retry_ms


def check(data: bytes, pieces: list[bytes]) -> None:
    want = reference(data)
    for tuples in (True, False):
        got = run_parser(pieces, tuples)
        assert got == want, f"stream {data!r} cut as {pieces!r}"


def test_issue_example_in_one_write_and_byte_by_byte():
    data = b"id: 1\ndata: a\ndata: b\n\nid: 2\n\n"
    assert reference(data) == ([("message", "a\nb", "1", True)], "2", None)
    check(data, [data])
    check(data, [data[i:i + 1] for i in range(len(data))])


def test_reference_follows_the_standard_on_known_cases():
    """The reference itself is checked on cases whose answer the standard spells out."""
    assert reference(b"data\ndata\n\n") == ([("message", "\n", "", False)], "", None)
    assert reference(b"\xef\xbb\xbfdata: a\r\n\r\xef\xbb\xbfdata: b\n\n") == ([("message", "a", "", False)], "", None)
    assert reference(b"id: 7\n\ndata: x\n") == ([], "7", None)
    assert reference(b"id: 1\x00\ndata:  a\n\n") == ([("message", " a", "", False)], "", None)
    assert reference(b"retry: 02000\nretry: 1e3\n") == ([], "", 2000)
    assert reference(b"event: t\ndata\n\ndata: \xff\n\n") == (
        [("t", "", "", False), ("message", "\ufffd", "", False)], "", None)


@pytest.mark.timeout(SECONDS + 120)  # long runs outlast the suite's default timeout
def test_differential_fuzz_against_the_reference():
    rng = random.Random(SEED)
    deadline = time.monotonic() + SECONDS
    cases = 0
    while time.monotonic() < deadline or cases < 500:
        data = stream(rng)
        check(data, chunks(rng, data))
        cases += 1
    print(f"parser fuzz: {cases} streams, seed {SEED}")
