"""Property tests for fanin.parser: the result never depends on how the bytes are cut,
and it always equals a tiny character-by-character reference written straight from the
standard (WHATWG HTML "Parsing an event stream", "Interpreting an event stream"), on generated streams and on the conformance corpus."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fanin.parser import EventTooLargeError, SSEParser

try:
    from tests.conformance_cases import CASES
except ImportError:  # tests/ itself is on sys.path (rootdir-relative imports)
    from conformance_cases import CASES

RETRY_CAP_MS = 86_400_000


# --------------------------------------------------------------------------- reference


def reference_parse(stream: bytes, last_event_id: str = ""):
    """The spec, one character at a time. Returns (events, last_event_id, retry_ms) with
    events as (type, data, id, own_id). Slow and obvious on purpose."""
    text = stream.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif char == "\n":
            lines.append(current)
            current = ""
        else:
            current += char
        i += 1
    # `current` is an unterminated line: discarded at end of stream.

    events = []
    data = ""
    event_type = ""
    id_buffer = last_event_id
    block_has_id = False
    retry_ms = None
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data == "":
                event_type = ""
                block_has_id = False
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append((event_type or "message", data, last_event_id, block_has_id))
            data = ""
            event_type = ""
            block_has_id = False
            continue
        if line[0] == ":":
            continue
        if ":" in line:
            colon = line.index(":")
            name, value = line[:colon], line[colon + 1 :]
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
                block_has_id = True
        elif name == "retry":
            if value != "" and all(c in "0123456789" for c in value):
                number = 0
                for c in value:
                    number = min(number * 10 + "0123456789".index(c), 10 * RETRY_CAP_MS)
                retry_ms = min(number, RETRY_CAP_MS)
    return events, last_event_id, retry_ms


# ------------------------------------------------------------------------- helpers


def as_tuples(messages):
    return [(m.type, m.data, m.id, m.own_id) for m in messages]


def feed_pieces(pieces, *, max_line_size=None, new_parser=None):
    """Feed the pieces in order; return (events, last_event_id, retry_ms, error message)."""
    parser = SSEParser() if max_line_size is None else SSEParser(max_line_size=max_line_size)
    events = []
    error = None
    for piece in pieces:
        try:
            events.extend(parser.feed(piece))
        except EventTooLargeError as exc:
            events.extend(exc.events)
            error = str(exc)
            break
    return as_tuples(events), parser.last_event_id, parser.retry_ms, error


def split_at(stream: bytes, cuts) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]


# ---------------------------------------------------------------------- strategies

VALUE_ALPHABET = st.sampled_from(
    list("ab z09:") + [" ", "\t", "\0", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\u00e9", "\u20ac", "\U0001f600", "\ufeff", "\x1c"]
)
FIELD_NAMES = st.sampled_from(["data", "data", "data", "event", "id", "retry", "Data", "foo", "data ", "", "\ufeffdata"])
RETRY_VALUES = st.sampled_from(["1000", "02000", "0", "1000x", "-1", "+5", "1.5", "1e3", " 5", "1_000", "\u0661\u0660", "\uff11", "", "99999999999"])
TERMINATORS = st.sampled_from([b"\n", b"\r", b"\r\n"])
RAW_BYTES = st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\xc0\xaf"])


@st.composite
def sse_line(draw) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "nocolon", "comment", "blank", "blank", "raw", "retry"]))
    if kind == "blank":
        return b""
    if kind == "comment":
        return b":" + draw(st.text(VALUE_ALPHABET, max_size=6)).encode()
    if kind == "raw":
        return draw(st.text(VALUE_ALPHABET, max_size=3)).encode() + draw(RAW_BYTES) + draw(st.text(VALUE_ALPHABET, max_size=3)).encode()
    name = draw(FIELD_NAMES)
    if kind == "nocolon":
        return name.encode()
    if kind == "retry":
        return b"retry:" + draw(st.sampled_from(["", " "])).encode() + draw(RETRY_VALUES).encode()
    space = draw(st.sampled_from(["", " ", "  "]))
    return f"{name}:{space}".encode() + draw(st.text(VALUE_ALPHABET, max_size=8)).encode()


@st.composite
def sse_stream(draw) -> bytes:
    parts = [draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xef\xbb"]))]
    for line in draw(st.lists(sse_line(), max_size=25)):
        parts.append(line + draw(TERMINATORS))
    if draw(st.booleans()):
        parts.append(draw(sse_line()))  # unterminated tail
    return b"".join(parts)


@st.composite
def stream_and_cuts(draw):
    stream = draw(sse_stream())
    cuts = draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=12))
    return stream, cuts


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- tests


@SETTINGS
@given(sse_stream())
def test_one_feed_matches_reference(stream):
    events, last_id, retry, error = feed_pieces([stream])
    assert error is None
    assert (events, last_id, retry) == reference_parse(stream)


@SETTINGS
@given(stream_and_cuts())
def test_any_split_gives_the_same_result(data):
    stream, cuts = data
    whole = feed_pieces([stream])
    assert feed_pieces(split_at(stream, cuts)) == whole
    assert feed_pieces([stream[i : i + 1] for i in range(len(stream))]) == whole


@SETTINGS
@given(stream_and_cuts(), st.integers(1, 40))
def test_size_limit_does_not_depend_on_split(data, limit):
    """Events before an oversized line or event, and whether the error happens at all,
    are the same however the stream is cut."""
    stream, cuts = data
    whole = feed_pieces([stream], max_line_size=limit)
    assert feed_pieces(split_at(stream, cuts), max_line_size=limit) == whole
    assert feed_pieces([stream[i : i + 1] for i in range(len(stream))], max_line_size=limit) == whole


@SETTINGS
@given(st.lists(st.sampled_from([b"data: " + b"x" * 64, b"data: \xc3\xa9\xe2\x82\xac", b"data:", b"data: a\ndata: b", b"event: e\ndata: d", b"id: 1\ndata: q"]), max_size=40), st.lists(st.integers(0, 4000), max_size=8))
def test_fast_path_streams_match_reference(blocks, cuts):
    """Streams made of whole events, mostly `data: ...\\n\\n`, exercise the block fast path."""
    stream = b"".join(block + b"\n\n" for block in blocks)
    expected = reference_parse(stream)
    assert feed_pieces([stream])[:3] == expected
    assert feed_pieces(split_at(stream, cuts))[:3] == expected


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reference_agrees_with_corpus(case):
    """Guards the corpus itself: a hand-written expectation that the spec's plain reading
    disagrees with is a mistake in the corpus."""
    events, last_id, retry = reference_parse(case.input)
    assert [event[:3] for event in events] == case.events
    assert (last_id, retry) == (case.last_event_id, case.retry_ms)
