"""One language across the faces (issue 15): the same method rule, durations, --extract,
error prefix, plurals and units in `fanin stream` and `fanin load`; the server's access log
and route list. Real `fanin` processes against servers on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
import pytest

from fanin.cli.main import build_parser
from fanin.cli.options import request_method
from fanin.measure.report import format_actual
from fanin.server.app import build_app
from fanin.server.generic import route_lines
from fanin.wording import plural

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
CHAT = '{"stream": true, "messages": [{"role": "user", "content": "hi"}]}'


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*FANIN, *args], capture_output=True, timeout=timeout, env=ENV, cwd=ROOT)


def records(stdout: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def echoed_method(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return orjson.loads(records(result.stdout)[0]["data"])["method"]


# --------------------------------------------------------------------------- method
def test_a_body_without_x_means_post_in_stream(sse_server):
    url = sse_server.url("/echo")
    assert echoed_method(run("stream", url, "--json", '{"a": 1}', "--format", "ndjson")) == "POST"
    assert echoed_method(run("stream", url, "-d", "x=1", "--format", "ndjson")) == "POST"
    assert echoed_method(run("stream", url, "--format", "ndjson")) == "GET"
    assert echoed_method(run("stream", url, "-X", "PUT", "--json", "{}", "--format", "ndjson")) == "PUT"


def test_an_openai_endpoint_answers_stream_with_json_and_no_x(sse_server):
    """The 405 of the issue: --json alone must POST to /v1/chat/completions."""
    result = run("stream", sse_server.url("/v1/chat/completions"), "--json", CHAT, "--stop-on", "[DONE]",
                 "--format", "ndjson")
    assert result.returncode == 0, result.stderr
    assert records(result.stdout)[-1]["status"] == "completed"


def test_the_method_rule_is_one_function():
    assert request_method(None, has_body=True) == "POST"
    assert request_method(None, has_body=False) == "GET"
    assert request_method("get", has_body=True) == "GET"  # -X wins, as with curl


# --------------------------------------------------------------------------- durations
@pytest.mark.parametrize("option", ["--max-duration", "--timeout", "--idle-timeout"])
@pytest.mark.parametrize(("text", "seconds"), [("2", 2.0), ("2.5", 2.5), ("500ms", 0.5), ("2s", 2.0),
                                               ("1m", 60.0), ("1h", 3600.0)])
def test_every_stream_duration_option_takes_every_form(option, text, seconds):
    args = build_parser("stream").parse_args(["stream", "http://127.0.0.1:9/", option, text])
    assert getattr(args, option[2:].replace("-", "_")) == pytest.approx(seconds)


def test_reorder_window_takes_units_and_bare_milliseconds():
    parse = build_parser("stream").parse_args
    assert parse(["stream", "http://127.0.0.1:9/", "--reorder-window", "0.2s"]).reorder_window == pytest.approx(0.2)
    assert parse(["stream", "http://127.0.0.1:9/", "--reorder-window", "200"]).reorder_window == pytest.approx(0.2)


def test_max_duration_2s_runs_and_a_bad_duration_is_one_line(sse_server):
    result = run("stream", sse_server.url("/stream?count=0&rate=50"), "--max-duration", "300ms",
                 "--timeout", "5s", "--format", "ndjson")
    assert result.returncode == 0, result.stderr
    assert records(result.stdout)[-1]["stopped_by"] == "max_duration"
    bad = run("stream", sse_server.url("/stream"), "--max-duration", "2 parsecs")
    assert bad.returncode == 2 and bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        "fanin: error: argument --max-duration: bad duration '2 parsecs' (use e.g. 2, 2.5, 500ms, 2s, 1m or 1h)"]


# --------------------------------------------------------------------------- --extract
def test_extract_prints_the_answer_of_an_openai_stream(sse_server):
    url = sse_server.url("/v1/chat/completions")
    raw = run("stream", url, "--json", CHAT, "--stop-on", "[DONE]", "--format", "ndjson")
    events = [r for r in records(raw.stdout) if r["type"] == "event"]
    expected = "".join(orjson.loads(e["data"])["choices"][0]["delta"].get("content") or "" for e in events)
    assert expected.strip()
    text = run("stream", url, "--json", CHAT, "--stop-on", "[DONE]", "--extract", "choices.0.delta.content",
               "--format", "text")
    assert text.returncode == 0, text.stderr
    assert text.stdout.decode() == expected.rstrip("\n") + "\n"  # the answer, ended on a whole line
    assert "{" not in text.stdout.decode()


def test_extract_skips_events_without_the_path_and_adds_a_field_to_ndjson(sse_server):
    body = (b'data: {"a": "x"}\n\ndata: [DONE]\n\ndata: {"b": 1}\n\ndata: {"a": 7}\n\n')
    import base64

    url = sse_server.url(f"/raw?b64={base64.urlsafe_b64encode(body).decode()}")
    text = run("stream", url, "--extract", "a", "--format", "text")
    assert text.stdout == b"x7\n"
    assert "4 events" in text.stderr.decode()  # every event still counts
    lines = records(run("stream", url, "--extract", "a", "--format", "ndjson").stdout)
    assert [r["extracted"] for r in lines if r["type"] == "event"] == ["x", None, None, "7"]
    pretty = run("stream", url, "--extract", "a", "--format", "pretty")
    assert pretty.stdout.decode().startswith("x7\n")


def test_extract_from_several_sources_starts_a_line_per_source(sse_server):
    import base64

    body = base64.urlsafe_b64encode(b'data: {"a": "one"}\n\ndata: {"a": "two"}\n\n').decode()
    urls = [sse_server.url(f"/raw?b64={body}&n={i}") for i in range(2)]
    out = run("stream", *urls, "--extract", "a", "--format", "text").stdout.decode()
    assert sorted(out.splitlines()) == ["[0] onetwo", "[1] onetwo"]


def test_an_empty_extract_path_is_refused():
    result = run("stream", "http://127.0.0.1:9/", "--extract", "..")
    assert result.returncode == 2 and "empty JSON path" in result.stderr.decode()


# --------------------------------------------------------------------------- wording
def test_one_event_is_singular_and_plural_is_shared(sse_server):
    result = run("stream", sse_server.url("/stream?count=1"), "--format", "text")
    assert "completed: 1 event from 1 source in" in result.stderr.decode()
    assert plural(1, "process", "processes") == "1 process" and plural(3, "process", "processes") == "3 processes"
    assert plural(12345, "user", thousands=True) == "12,345 users"


def test_every_usage_error_of_a_subcommand_has_the_one_prefix():
    for args in (["stream", "http://127.0.0.1:9/", "--max-events", "0"], ["stream", "--bogus"],
                 ["load", "http://127.0.0.1:9/", "-d", "nope"]):
        result = run(*args)
        assert result.returncode == 2
        assert result.stderr.decode().startswith("fanin: error: "), result.stderr


def test_threshold_figures_carry_their_units():
    assert format_actual({"metric": "p99_ttfe", "actual": 5.015}) == "5.015 ms"
    assert format_actual({"metric": "events", "actual": 12.0}) == "12 events"
    assert format_actual({"metric": "error_rate", "actual": 0.025}) == "2.5%"
    assert format_actual({"metric": "connections_failed", "actual": 3}) == "3 connections"
    assert format_actual({"metric": "events", "actual": None}) == "no data"


def test_a_breached_threshold_line_has_the_prefix_and_a_unit(sse_server):
    result = run("load", sse_server.url("/stream?count=5"), "-c", "1", "-d", "0.5s", "--no-progress",
                 "--threshold", "events>1000000", "--json", os.devnull)
    assert result.returncode == 1
    assert re.search(r"^fanin: error: threshold breached: events>1000000 \(actual [\d,]+ events\)$",
                     result.stderr.decode(), re.M), result.stderr


@pytest.mark.parametrize("command", ["stream", "load"])
def test_retries_and_reconnect_say_their_defaults(command):
    help_text = " ".join(run(command, "--help").stdout.decode().split())
    assert re.search(r"--retries N [^-]*\(default 3, so 4 attempts", help_text)
    assert re.search(r"--reconnect \{error,always,never\} [^-]*error = only after an abnormal end \(the default\)",
                     help_text)


# --------------------------------------------------------------------------- fanin serve
def test_every_registered_route_is_listed_at_the_root(sse_server):
    app = build_app()
    listed = urllib.request.urlopen(sse_server.url("/"), timeout=10).read().decode()
    registered = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    assert len(registered) >= 16 and len(route_lines(app)) == len(registered)
    for method, path in registered:
        assert re.search(rf"^  {re.escape(method)} +{re.escape(path)}$", listed, re.M), (method, path)
    assert "/v1/chat/completions" in listed and "/v1/workflows/run" in listed


def test_serve_access_log_writes_one_line_per_request_to_stderr(tmp_path):
    log = tmp_path / "serve.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*FANIN, "serve", "--port", "0", "--access-log"], stdout=subprocess.PIPE,
                                stderr=err, env=ENV, cwd=ROOT, text=True)
        try:
            base = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
            urllib.request.urlopen(base + "/stats", timeout=10).read()
            urllib.request.urlopen(base + "/stream?count=2", timeout=10).read()
        finally:
            proc.terminate()
            proc.wait(20)
            proc.stdout.close()
    lines = log.read_text().splitlines()
    assert len([line for line in lines if '"GET /stats HTTP/1.1" 200' in line]) == 1, lines
    assert len([line for line in lines if '"GET /stream?count=2 HTTP/1.1" 200' in line]) == 1, lines


def test_serve_on_a_taken_port_is_one_error_line(sse_server):
    result = run("serve", "--port", str(sse_server.port))
    assert result.returncode == 1
    assert result.stderr.decode() == f"fanin: error: cannot listen on 127.0.0.1:{sse_server.port}: address already in use\n"


def test_ndjson_extracted_field_is_valid_json_in_place():
    """The fast template with --extract: the same bytes as orjson of the record with
    "extracted" after event_id, for strings, numbers, objects, missing paths and odd data."""
    import io

    from fanin.cli.writers import NdjsonWriter
    from fanin.events import Batch

    messages = [("message", '{"a": "x\\"y%s"}', "1", True), ("tick", '{"a": 7}', "2", True),
                ("message", '{"a": {"b": [1]}}', "", True), ("message", "[DONE]", "3", True),
                ("message", '{"b": 1}', "4", True)]
    batch = Batch(2, "http://127.0.0.1:9/%d", 1, 1_795_000_000_123_456_789, messages, late=True)
    batch.first_number = 10
    out = io.BytesIO()
    NdjsonWriter(out, extract=("a",)).batch([batch])
    expected = []
    for event, extracted in zip(batch.events(), ['x"y%s', "7", '{"b":[1]}', None, None], strict=True):
        record = event.to_dict()
        ordered = {}
        for key, value in record.items():
            ordered[key] = value
            if key == "event_id":
                ordered["extracted"] = extracted
        expected.append(orjson.dumps(ordered) + b"\n")
    assert out.getvalue() == b"".join(expected)
