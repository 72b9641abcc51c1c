"""Byte-level SSE parsing cases (WHATWG HTML "Parsing an event stream" and "Interpreting an event stream") as plain data.

Used by the parser unit tests and by the CLI end-to-end test, which serves each case
from a real server in one write and byte by byte: the expected results must not depend
on how the bytes are cut. No pytest here on purpose: `from tests.conformance_cases import
CASES` (or put tests/ on sys.path) and iterate.

Each case: name, input bytes, expected events as (type, data, id), and the parser state
once the whole input was fed: last_event_id and retry_ms (None = no valid retry: seen).
Streams start with no last event id and the default max_line_size.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    name: str
    input: bytes
    events: list[tuple[str, str, str]]
    last_event_id: str = ""
    retry_ms: int | None = None


def _m(data: str, id: str = "", type: str = "message") -> tuple[str, str, str]:
    return (type, data, id)


CASES: list[Case] = [
    # --- basics
    Case("simple", b"data: hello\n\n", [_m("hello")]),
    Case("two events", b"data: a\n\ndata: b\n\n", [_m("a"), _m("b")]),
    Case("multi-line data joined with LF", b"data: a\ndata: b\n\n", [_m("a\nb")]),
    Case("data then data gives one LF", b"data\ndata\n\n", [_m("\n")]),
    Case("data: alone gives empty string", b"data:\n\n", [_m("")]),
    Case("data without colon is an empty value", b"data\n\n", [_m("")]),
    Case("only one trailing LF removed", b"data: a\ndata:\n\n", [_m("a\n")]),
    Case("colon inside the value", b"data: a: b\n\ndata::x\n\n", [_m("a: b"), _m(":x")]),
    Case("NUL in data is data", b"data: a\x00b\n\n", [_m("a\x00b")]),
    # --- BOM
    Case("BOM at the start is stripped", b"\xef\xbb\xbfdata: a\n\n", [_m("a")]),
    Case(
        "second BOM is content (unknown field)",
        b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n",
        [_m("b")],
    ),
    Case(
        "BOM later in the stream is content",
        b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\xef\xbb\xbf\n\n",
        [_m("a"), _m("c\ufeff")],
    ),
    Case("truncated BOM is invalid UTF-8, not a BOM", b"\xef\xbbdata: a\n\ndata: b\n\n", [_m("b")]),
    # --- line terminators
    Case("CRLF", b"data: a\r\n\r\ndata: b\r\n\r\n", [_m("a"), _m("b")]),
    Case("CR only", b"data: a\r\rdata: b\r\r", [_m("a"), _m("b")]),
    Case("CR CR at EOF dispatches", b"data: x\r\r", [_m("x")]),
    Case(
        "mixed terminators",
        b"data: a\n\r\ndata: b\n\rdata: c\r\n\ndata: d\r\r\n",
        [_m("a"), _m("b"), _m("c"), _m("d")],
    ),
    Case("CR CRLF is line then blank line", b"data: a\r\r\ndata: b\r\n", [_m("a")]),
    Case("LF CR is line then blank line", b"data: a\n\r", [_m("a")]),
    Case("CR inside an event splits lines", b"data: a\rdata: b\r\n\n", [_m("a\nb")]),
    Case(
        "unicode separators and control chars are data",
        b"data: a\xe2\x80\xa8b\xe2\x80\xa9c\xc2\x85d\x0be\x0cf\x1cg\x1dh\x1ei\n\n",
        [_m("a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei")],
    ),
    Case("extra blank lines dispatch nothing", b"\n\n\ndata: a\n\n\n\n\r\n\r", [_m("a")]),
    # --- decoding
    Case("multi-byte characters", b"data: \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9\n\n", [_m("\u20ac \U0001f600 \u00e9")]),
    Case("invalid UTF-8 becomes U+FFFD", b"data: \xff\xfe ok \xc3\n\n", [_m("\ufffd\ufffd ok \ufffd")]),
    Case("UTF-8 surrogates: one U+FFFD per byte", b"data: \xed\xa0\x80\n\n", [_m("\ufffd\ufffd\ufffd")]),
    Case("overlong encoding", b"data: \xc0\xaf!\n\n", [_m("\ufffd\ufffd!")]),
    Case("truncated sequence before LF", b"data: \xf0\x9f\x98\ndata: z\n\n", [_m("\ufffd\nz")]),
    Case("event type is decoded", b"event: \xc3\xa9v\ndata: x\n\n", [_m("x", type="\u00e9v")]),
    # --- fields
    Case(
        "exactly one leading space removed",
        b"data:  two\n\ndata:\ttab\n\ndata:nospace\n\n",
        [_m(" two"), _m("\ttab"), _m("nospace")],
    ),
    Case("field names are case-sensitive", b"Data: a\nDATA: b\ndata : c\n\ndata: d\n\n", [_m("d")]),
    Case("comments are ignored", b": hi\ndata: a\n: there\ndata: b\n\n", [_m("a\nb")]),
    Case("comments never end an event", b"data: a\n:\n: x\ndata: b\n\n", [_m("a\nb")]),
    Case("comment-only stream", b": x\n: y\n\n:\n", []),
    Case("unknown fields are ignored", b"foo: bar\ndata: a\nbaz\n\n", [_m("a")]),
    Case("event sets the type", b"event: foo\ndata: a\n\n", [_m("a", type="foo")]),
    Case("type resets after each event", b"event: foo\ndata: a\n\ndata: b\n\n", [_m("a", type="foo"), _m("b")]),
    Case("type resets after a data-less block", b"event: foo\n\ndata: b\n\n", [_m("b")]),
    Case("empty event field gives message", b"event:\ndata: a\n\n", [_m("a")]),
    Case("last event field wins", b"event: a\nevent: b\ndata: x\n\n", [_m("x", type="b")]),
    # --- id
    Case("id persists", b"id: 1\ndata: a\n\ndata: b\n\n", [_m("a", "1"), _m("b", "1")], "1"),
    Case("id with NUL is ignored", b"id: 1\n\nid: 2\x003\ndata: a\n\n", [_m("a", "1")], "1"),
    Case(
        "empty id resets",
        b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\n\nid:\ndata: c\n\n",
        [_m("a", "1"), _m("b"), _m("c")],
        "",
    ),
    Case("id-only block commits the id", b"id: 7\n\n", [], "7"),
    Case("id keeps its spaces after the first", b"id:  5\ndata: a\n\n", [_m("a", " 5")], " 5"),
    Case("non-ASCII id", b"id: \xe2\x80\xa6\ndata: a\n\n", [_m("a", "\u2026")], "\u2026"),
    Case("id line after data in the same block", b"data: a\nid: 3\n\n", [_m("a", "3")], "3"),
    # --- end of stream
    Case("EOF discards the partial event and its id", b"data: a\n\nid: 9\ndata: b\n", [_m("a")], ""),
    Case("EOF discards a partial line", b"data: a\n\ndata: b", [_m("a")]),
    Case("EOF discards an id on a partial line", b"id: 1\n\nid: 2", [], "1"),
    # --- retry
    Case("retry applies without a dispatch", b"retry: 1000\n", [], retry_ms=1000),
    Case("retry with leading zeros", b"retry: 02000\n\n", [], retry_ms=2000),
    Case("retry zero", b"retry: 0\n\n", [], retry_ms=0),
    Case("retry inside an event", b"retry: 5\ndata: a\n\n", [_m("a")], retry_ms=5),
    Case("huge retry is clamped", b"retry: 99999999999999999999999\n\n", [], retry_ms=86_400_000),
    Case("very long retry is clamped", b"retry: " + b"9" * 5000 + b"\n\n", [], retry_ms=86_400_000),
    Case("invalid retry keeps the previous one", b"retry: 1500\nretry: 15x\n\n", [], retry_ms=1500),
    *[
        Case(f"invalid retry {value!r}", b"retry:" + value + b"\ndata: a\n\n", [_m("a")], retry_ms=None)
        for value in (
            b" 1000x",
            b" -1",
            b" +5",
            b" 1.5",
            b" 1e3",
            b"  5",
            b" 1_000",
            "\u0661\u0660\u0660\u0660".encode(),  # Arabic-Indic digits
            " \uff11\uff10\uff10\uff10".encode(),  # full-width digits
            b" \xc2\xb2",  # superscript two
            b" ",
            b"",
        )
    ],
    Case("retry without colon is empty and ignored", b"retry\n\n", [], retry_ms=None),
]
