"""fanin.parser: the conformance corpus under several chunkings, plus the rules that
need more than one feed (split BOM, CR/LF across reads, reconnects, size limits)."""

from __future__ import annotations

import pytest

from fanin.errors import FaninError
from fanin.parser import (
    DEFAULT_MAX_ID_SIZE,
    DEFAULT_MAX_LINE_SIZE,
    ID_ECHO_ALLOWANCE,
    ID_ECHO_FACTOR,
    EventTooLargeError,
    SSEMessage,
    SSEParser,
)

try:
    from tests.conformance_cases import CASES
except ImportError:  # tests/ itself is on sys.path (rootdir-relative imports)
    from conformance_cases import CASES

CASE_IDS = [case.name for case in CASES]


def run(pieces, **kwargs):
    parser = SSEParser(**kwargs)
    events = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return [(e.type, e.data, e.id) for e in events], parser


def check_case(case, pieces):
    events, parser = run(pieces)
    assert events == case.events
    assert parser.last_event_id == case.last_event_id
    assert parser.retry_ms == case.retry_ms


# ----------------------------------------------------------------- the corpus


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_corpus_in_one_feed(case):
    check_case(case, [case.input])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_corpus_byte_by_byte(case):
    check_case(case, [case.input[i : i + 1] for i in range(len(case.input))])


@pytest.mark.parametrize("case", [c for c in CASES if len(c.input) < 200], ids=[c.name for c in CASES if len(c.input) < 200])
def test_corpus_every_two_piece_split(case):
    for cut in range(len(case.input) + 1):
        check_case(case, [case.input[:cut], b"", case.input[cut:]])


def test_corpus_fed_as_one_concatenated_stream():
    """Each case ends cleanly or not; joining the clean ones checks that the fast path
    and the line-by-line path hand over state correctly mid-chunk."""
    clean = [c for c in CASES if c.events and c.input.endswith(b"\n\n") and not c.input.startswith(b"\xef")]
    stream = b"".join(c.input for c in clean)
    events, _ = run([stream])
    assert [e[:2] for e in events] == [e[:2] for c in clean for e in c.events]


# --------------------------------------------------------------------- BOM


@pytest.mark.parametrize("pieces", [[b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"], [b"\xef\xbb", b"\xbfdata: a\n\n"], [b"", b"\xef", b"", b"\xbb\xbfdata: a\n\n"]])
def test_bom_split_across_feeds_is_stripped(pieces):
    assert run(pieces)[0] == [("message", "a", "")]


def test_bom_prefix_that_is_not_a_bom_is_kept_as_content():
    events, _ = run([b"\xef", b"\xbbdata: a\n\ndata: b\n\n"])
    assert events == [("message", "b", "")]


def test_second_bom_after_split_first_bom_is_content():
    events, _ = run([b"\xef\xbb", b"\xbf\xef\xbb", b"\xbfdata: a\n\ndata: b\n\n"])
    assert events == [("message", "b", "")]


def test_new_connection_strips_a_bom_again():
    parser = SSEParser()
    assert [m.data for m in parser.feed(b"\xef\xbb\xbfdata: a\n\n")] == ["a"]
    parser.new_connection()
    assert [m.data for m in parser.feed(b"\xef\xbb\xbfdata: b\n\n")] == ["b"]


# ----------------------------------------------------------- line terminators


def test_chunk_final_cr_completes_the_event_at_once():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert [m.data for m in parser.feed(b"\r")] == ["a"]  # no third read needed
    assert [m.data for m in parser.feed(b"data: b\r\r")] == ["b"]


def test_lf_after_chunk_final_cr_is_swallowed():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # CRLF split across reads: one line end, not a blank line
    assert [m.data for m in parser.feed(b"\n")] == ["a"]


def test_swallow_survives_an_empty_feed_and_only_one_lf():
    parser = SSEParser()
    parser.feed(b"data: a\r")
    assert parser.feed(b"") == []
    assert [m.data for m in parser.feed(b"\n\n")] == ["a"]


def test_cr_only_stream_dispatches_each_event_in_its_own_read():
    parser = SSEParser()
    for n in range(3):
        assert [m.data for m in parser.feed(b"data: %d\r\r" % n)] == [str(n)]


def test_multibyte_character_split_across_feeds():
    raw = "data: \u20ac\U0001f600\n\n".encode()
    for cut in range(6, 13):
        assert run([raw[:cut], raw[cut:]])[0] == [("message", "\u20ac\U0001f600", "")]


# ------------------------------------------------------------------ fields


def test_own_id_marks_blocks_with_their_own_id_line():
    parser = SSEParser()
    events = parser.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 1\n\ndata: c\n\ndata: d\nid: 2\n\nid: x\x00\ndata: e\n\n")
    assert [(m.data, m.id, m.own_id) for m in events] == [
        ("a", "1", True),
        ("b", "1", False),
        ("c", "1", False),  # the id-only block before it does not count
        ("d", "2", True),
        ("e", "2", False),  # an id with NUL is not a valid id line
    ]


def test_event_type_resets_between_events_across_feeds():
    events, _ = run([b"event: a\ndata: 1\n", b"\ndata: 2\n\n"])
    assert events == [("a", "1", ""), ("message", "2", "")]


def test_retry_applies_before_any_dispatch():
    parser = SSEParser()
    parser.feed(b"retry: 2500\ndata: x")
    assert parser.retry_ms == 2500


def test_seeded_last_event_id_is_reported_until_replaced():
    parser = SSEParser(last_event_id="41")
    assert [(m.data, m.id) for m in parser.feed(b"data: a\n\nid: 42\ndata: b\n\ndata: c\n\n")] == [
        ("a", "41"),
        ("b", "42"),
        ("c", "42"),
    ]


def test_partial_event_id_never_reaches_last_event_id():
    parser = SSEParser()
    parser.feed(b"id: 1\n\nid: 2\ndata: half\n")
    assert parser.last_event_id == "1"
    parser.new_connection()  # the connection dropped mid-event
    assert [(m.data, m.id) for m in parser.feed(b"data: next\n\n")] == [("next", "1")]
    assert [(m.data, m.id) for m in parser.feed(b"event: e\ndata: more\n\n")] == [("more", "1")]
    assert parser.last_event_id == "1"


def test_new_connection_keeps_id_and_retry_and_drops_partial_input():
    parser = SSEParser()
    parser.feed(b"id: 5\nretry: 300\n\nevent: t\ndata: lost\ndata: also lo")
    parser.new_connection()
    assert parser.feed(b"st\n\n") == []  # the half line and half event are gone
    assert [(m.type, m.data, m.id) for m in parser.feed(b"data: z\n\n")] == [("message", "z", "5")]
    assert (parser.last_event_id, parser.retry_ms) == ("5", 300)


def test_new_connection_forgets_a_pending_cr():
    parser = SSEParser()
    parser.feed(b"data: a\r")
    parser.new_connection()
    assert parser.feed(b"\n") == []  # a blank line on the new stream, nothing to dispatch
    assert [m.data for m in parser.feed(b"data: b\n\n")] == ["b"]


def test_accepts_bytearray_and_memoryview():
    parser = SSEParser()
    assert [m.data for m in parser.feed(bytearray(b"data: a\n\n"))] == ["a"]
    assert [m.data for m in parser.feed(memoryview(b"data: b\n\n"))] == ["b"]


def test_message_value_semantics():
    a = SSEMessage("message", "x", "1", True)
    assert a == SSEMessage("message", "x", "1", True)
    assert a != SSEMessage("message", "x", "1", False)
    assert repr(a) == "SSEMessage(type='message', data='x', id='1', own_id=True)"
    assert not hasattr(a, "__dict__")


# ------------------------------------------------------------------ limits


def test_default_limit_is_16_mib():
    assert DEFAULT_MAX_LINE_SIZE == 16 * 1024 * 1024
    assert SSEParser().max_line_size == DEFAULT_MAX_LINE_SIZE


def test_unterminated_line_over_the_limit_raises_while_it_grows():
    parser = SSEParser(max_line_size=1000)
    parser.feed(b"data: ")
    for _ in range(9):
        parser.feed(b"x" * 100)  # 906 bytes pending: still fine
    with pytest.raises(EventTooLargeError) as info:
        parser.feed(b"x" * 100)
    message = str(info.value)
    assert "1000 bytes" in message and "\n" not in message
    assert isinstance(info.value, FaninError)


def test_long_line_inside_one_read_raises_after_earlier_events():
    parser = SSEParser(max_line_size=50)
    with pytest.raises(EventTooLargeError) as info:
        parser.feed(b"data: ok\n\n: " + b"c" * 60 + b"\ndata: never\n\n")
    assert [m.data for m in info.value.events] == ["ok"]


def test_event_data_over_the_limit_raises():
    parser = SSEParser(max_line_size=100)
    with pytest.raises(EventTooLargeError, match="100 bytes"):
        for _ in range(20):
            parser.feed(b"data: " + b"y" * 20 + b"\n")  # each line fits, the event does not


def test_lines_exactly_at_the_limit_are_fine():
    parser = SSEParser(max_line_size=10)
    assert [m.data for m in parser.feed(b"data: abcd\n\n")] == ["abcd"]  # 10-byte line
    assert [m.data for m in parser.feed(b"data:abcd\ndata:ef\n\n")] == ["abcd\nef"]  # 7 chars of data


def test_parser_is_usable_after_an_error_and_new_connection():
    parser = SSEParser(max_line_size=20, last_event_id="3")
    with pytest.raises(EventTooLargeError):
        parser.feed(b"id: 4\ndata: " + b"z" * 30)
    parser.new_connection()
    assert [(m.data, m.id) for m in parser.feed(b"data: fine\n\n")] == [("fine", "3")]


def test_pending_memory_is_bounded_by_the_limit():
    """A server that never sends a line end is cut off near the limit, not at OOM."""
    limit = 64 * 1024
    parser = SSEParser(max_line_size=limit)
    fed = 0
    with pytest.raises(EventTooLargeError):
        while True:
            parser.feed(b"a" * 4096)
            fed += 4096
            assert fed <= limit + 4096
    assert fed <= limit


def test_max_line_size_must_be_positive():
    with pytest.raises(ValueError):
        SSEParser(max_line_size=0)


# ------------------------------------------------- ids and types: output bounded by input


def feed_all(blob: bytes, cuts=(), **kwargs):
    """(events delivered, error or None) for `blob` fed in pieces cut at `cuts`."""
    parser, out, position = SSEParser(**kwargs), [], 0
    try:
        for cut in [*cuts, len(blob)]:
            out += parser.feed(blob[position:cut])
            position = cut
    except EventTooLargeError as exc:
        return out + exc.events, str(exc)
    return out, None


def test_an_id_over_the_cap_fails_after_the_events_before_it():
    assert DEFAULT_MAX_ID_SIZE == 1024
    blob = b"id: 1\ndata: a\n\nid: " + b"i" * 1025 + b"\ndata: b\n\ndata: c\n\n"
    events, error = feed_all(blob)
    assert [(e.data, e.id) for e in events] == [("a", "1")]
    assert error == "SSE event id longer than the limit of 1024 bytes (max_id_size)"
    at_cap = b"id: " + b"i" * 1024 + b"\ndata: b\n\n"
    assert feed_all(at_cap)[0][0].id == "i" * 1024


def test_the_id_cap_counts_utf8_bytes_not_characters():
    assert feed_all("id: é\ndata: x\n\n".encode(), max_id_size=2)[1] is None
    assert "max_id_size" in feed_all("id: éé\ndata: x\n\n".encode(), max_id_size=3)[1]
    # the id-and-data fast path checks every id of its run too
    run = b"".join(b"id: %d\ndata: x\n\n" % n for n in range(50)) + b"id: " + b"9" * 40 + b"\ndata: y\n\n"
    events, error = feed_all(run, max_id_size=32)
    assert len(events) == 50 and "max_id_size" in error


def test_an_event_type_over_the_cap_fails():
    blob = b"data: a\n\nevent: " + b"t" * 1025 + b"\ndata: b\n\n"
    events, error = feed_all(blob)
    assert [e.data for e in events] == ["a"] and "SSE event type longer than the limit of 1024 bytes" in error
    assert feed_all(b"event: " + b"t" * 1024 + b"\ndata: b\n\n")[0][0].type == "t" * 1024


def test_inherited_ids_are_bounded_by_what_the_events_carry():
    """One id at the cap, then tiny events that all repeat it: refused once the repeats pass
    ID_ECHO_FACTOR times the events' own bytes plus the allowance; wherever the reads are cut."""
    hostile = b"id: " + b"\x01" * 1024 + b"\n\n" + b"data\n\n" * 5000  # 6 KiB of JSON per repeat
    results = {feed_all(hostile, cuts)[0].__len__() for cuts in
               ([], range(1, len(hostile), 7), range(5, len(hostile), 4096), [10, 1040, 1041, 20000])}
    events, error = feed_all(hostile)
    assert results == {len(events)} and 0 < len(events) < 20
    assert len(events) * 6 * 1024 <= ID_ECHO_FACTOR * 6 * len(events) + ID_ECHO_ALLOWANCE
    assert "repeated on events too small to carry it" in error


def test_honest_streams_repeating_a_short_id_are_never_refused():
    uuid = b"0b7d7d43-64f1-4e5e-a5b8-2b4f2bb0a1c1"
    heartbeats = b"id: " + uuid + b"\n\n" + b"data\n\n" * 100_000  # each event 6 bytes, the id 36
    events, error = feed_all(heartbeats, range(4096, len(heartbeats), 4096))
    assert error is None and len(events) == 100_000
    cursor = b"id: " + b"c" * 200 + b"\n\n" + b'data: {"token": "abcdefghijklmnop"}\n\n' * 20_000
    events, error = feed_all(cursor, range(65536, len(cursor), 65536))
    assert error is None and len(events) == 20_000 and events[-1].id == "c" * 200


def test_an_inherited_id_json_cannot_encode_is_still_measured():
    parser = SSEParser(last_event_id="\udcff-given-on-the-command-line")
    assert [m.id for m in parser.feed(b"data: x\n\ndata\n\n")] == ["\udcff-given-on-the-command-line"] * 2
