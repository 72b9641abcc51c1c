"""Delivery accounting in `fanin load` (--seq-ids / --seq-field): gaps from the built-in
server's drop_every fault are counted exactly, resumed streams lose nothing, duplicates and
late arrivals are told apart, and `lost==0` gates a run."""

from __future__ import annotations

import base64

import pytest

from load_run import run_load
from fanin.measure.loss import LossTracker
from fanin.measure.metrics import LoadMetrics
from fanin.server.app import ServerThread


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def events(*ids) -> list:
    return [("message", "x", str(i), True) for i in ids]


def test_tracker_tells_gaps_duplicates_and_late_arrivals_apart():
    m = LoadMetrics()
    tracker = LossTracker(m, 2)
    tracker.batch(0, events(1, 2, 3, 6, 7), 0)  # 4 and 5 lost
    tracker.batch(0, events(5, 5, 8, 2), 0)  # 5 late (then again: a duplicate), 2 a duplicate
    tracker.batch(1, events(10, 11, 13), 0)  # another stream starts at 10: only 12 lost
    assert (m.lost, m.duplicates, m.reordered, m.seq_streams) == (2, 2, 1, 2)
    assert sorted(tracker.listed()) == [[0, 1, 2, 1], [1, 1, 0, 0]]
    tracker.new_stream(0)  # a fresh stream numbers from 1 again: not a duplicate
    tracker.batch(0, events(1, 2) + [("message", "x", "2", False), ("message", "x", "abc", True)], 0)
    assert (m.lost, m.duplicates, m.seq_missing, m.seq_streams) == (2, 2, 2, 3)


def test_dropped_ids_are_counted_exactly(server, tmp_path, capsys):
    # One stream, ids 1, 2, 3, 4, 6, ... (every 5th never sent): after E events, (E - 1) // 4 lost.
    url = server.url("/stream?count=0&rate=100&drop_every=5")
    code, report, err = run_load([url, "-c", "1", "-d", "1s", "--seq-ids", "--threshold", "lost==0"],
                                 tmp_path, capsys)
    delivered = report["events"]["total"]
    assert delivered >= 40
    delivery = report["delivery"]
    assert delivery["sequence"] == "id" and delivery["streams_tracked"] == 1
    assert delivery["lost"] == (delivered - 1) // 4
    assert delivery["duplicates"] == 0 and delivery["reordered"] == 0
    assert delivery["worst_streams"] == [{"slot": 0, "lost": delivery["lost"], "duplicates": 0, "reordered": 0}]
    assert code == 1 and "threshold breached: lost==0" in err
    assert "delivery" in err and f"lost {delivery['lost']:,}" in err  # the table's row


def test_seq_field_reads_the_number_from_the_data(server, tmp_path, capsys):
    url = server.url("/stream?count=0&rate=100&drop_every=3&ids=0&ts=1")
    code, report, _ = run_load([url, "-c", "1", "-d", "1s", "--seq-field", "seq", "--threshold", "lost>0"],
                               tmp_path, capsys)
    delivered = report["events"]["total"]
    assert code == 0 and delivered >= 40
    assert report["delivery"]["lost"] == (delivered - 1) // 2  # 1 2 4 5 7 8 ...
    assert report["delivery"]["events_without_number"] == 0


def test_resumed_streams_lose_nothing_and_time_the_resume(server, tmp_path, capsys):
    # The server cuts every stream mid-event after 10 events; the engine resumes by Last-Event-ID.
    url = server.url("/stream?count=0&rate=100&abort_every=10&retry=20")
    code, report, _ = run_load([url, "-c", "2", "-d", "2.5s", "--seq-ids", "--threshold", "lost==0",
                                "--threshold", "duplicates==0", "--threshold", "p99_resume<10s"], tmp_path, capsys)
    assert code == 0, report["thresholds"]
    delivery, drops = report["delivery"], report["connections"]["stream_errors"]
    assert drops >= 3
    assert delivery["lost"] == delivery["duplicates"] == delivery["reordered"] == 0
    assert max(drops - 2, 1) <= delivery["resume_ms"]["count"] <= drops  # a drop at the very end may not resume
    assert delivery["resume_ms"]["p50"] >= 15  # at least the server's retry: 20 ms


def test_a_server_that_repeats_and_reorders(server, tmp_path, capsys):
    body = b"".join(b"id: %d\ndata: x\n\n" % i for i in (1, 2, 4, 3, 3, 5, 7))
    url = server.url("/raw?b64=" + base64.urlsafe_b64encode(body).decode())
    code, report, _ = run_load([url, "-c", "1", "-d", "0.5s", "--seq-ids"], tmp_path, capsys)
    d = report["delivery"]
    streams = d["streams_tracked"]  # each stream: 3 late (reordered), 3 again (duplicate), 6 lost
    assert streams >= 1 and report["connections"]["streams_completed"] >= streams - 1
    assert (d["lost"], d["duplicates"], d["reordered"]) == (streams, streams, streams)


def test_delivery_options_refused_where_they_cannot_apply(server, tmp_path, capsys):
    url = server.url("/stream?count=0&rate=10")
    code, _, err = run_load([url, "--mode", "requests", "-n", "1", "--seq-ids"], tmp_path, capsys)
    assert code == 2 and "--mode streams" in err
    code, _, err = run_load([url, "--seq-ids", "--seq-field", "seq"], tmp_path, capsys)
    assert code == 2 and "not both" in err
    code, report, err = run_load([url, "-c", "1", "-d", "0.3s", "--threshold", "lost==0"], tmp_path, capsys)
    assert code == 1 and "delivery" not in report  # not tracked: no silent pass
    assert "lost==0 (actual no data)" in err


def test_drop_every_rejects_a_negative(server, tmp_path, capsys):
    code, report, err = run_load([server.url("/stream?drop_every=-1"), "-c", "1", "-d", "5s"], tmp_path, capsys)
    assert code == 1 and report["errors"]["by_kind"] == {"http_4xx": 1}
    assert "drop_every must not be negative" in report["errors"]["examples"]["http_4xx"]
