"""No failure is ever reported as success: an unexpected exception inside a source fails that
source with one line; setup errors leak nothing; requests and host names that cannot work
are refused up front with one line (CLI exit 2); what still fails at run time exits 1."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from fanin.errors import UsageError
from fanin.events import Event, SourceError
from fanin.merge import FanIn, make_session
from fanin.stream import Request, StreamConfig, StreamObserver

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(default_retry_ms=20, max_backoff=0.1)


async def drain(fan):
    items = []
    async with contextlib.aclosing(fan.stream()) as stream:
        async for item in stream:
            items.append(item)
    return items


class RaisingObserver(StreamObserver):
    def __init__(self, hook: str) -> None:
        self.hook = hook

    def _maybe_raise(self, hook: str) -> None:
        if hook == self.hook:
            raise ValueError(f"observer broke in {hook}\nsecond line of the message")

    def on_connect(self, source, connect_ns):
        self._maybe_raise("on_connect")

    def on_bytes(self, source, n):
        self._maybe_raise("on_bytes")

    def on_end(self, source, status):
        self._maybe_raise("on_end")


@pytest.mark.parametrize("hook", ["on_connect", "on_bytes", "on_end"])
async def test_an_exception_inside_a_source_fails_it_with_one_line(sse_server, hook):
    fan = FanIn([Request(sse_server.url("/stream?count=3"))], StreamConfig(**FAST), observer=RaisingObserver(hook))
    items = await drain(fan)
    summary = fan.summary
    assert summary.status == "failed"
    source = summary.sources[0]
    assert source.status == "failed"
    assert "ValueError" in source.error and f"observer broke in {hook}" in source.error
    assert "\n" not in source.error
    errors = [i for i in items if isinstance(i, SourceError)]
    assert len(errors) == 1 and errors[0].error == source.error


async def test_a_failing_source_does_not_stop_the_others(sse_server):
    class BreaksSourceOne(StreamObserver):
        def on_bytes(self, source, n):
            if source == 1:
                raise RuntimeError("only source 1 breaks")

    urls = [sse_server.url("/stream?count=5&s=a"), sse_server.url("/stream?count=5&s=b")]
    fan = FanIn([Request(u) for u in urls], StreamConfig(**FAST), observer=BreaksSourceOne())
    items = await drain(fan)
    assert len([i for i in items if isinstance(i, Event) and i.source == 0]) == 5
    assert fan.summary.status == "partial"
    assert [s.status for s in fan.summary.sources] == ["completed", "failed"]


async def test_setup_error_closes_the_session(sse_server):
    sessions = []

    def factory():
        sessions.append(make_session())
        return sessions[-1]

    fan = FanIn([Request(sse_server.url("/echo"), method="POST", json={"ok": 1})], connector_factory=factory)
    fan.requests[0].json = {1, 2}  # changed after validation: the stream cannot be set up
    with pytest.raises(UsageError) as info:
        await drain(fan)
    assert "JSON body" in str(info.value) and "\n" not in str(info.value)
    assert len(sessions) == 1 and sessions[0].closed
    assert fan.summary is None  # no run happened, so no summary claims one did


@pytest.mark.parametrize("body", [{1, 2}, {"when": object()}, [float("nan"), b"bytes"], {"big": 2**70}])
def test_a_json_body_that_cannot_be_serialised_is_refused(body):
    with pytest.raises(UsageError) as info:
        FanIn([Request("http://127.0.0.1/x", method="POST", json=body)])
    assert "JSON body" in str(info.value) and "\n" not in str(info.value)


LONG_LABEL = "a" * 64
LONG_NAME = ".".join(["a" * 60] * 5) + ".com"  # 309 characters, every label valid
assert len(LONG_NAME) > 253


@pytest.mark.parametrize("host, reason", [
    ("a..b", "empty label"),
    (".a.b", "empty label"),
    (f"{LONG_LABEL}.com", "longer than 63"),
    ("xn--zz", "punycode"),
    ("ok.xn--zz.com", "punycode"),
    (LONG_NAME, "longer than 253"),
    ("ex ample.com", "host name contains ' '"),   # once retried for 5 s; now refused before any connect
    ("ex%20ample.com", "host name contains '%'"),
    ("a<b.com", "host name contains '<'"),
])
def test_host_names_that_cannot_be_valid_are_refused(host, reason):
    with pytest.raises(UsageError) as info:
        Request(f"http://{host}/x").validate()
    text = str(info.value)
    assert reason in text and "\n" not in text


@pytest.mark.parametrize("host", [
    "127.0.0.1:8080", "[::1]:8080", "my_service.internal", "a.b.", "例え.jp", "xn--r8jz45g.jp",
    "a" * 63 + ".com", ".".join(["a" * 62] * 4),  # a 63-character label, a 251-character name
])
def test_valid_host_names_are_accepted(host):
    Request(f"http://{host}/x").validate()


def _cli(*args: str, namespace: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    command = [sys.executable, *args]
    if namespace:  # a network namespace that has only loopback: nothing can leave the machine
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    return subprocess.run(command, capture_output=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.parametrize("url", ["http://a..b/x", f"http://{LONG_LABEL}.com/", "http://xn--zz/", f"http://{LONG_NAME}/",
                                 "http://ex ample.com/"])
def test_cli_refuses_an_impossible_host_with_exit_2(url):
    result = _cli("-m", "fanin", "stream", url, "--format", "ndjson", namespace=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fanin: error: bad URL"), lines
    assert result.stdout == b""


@pytest.mark.parametrize("target", ["http://a..b/x", f"http://{LONG_LABEL}.com/"])
def test_cli_fails_a_source_whose_redirect_host_cannot_be_encoded(tmp_path, target):
    """A redirect to a host that cannot be encoded: the source fails (exit 1, one line),
    never 'completed' with 0 events, never a traceback. Run in a loopback-only namespace."""
    script = tmp_path / "redirect_then_fanin.py"
    script.write_text(textwrap.dedent(f"""
        import sys, threading, asyncio
        from aiohttp import web
        from fanin.cli.main import main

        async def redirect(request):
            raise web.HTTPFound({target!r})

        ready = threading.Event()
        port = []

        def serve():
            async def start():
                app = web.Application()
                app.router.add_get("/", redirect)
                runner = web.AppRunner(app)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port.append(site._server.sockets[0].getsockname()[1])
                ready.set()
                await asyncio.Event().wait()
            asyncio.run(start())

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)
        sys.exit(main(["stream", f"http://127.0.0.1:{{port[0]}}/", "--format", "ndjson", "--retries", "0"]))
    """))
    result = _cli(str(script), namespace=True)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["status"] == "failed"
    source = summary["sources"][0]
    assert source["status"] == "failed" and source["error"] and "\n" not in source["error"]
