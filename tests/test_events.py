"""Records and their JSON: the NDJSON writer's per-batch templates must give exactly the
bytes of orjson.dumps(event.to_dict()) for any event, and timestamps keep their shape."""

from __future__ import annotations

import io
import re
import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fanin.errors import FailureKind
from fanin.events import Batch, Event, SourceError, SourceReport, Summary, dumps, format_wall_ns
from fanin.cli.writers import NdjsonWriter

texts = st.text(st.characters(codec="utf-8"), max_size=40)
messages = st.lists(
    st.tuples(st.one_of(st.just("message"), texts), texts, texts, st.booleans()), min_size=1, max_size=20
)


@settings(max_examples=300, deadline=None)
@given(
    messages=messages,
    source=st.integers(0, 10_000),
    url=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    wall_ns=st.integers(0, 4_000_000_000_000_000_000),
    first=st.integers(1, 10**9),
    late=st.booleans(),
)
def test_ndjson_templates_equal_orjson_of_to_dict(messages, source, url, wall_ns, first, late):
    batch = Batch(source, url, 123, wall_ns, messages, late=late)
    batch.first_number = first
    out = io.BytesIO()
    NdjsonWriter(out).batch([batch])
    expected = b"".join(orjson.dumps(e.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for e in batch.events())
    assert out.getvalue() == expected


printable = st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x7F), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(printable, printable), min_size=1, max_size=20),
    url=st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    first=st.integers(1, 10**12),
    late=st.booleans(),
)
def test_ascii_edges_encode_like_orjson(pairs, url, first, late):
    """The common ASCII case, with its edges (control characters, DEL, quotes,
    backslashes, % in data): the same bytes as orjson of to_dict."""
    batch = Batch(7, url, 1, 1_795_000_000_123_456_789, [("message", d, i, True) for d, i in pairs], late=late)
    batch.first_number = first
    out = io.BytesIO()
    NdjsonWriter(out).batch([batch])
    expected = b"".join(orjson.dumps(e.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for e in batch.events())
    assert out.getvalue() == expected


def test_batch_events_are_numbered_and_tagged():
    batch = Batch(3, "http://h/s", 10, 20, [("message", "a", "1", True), ("tick", "b", "1", False)])
    batch.first_number = 41
    events = batch.events()
    assert [(e.event_number, e.source, e.url, e.event_type, e.data, e.event_id, e.own_id) for e in events] == [
        (41, 3, "http://h/s", "message", "a", "1", True),
        (42, 3, "http://h/s", "tick", "b", "1", False),
    ]


def test_timestamps_are_utc_iso_with_microseconds_and_z():
    now = time.time_ns()
    stamp = format_wall_ns(now)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    assert format_wall_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"
    assert format_wall_ns(1_700_000_001_000_000_000) == "2023-11-14T22:13:21.000000Z"


def test_error_and_summary_shapes():
    error = SourceError(1, "http://h/x", "HTTP 404 Not Found from http://h/x", FailureKind.HTTP_4XX, 404,
                        wall_ns=0)
    assert error.to_dict() == {"type": "error", "status": "failed", "source": 1, "url": "http://h/x",
                               "error": "HTTP 404 Not Found from http://h/x", "kind": "http_4xx",
                               "http_status": 404, "retry_after": None,
                               "timestamp": "1970-01-01T00:00:00.000000Z"}
    assert orjson.loads(dumps(error))["kind"] == "http_4xx"
    summary = Summary("partial", 5, 1.25, [SourceReport(0, "u", "completed", 5, 1), SourceReport(1, "v", "failed",
                                                                                           0, 0, "boom")],
                      stopped_by=None, wall_ns=0)
    d = summary.to_dict()
    assert list(d) == ["type", "status", "total_events", "connection_duration", "sources", "summary", "timestamp"]
    assert d["sources"][1] == {"source": 1, "url": "v", "status": "failed", "events": 0, "reconnects": 0,
                               "error": "boom", "kind": None, "http_status": None, "retry_after": None}
    assert d["summary"] == "partial: 5 events from 2 sources in 1.2s, 1 failed"
    assert Summary("completed", 7, 0.5, [], stopped_by="max_events").to_dict()["stopped_by"] == "max_events"


def test_event_to_dict_shape():
    event = Event(0, "http://h/s", "message", "x", "9", 1, 0, event_number=4)
    assert list(event.to_dict()) == ["type", "event_number", "source", "url", "event_type", "data", "event_id",
                                     "timestamp"]
    assert Event(0, "u", "m", "d", "", 1, 0, late=True).to_dict()["late"] is True


def test_wall_clock_cache_stays_consistent_when_another_thread_runs_mid_update(monkeypatch):
    """The formatter's cache is shared by every thread (the bridge runs the engine on its
    own OS thread). Simulate a thread switch at the worst point, while the new second's
    text is being built: both calls must still give the right second."""
    import fanin.events as events_module
    from datetime import datetime, timezone

    def reference(ns: int) -> str:
        second, rest = divmod(ns, 1_000_000_000)
        return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{rest // 1000:06d}Z"

    clock = events_module._WallClock()
    before = 1_700_000_000 * 10**9
    after = before + 5 * 10**9
    assert clock.format(before + 1_000) == reference(before + 1_000)
    other_thread: list[str] = []
    switched = []
    real_datetime = events_module.datetime

    class SwitchesThread(real_datetime):
        @classmethod
        def fromtimestamp(cls, t, tz=None):
            if not switched:
                switched.append(True)
                other_thread.append(clock.format(after + 2_000))  # the other thread runs here
            return real_datetime.fromtimestamp(t, tz)

    monkeypatch.setattr(events_module, "datetime", SwitchesThread)
    this_thread = clock.format(after + 1_000)
    assert other_thread == [reference(after + 2_000)]
    assert this_thread == reference(after + 1_000)
    assert clock.format(after + 2_000) == reference(after + 2_000)


quotey = st.text(st.sampled_from(['"', "\\", ",", "a", "]", "[", "\n", "\x00", "é"]), max_size=8)


@settings(max_examples=500, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from(["message", "tick", 'a"b']), quotey, quotey), min_size=1, max_size=12),
    first=st.integers(1, 10**6),
)
def test_quotes_backslashes_and_commas_at_string_edges_encode_like_orjson(rows, first):
    """The batch encoder cuts one orjson array back into strings; values that end in a
    quote, a backslash or `",` (which fake an element boundary) must still come out exact."""
    batch = Batch(2, 'http://h/"q"', 1, 1_795_000_000_000_000_000, [(t, d, i, False) for t, d, i in rows])
    batch.first_number = first
    out = io.BytesIO()
    NdjsonWriter(out).batch([batch])
    expected = b"".join(orjson.dumps(e.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for e in batch.events())
    assert out.getvalue() == expected


def test_value_ending_in_quote_comma_is_not_cut_at_the_fake_boundary():
    batch = Batch(0, "http://h/", 1, 0, [("message", 'a",', "1", True), ("message", "b", "1", True)])
    batch.first_number = 1
    out = io.BytesIO()
    NdjsonWriter(out).batch([batch])
    assert [orjson.loads(line)["data"] for line in out.getvalue().splitlines()] == ['a",', "b"]
