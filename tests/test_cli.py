"""`fanin` as a user runs it: a real process, real servers on 127.0.0.1, exit codes,
one-line errors, nothing secret printed, the conformance corpus end to end."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from conformance_cases import CASES

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]


def run(*args: str, timeout: float = 60, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    return subprocess.run([*FANIN, *args], capture_output=True, timeout=timeout, env=env, cwd=ROOT, input=stdin)


def ndjson(stdout: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def raw_url(server, payload: bytes, chunk: int = 0) -> str:
    return server.url(f"/raw?b64={base64.urlsafe_b64encode(payload).decode()}&chunk={chunk}")


def test_conformance_corpus_in_one_write_and_byte_by_byte(sse_server):
    """Every corpus case is a source; all of them in one command, twice (whole and 1 byte per read)."""
    urls = [raw_url(sse_server, case.input, chunk) for chunk in (0, 1) for case in CASES]
    result = run("stream", *urls, "--format", "ndjson", "--retries", "0")
    records = ndjson(result.stdout)
    assert result.returncode == 0, result.stderr
    summary = records[-1]
    assert summary["type"] == "summary" and summary["status"] == "completed"
    events = [r for r in records if r["type"] == "event"]
    assert [e["event_number"] for e in events] == list(range(1, len(events) + 1))
    for index, url in enumerate(urls):
        case = CASES[index % len(CASES)]
        got = [(e["event_type"], e["data"], e["event_id"]) for e in events if e["source"] == index]
        assert got == case.events, f"{case.name} (chunk={'1' if index >= len(CASES) else 'whole'})"
        assert all(e["url"] == url for e in events if e["source"] == index)


def test_five_thousand_events_through_aborts_every_97(sse_server):
    url = sse_server.url("/stream?count=5000&abort_every=97&retry=5&size=32&nonce=cli5000")
    result = run("stream", url, "--format", "ndjson")
    assert result.returncode == 0, result.stderr
    records = ndjson(result.stdout)
    events = [r for r in records if r["type"] == "event"]
    assert [e["event_id"] for e in events] == [str(i) for i in range(1, 5001)]
    assert records[-1]["sources"][0]["reconnects"] == 5000 // 97
    assert records[-1]["total_events"] == 5000


def test_hundred_streams_in_one_command(sse_server):
    urls = [sse_server.url(f"/stream?count=30&size=16&n={i}") for i in range(100)]
    result = run("stream", *urls, "--format", "ndjson")
    assert result.returncode == 0, result.stderr
    records = ndjson(result.stdout)
    events = [r for r in records if r["type"] == "event"]
    assert len(events) == 3000
    assert [e["event_number"] for e in events] == list(range(1, 3001))
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert records[-1]["total_events"] == 3000


def _one_line_error(stderr: bytes) -> str:
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, stderr.decode()
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "query, exit_code, words",
    [
        ("/stream?status=404", 1, "HTTP 404"),
        ("/stream?content_type=text/html", 1, "wrong content type"),
        ("/stream?count=3&stall_after=1", 1, "no data for 0.3s"),
        ("/stream?line_forever=1", 1, "1024"),
    ],
)
def test_bad_streams_exit_1_with_one_line(sse_server, query, exit_code, words):
    result = run("stream", sse_server.url(query), "--format", "ndjson", "--idle-timeout", "0.3", "--retries", "0",
                 "--max-line-size", "1KiB", timeout=20)
    assert result.returncode == exit_code
    assert words in _one_line_error(result.stderr)
    records = ndjson(result.stdout)  # stdout holds only JSON lines
    assert records[-1]["type"] == "summary" and records[-1]["status"] == "failed"
    assert any(r["type"] == "error" and words in r["error"] for r in records)


def test_204_exits_0(sse_server):
    result = run("stream", sse_server.url("/stream?status=204"), "--format", "ndjson")
    assert result.returncode == 0
    assert ndjson(result.stdout)[-1]["total_events"] == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["stream", "not-a-url"], "bad URL"),
        (["stream", "http://127.0.0.1:9/x", "-H", "X-A: b\rc"], "CR, LF or NUL"),
        (["stream", "http://127.0.0.1:9/x", "--max-events", "0"], "--max-events"),
        (["stream", "http://127.0.0.1:9/x", "--json", "{nope"], "--json is not valid JSON"),
        (["stream", "http://127.0.0.1:9/x", "--reconnect", "sometimes"], "--reconnect"),
        (["stream"], "URL"),
    ],
)
def test_bad_usage_exits_2_with_one_line(args, words):
    result = run(*args, timeout=20)
    assert result.returncode == 2
    assert words in _one_line_error(result.stderr)
    assert result.stdout == b""


def test_bearer_token_on_401_never_printed(sse_server):
    token = "sk-top-secret-value-777"
    result = run("stream", sse_server.url("/stream?status=401"), "--bearer", token, "--format", "ndjson")
    assert result.returncode == 1
    assert token.encode() not in result.stdout + result.stderr
    assert "HTTP 401" in _one_line_error(result.stderr)
    for fmt in ("text", "pretty"):
        result = run("stream", sse_server.url("/stream?status=401"), "--bearer", token, "--format", fmt)
        assert token.encode() not in result.stdout + result.stderr


def test_stop_on_and_max_events(sse_server):
    url = raw_url(sse_server, b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n")
    records = ndjson(run("stream", url, "--stop-on", "[DONE]", "--format", "ndjson").stdout)
    assert [r["data"] for r in records if r["type"] == "event"] == ["1", "2"]
    assert records[-1]["stopped_by"] == "stop_on"
    records = ndjson(run("stream", sse_server.url("/stream?count=0"), "--max-events", "7", "--format", "ndjson").stdout)
    assert len(records) == 8 and records[-1]["stopped_by"] == "max_events"


def test_text_and_pretty_formats(sse_server):
    url = sse_server.url("/stream?count=3&size=5")
    text = run("stream", url, "--format", "text")
    assert text.returncode == 0
    assert len(text.stdout.decode().splitlines()) == 3
    assert "completed: 3 events" in text.stderr.decode()
    pretty = run("stream", url, url, "--format", "pretty")
    assert pretty.returncode == 0
    out = pretty.stdout.decode()
    assert "completed" in out and "id=3" in out


def test_pretty_shows_a_stream_dropping_and_resuming(sse_server):
    url = sse_server.url("/stream?count=6&abort_every=3&retry=5&tag=pretty")
    result = run("stream", url, "--format", "pretty")
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "connection cut mid-stream" in out and "reconnecting" in out
    assert "id=6" in out


def test_refused_connection_is_named(unused_port):
    result = run("stream", f"http://127.0.0.1:{unused_port}/x", "--retries", "0", "--format", "ndjson")
    assert result.returncode == 1
    assert "connection refused" in _one_line_error(result.stderr)



def test_urls_from_a_file_and_from_stdin(sse_server, tmp_path):
    urls = [sse_server.url(f"/stream?count=2&list={i}") for i in range(3)]
    listing = tmp_path / "urls.txt"
    listing.write_text("# three feeds\n" + "\n".join(urls[:2]) + "\n\n")
    result = run("stream", f"@{listing}", "@-", "--format", "ndjson", stdin=urls[2].encode())
    assert result.returncode == 0, result.stderr
    summary = ndjson(result.stdout)[-1]
    assert [s["url"] for s in summary["sources"]] == urls and summary["total_events"] == 6
    missing = run("stream", f"@{tmp_path / 'nope.txt'}")
    assert missing.returncode == 2 and "cannot read URL list" in _one_line_error(missing.stderr)
    both = run("stream", "@-", "-X", "POST", "-d", "@-", stdin=b"")
    assert both.returncode == 2 and "not both" in _one_line_error(both.stderr)


def test_post_body_from_stdin_and_headers(sse_server):
    result = run("stream", sse_server.url("/echo"), "-X", "POST", "-d", "@-", "-H", "X-One: 1", "--query", "a=b",
                 "--format", "ndjson", stdin="你好".encode())
    echoed = orjson.loads(ndjson(result.stdout)[0]["data"])
    assert echoed["method"] == "POST" and echoed["body"] == "你好"
    assert {k.lower(): v for k, v in echoed["headers"].items()}["x-one"] == "1"
    assert echoed["query"]["a"] == "b"


def test_demo_ends_by_itself_and_resumes():
    result = run("demo", "--format", "ndjson", timeout=40)
    assert result.returncode == 0, result.stderr
    records = ndjson(result.stdout)
    summary = records[-1]
    assert summary["status"] == "completed" and len(summary["sources"]) == 3
    assert summary["sources"][2]["reconnects"] >= 1
    ids = [int(r["event_id"]) for r in records if r["type"] == "event" and r["source"] == 2]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == summary["sources"][2]["events"]
