"""Reconnect decisions against real servers on 127.0.0.1: a floor under the delay (no hot
loop on `retry: 0`), Retry-After as seconds or as an HTTP date, and a non-idempotent
request (POST) never re-sent when its bytes may have reached the server."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import time

import pytest
from aiohttp import web

from fanin.decision import RECONNECT_MODES, Decision, Outcome, Reason, Verdict, decide
from fanin.events import Event
from fanin.merge import FanIn
from fanin.retry import MIN_DELAY, ReconnectPolicy
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=20, max_backoff=0.1)


async def collect(requests, config=None, **kw):
    fan = FanIn(requests if isinstance(requests, list) else [requests], config or StreamConfig(**FAST), **kw)
    items = []
    async with asyncio.timeout(30):
        async with contextlib.aclosing(fan.stream()) as stream:
            async for item in stream:
                items.append(item)
    return [i for i in items if isinstance(i, Event)], fan.summary


@contextlib.asynccontextmanager
async def app_server(handler, method="*"):
    """A small aiohttp app of the test's own on 127.0.0.1; yields its base URL."""
    app = web.Application()
    app.router.add_route(method, "/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    finally:
        await runner.cleanup()


async def sse(request: web.Request, body: bytes = b"data: ok\n\n") -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(body)
    return resp


# ---------------------------------------------------------------------------- the floor

async def test_retry_zero_in_always_mode_is_not_a_hot_loop(fresh_server):
    # One event per connection, no ids, `retry: 0`, a clean end each time: `always`
    # reconnects forever, and without a floor it does so as fast as the server answers.
    url = fresh_server.url("/stream?count=1&ids=0&retry=0")
    events, summary = await collect(Request(url), StreamConfig(reconnect="always", default_retry_ms=0),
                                    max_duration=1)
    assert summary.stopped_by == "max_duration"
    requests = fresh_server.stats.total_requests
    assert 2 <= requests <= 1 / MIN_DELAY + 5, requests
    assert len(events) == requests or len(events) == requests - 1


def test_backoff_grows_from_the_floor_when_the_server_asks_for_zero():
    policy = ReconnectPolicy(retries=10, default_retry_ms=0, max_backoff=30)
    policy.server_retry_ms = 0
    delays = []
    for failures in range(1, 6):
        policy.failures = failures
        delays.append(policy.wait_for(None))
    assert all(d >= MIN_DELAY for d in delays)
    assert max(delays) > MIN_DELAY, "consecutive failures back off even from retry: 0"


# ---------------------------------------------------------------------------- Retry-After

@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured_in_both_forms(form):
    seen: list[float] = []

    async def handler(request):
        seen.append(time.monotonic())
        if len(seen) == 1:
            value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
            return web.Response(status=503, headers={"Retry-After": value}, text="busy")
        return await sse(request)

    async with app_server(handler) as url:
        events, summary = await collect(Request(url))
    assert [e.data for e in events] == ["ok"] and summary.status == "completed"
    # "1" is one second; an HTTP date has whole seconds, so "now + 2 s" is at least one away.
    assert seen[1] - seen[0] >= 0.9, seen


async def test_a_retry_after_date_in_the_past_means_now():
    seen: list[float] = []

    async def handler(request):
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.Response(status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        return await sse(request)

    async with app_server(handler) as url:
        events, summary = await collect(Request(url))
    assert summary.status == "completed" and seen[1] - seen[0] < 5


# ---------------------------------------------------------------------------- POST rule

@pytest.mark.parametrize("status", [500, 502, 504])
async def test_post_is_not_resent_after_a_5xx(status):
    calls = []

    async def handler(request):
        calls.append(await request.read())
        return web.Response(status=status, text="app crashed after starting the run")

    async with app_server(handler) as url:
        events, summary = await collect(Request(url, method="POST", json={"q": "run once"}))
    assert len(calls) == 1, "the app may have run: a second POST could run it twice"
    assert summary.status == "failed"
    error = summary.sources[0].error
    assert f"HTTP {status}" in error and "not re-sending the POST" in error


async def test_post_is_not_resent_after_a_response_timeout():
    calls = []

    async def handler(request):
        calls.append(await request.read())
        await asyncio.sleep(1)  # the request arrived; the answer is slow (connect_timeout is 0.3 s)
        return await sse(request)

    async with app_server(handler) as url:
        events, summary = await collect(Request(url, method="POST", json={"q": "run once"}),
                                        StreamConfig(connect_timeout=0.3, **FAST))
    assert len(calls) == 1
    assert summary.status == "failed" and "not re-sending the POST" in summary.sources[0].error


async def test_post_is_not_resent_after_an_idle_stream_without_events():
    calls = []

    async def handler(request):
        calls.append(await request.read())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(1)  # headers sent, then silence past the 0.3 s idle timeout
        return resp

    async with app_server(handler) as url:
        _, summary = await collect(Request(url, method="POST", body="x"), StreamConfig(idle_timeout=0.3, **FAST))
    assert len(calls) == 1 and summary.status == "failed"


@pytest.mark.parametrize("status, retry_after", [(429, None), (503, "0"), (408, None)])
async def test_post_is_resent_when_the_server_said_it_did_not_process_it(status, retry_after):
    calls = []

    async def handler(request):
        calls.append(await request.read())
        if len(calls) == 1:
            return web.Response(status=status, headers={"Retry-After": retry_after} if retry_after else None)
        return await sse(request)

    async with app_server(handler) as url:
        events, summary = await collect(Request(url, method="POST", json={"q": 1}))
    assert len(calls) == 2 and [e.data for e in events] == ["ok"] and summary.status == "completed"


async def test_post_503_without_retry_after_is_not_resent():
    calls = []

    async def handler(request):
        calls.append(1)
        return web.Response(status=503)

    async with app_server(handler) as url:
        _, summary = await collect(Request(url, method="POST", body="x"))
    assert len(calls) == 1 and summary.status == "failed"


async def test_post_is_retried_after_a_refused_connection(unused_port):
    _, summary = await collect(Request(f"http://127.0.0.1:{unused_port}/", method="POST", body="x"),
                               StreamConfig(retries=2, **FAST))
    assert summary.sources[0].reconnects == 2, "nothing was sent, so trying again is safe"
    assert "cannot connect" in summary.sources[0].error


async def test_get_is_still_retried_after_a_5xx():
    calls = []

    async def handler(request):
        calls.append(1)
        if len(calls) == 1:
            return web.Response(status=500)
        return await sse(request)

    async with app_server(handler) as url:
        events, summary = await collect(Request(url))
    assert len(calls) == 2 and summary.status == "completed"


# ---------------------------------------------------------------------------- the decision table
# Every rule of `fanin.decision.decide`, as a table read top to bottom (first match wins),
# like h11's state table; ANY matches every value. The test walks every combination of
# outcome x method x delivered x has_ids x mode, so no case is left to chance.

ANY = object()
R, F, D = Verdict.RETRY, Verdict.FAIL, Verdict.DONE
#        outcome            idempotent  delivered  has_ids  mode      -> verdict, reason
RULES = [
    (Outcome.FATAL,     ANY,   ANY,   ANY,   ANY,      F, Reason.NONE),
    (Outcome.STOPPED,   ANY,   ANY,   ANY,   ANY,      D, Reason.NONE),
    (Outcome.NOT_SENT,  ANY,   ANY,   ANY,   ANY,      R, Reason.NONE),   # nothing reached the server
    (Outcome.DECLINED,  ANY,   ANY,   ANY,   ANY,      R, Reason.NONE),   # 408, 429, 503 + Retry-After
    (Outcome.NO_ANSWER, True,  ANY,   ANY,   ANY,      R, Reason.NONE),
    (Outcome.NO_ANSWER, False, ANY,   True,  ANY,      R, Reason.NONE),   # resumes by id
    (Outcome.NO_ANSWER, False, ANY,   False, ANY,      F, Reason.MAY_HAVE_ACTED),
    (Outcome.CUT,       False, True,  False, ANY,      F, Reason.NO_EVENT_IDS),
    (Outcome.CUT,       ANY,   ANY,   ANY,   "never",  F, Reason.NEVER),
    (Outcome.CUT,       True,  ANY,   ANY,   ANY,      R, Reason.NONE),
    (Outcome.CUT,       False, ANY,   True,  ANY,      R, Reason.NONE),
    (Outcome.CUT,       False, False, False, ANY,      F, Reason.MAY_HAVE_ACTED),
    (Outcome.END,       True,  ANY,   ANY,   "always", R, Reason.NONE),
    (Outcome.END,       False, ANY,   True,  "always", R, Reason.NONE),
    (Outcome.END,       ANY,   ANY,   ANY,   ANY,      D, Reason.NONE),
]


def _expected(outcome, idempotent, delivered, has_ids, mode):
    for rule in RULES:
        if all(want is ANY or want == got for want, got in zip(rule[:5], (outcome, idempotent, delivered, has_ids, mode),
                                                                strict=True)):
            return Decision(rule[5], rule[6])
    raise AssertionError(f"no rule for {(outcome, idempotent, delivered, has_ids, mode)}")


COMBINATIONS = list(itertools.product(Outcome, (True, False), (True, False), (True, False), RECONNECT_MODES))


def test_the_table_covers_every_combination():
    assert len(COMBINATIONS) == len(Outcome) * 2 * 2 * 2 * 3
    for combination in COMBINATIONS:
        _expected(*combination)  # raises when a combination has no rule


@pytest.mark.parametrize("outcome, idempotent, delivered, has_ids, mode", COMBINATIONS)
def test_decide_follows_the_table(outcome, idempotent, delivered, has_ids, mode):
    got = decide(outcome, idempotent=idempotent, delivered=delivered, has_ids=has_ids, mode=mode)
    assert got == _expected(outcome, idempotent, delivered, has_ids, mode)


def test_every_rule_is_reachable():
    used = {next(i for i, rule in enumerate(RULES) if all(
        want is ANY or want == got for want, got in zip(rule[:5], combination, strict=True))) for combination in COMBINATIONS}
    assert used == set(range(len(RULES))), "a rule no combination reaches is dead text"


def test_a_failing_source_imports_nothing_while_it_fails(sse_server, unused_port):
    """No import on a failure path: with the file descriptors used up, an import cannot
    open its file, and the failure became an 'internal' one (hardening issue, class 6).
    Every module a failing source needs is loaded before its first connection."""
    import subprocess
    import sys

    script = (
        "import sys, asyncio, contextlib, json\n"
        "from fanin.merge import FanIn\n"
        "from fanin.stream import Request, StreamConfig\n"
        "async def main(urls):\n"
        "    fan = FanIn([Request(u) for u in urls], StreamConfig(retries=1, default_retry_ms=10, max_backoff=0.05))\n"
        "    before = set(sys.modules)\n"
        "    async with contextlib.aclosing(fan.stream()) as items:\n"
        "        n = len([i async for i in items if type(i).__name__ == 'Event'])\n"
        "    late = sorted(set(sys.modules) - before)\n"
        "    print(json.dumps([n, [s.reconnects for s in fan.summary.sources], [s.kind for s in fan.summary.sources], late]))\n"
        "asyncio.run(main(sys.argv[1:]))\n"
    )
    urls = [sse_server.url("/stream?count=3&status=503"), sse_server.url("/stream?count=3&status=503&retry_after=0"),
            sse_server.url("/stream?count=3&status=404"), f"http://127.0.0.1:{unused_port}/"]
    failing = subprocess.run([sys.executable, "-c", script, *urls], capture_output=True, text=True, timeout=60)
    assert failing.returncode == 0, failing.stderr
    count, reconnects, kinds, late = json.loads(failing.stdout)
    assert count == 0 and reconnects == [1, 1, 0, 1], failing.stdout
    assert kinds == ["http_5xx", "http_5xx", "http_4xx", "refused"], failing.stdout
    assert late == [], f"imported on the failure path: {late}"
