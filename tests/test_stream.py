"""One source against the real built-in server: request headers, status classes, content
types, reconnect and resume, limits, the non-GET resume rule, secrets."""

from __future__ import annotations

import base64
import contextlib
import time

import orjson
import pytest

from fanin.errors import UsageError
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

FAST = dict(default_retry_ms=20, max_backoff=0.1)



async def collect(requests, config=None, **kw):
    fan = FanIn(requests if isinstance(requests, list) else [requests], config or StreamConfig(**FAST), **kw)
    items = []
    async with contextlib.aclosing(fan.stream()) as stream:
        async for item in stream:
            items.append(item)
    return [i for i in items if i.to_dict()["type"] == "event"], items, fan.summary


def raw_url(server, payload: bytes, chunk: int = 0, **extra) -> str:
    b64 = base64.urlsafe_b64encode(payload).decode()
    query = "&".join(f"{k}={v}" for k, v in extra.items())
    return server.url(f"/raw?b64={b64}&chunk={chunk}" + (f"&{query}" if query else ""))


async def test_sends_accept_and_cache_control_and_no_last_event_id_first(sse_server):
    events, _, summary = await collect(Request(sse_server.url("/echo")))
    assert summary.status == "completed"
    echoed = orjson.loads(events[0].data)
    headers = {k.lower(): v for k, v in echoed["headers"].items()}
    assert headers["accept"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert "last-event-id" not in headers


async def test_preset_last_event_id_is_sent(sse_server):
    events, _, _ = await collect(Request(sse_server.url("/echo")), StreamConfig(last_event_id="41", **FAST))
    headers = {k.lower(): v for k, v in orjson.loads(events[0].data)["headers"].items()}
    assert headers["last-event-id"] == "41"


async def test_post_json_body_and_auth_headers(sse_server):
    req = Request(sse_server.url("/echo"), method="POST", json={"q": "你好 🌍"}, auth_type="bearer",
                  auth_token="tok-123", headers={"X-Trace": "abc"})
    events, _, _ = await collect(req)
    echoed = orjson.loads(events[0].data)
    headers = {k.lower(): v for k, v in echoed["headers"].items()}
    assert echoed["method"] == "POST"
    assert orjson.loads(echoed["body"]) == {"q": "你好 🌍"}
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["content-type"].startswith("application/json")
    assert headers["x-trace"] == "abc"


async def test_api_key_header(sse_server):
    req = Request(sse_server.url("/echo"), auth_type="api_key", auth_token="k-999", auth_header="X-API-Key")
    events, _, _ = await collect(req)
    headers = {k.lower(): v for k, v in orjson.loads(events[0].data)["headers"].items()}
    assert headers["x-api-key"] == "k-999"


async def test_resume_across_aborts_loses_and_duplicates_nothing(fresh_server):
    url = fresh_server.url("/stream?count=500&abort_every=97&retry=10")
    events, _, summary = await collect(Request(url))
    assert [e.event_id for e in events] == [str(i) for i in range(1, 501)]
    assert summary.sources[0].reconnects == 5
    assert summary.status == "completed"
    sent = fresh_server.stats.last_event_ids
    assert [str(x) for x in sent][:5] == ["97", "194", "291", "388", "485"]


@pytest.mark.parametrize("status", [401, 403, 404, 410, 422])
async def test_client_errors_fail_at_once(sse_server, status):
    t0 = time.monotonic()
    events, items, summary = await collect(Request(sse_server.url(f"/stream?status={status}")))
    assert events == []
    assert summary.status == "failed"
    src = summary.sources[0]
    assert src.reconnects == 0
    assert src.error.startswith(f"HTTP {status}")
    assert items[-1].to_dict()["type"] == "error"
    assert time.monotonic() - t0 < 2


async def test_204_stops_cleanly_without_retry(sse_server):
    events, _, summary = await collect(Request(sse_server.url("/stream?status=204")))
    assert events == [] and summary.status == "completed" and summary.sources[0].reconnects == 0


@pytest.mark.parametrize("status", [201, 202, 299])
async def test_other_2xx_fail(sse_server, status):
    _, _, summary = await collect(Request(sse_server.url(f"/stream?status={status}")))
    assert summary.status == "failed"
    assert f"HTTP {status}" in summary.sources[0].error


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_retryable_statuses_are_retried_then_succeed(sse_server, status):
    url = sse_server.url(f"/stream?count=3&fail_first=2&status={status}&nonce=r{status}")
    events, _, summary = await collect(Request(url))
    assert [e.event_id for e in events] == ["1", "2", "3"]
    assert summary.sources[0].reconnects == 2
    assert summary.status == "completed"


async def test_retries_are_bounded(sse_server):
    url = sse_server.url("/stream?status=503")
    _, _, summary = await collect(Request(url), StreamConfig(retries=2, **FAST))
    src = summary.sources[0]
    assert summary.status == "failed"
    assert src.reconnects == 2
    assert "HTTP 503" in src.error and "gave up after 3 attempts" in src.error


async def test_connection_refused_is_retried_then_fails(unused_port):
    _, _, summary = await collect(Request(f"http://127.0.0.1:{unused_port}/x"), StreamConfig(retries=1, **FAST))
    assert summary.status == "failed"
    assert "cannot connect" in summary.sources[0].error
    assert summary.sources[0].reconnects == 1


@pytest.mark.parametrize("ctype", ["text/event-stream;", "Text/Event-Stream; charset=utf-8", " text/event-stream "])
async def test_content_type_essence_accepted(sse_server, ctype):
    from urllib.parse import quote

    events, _, summary = await collect(Request(sse_server.url(f"/stream?count=2&content_type={quote(ctype)}")))
    assert summary.status == "completed" and len(events) == 2


@pytest.mark.parametrize("ctype", ["text/html", "text/event-streams", "application/json", "text/x-bogus"])
async def test_wrong_content_type_fails_without_retry(sse_server, ctype):
    from urllib.parse import quote

    _, _, summary = await collect(Request(sse_server.url(f"/stream?count=2&content_type={quote(ctype)}")))
    assert summary.status == "failed"
    assert "wrong content type" in summary.sources[0].error
    assert summary.sources[0].reconnects == 0


async def test_redirect_is_followed(sse_server):
    from urllib.parse import quote

    events, _, summary = await collect(Request(sse_server.url("/redirect?to=" + quote("/stream?count=3"))))
    assert len(events) == 3 and summary.status == "completed"


async def test_idle_timeout_reconnects_and_resumes(fresh_server):
    url = fresh_server.url("/stream?count=6&stall_after=3")
    events, _, summary = await collect(Request(url), StreamConfig(idle_timeout=0.3, **FAST))
    assert [e.event_id for e in events] == ["1", "2", "3", "4", "5", "6"]
    assert summary.sources[0].reconnects == 1


async def test_idle_timeout_gives_up_after_retries(sse_server):
    url = sse_server.url("/stream?count=6&stall_after=0")
    _, _, summary = await collect(Request(url), StreamConfig(idle_timeout=0.2, retries=1, **FAST))
    assert summary.status == "failed"
    assert "no data for 0.2s" in summary.sources[0].error


async def test_line_size_limit_fails_fast(sse_server):
    t0 = time.monotonic()
    _, _, summary = await collect(Request(sse_server.url("/stream?line_forever=1")),
                                  StreamConfig(max_line_size=4096, **FAST))
    assert summary.status == "failed"
    assert "4096" in summary.sources[0].error
    assert summary.sources[0].reconnects == 0
    assert time.monotonic() - t0 < 5


async def test_stop_on_ends_the_source_and_does_not_emit_the_marker(sse_server):
    url = raw_url(sse_server, b"data: a\n\ndata: b\n\ndata: [DONE]\n\ndata: after\n\n")
    events, _, summary = await collect(Request(url), stop_on="[DONE]")
    assert [e.data for e in events] == ["a", "b"]
    assert summary.stopped_by == "stop_on" and summary.status == "completed"


async def test_post_without_ids_is_not_resent_after_events(fresh_server):
    url = fresh_server.url("/stream?count=10&abort_every=3&ids=0&retry=10")
    events, _, summary = await collect(Request(url, method="POST", body="prompt"))
    assert len(events) == 3
    assert summary.status == "failed"
    assert "not re-sending the POST request" in summary.sources[0].error
    assert fresh_server.stats.total_requests == 1


async def test_post_with_ids_resumes(fresh_server):
    url = fresh_server.url("/stream?count=10&abort_every=3&retry=10")
    events, _, summary = await collect(Request(url, method="POST", body="prompt"))
    assert [e.event_id for e in events] == [str(i) for i in range(1, 11)]
    assert summary.status == "completed"


async def test_reconnect_modes_on_clean_end(fresh_server):
    url = fresh_server.url("/stream?count=10&close_after=5&retry=10")
    events, _, _ = await collect(Request(url), StreamConfig(reconnect="error", **FAST))
    assert len(events) == 5
    events, _, _ = await collect(Request(url), StreamConfig(reconnect="never", **FAST))
    assert len(events) == 5
    events, _, summary = await collect(Request(url), StreamConfig(reconnect="always", retries=1, **FAST))
    assert [e.event_id for e in events] == [str(i) for i in range(1, 11)]
    assert summary.status == "completed"


async def test_reconnect_never_does_not_resume_after_abort(fresh_server):
    url = fresh_server.url("/stream?count=10&abort_every=4&retry=10")
    events, _, summary = await collect(Request(url), StreamConfig(reconnect="never", **FAST))
    assert len(events) == 4
    assert summary.status == "failed"


async def test_retry_field_sets_the_delay(fresh_server):
    url = fresh_server.url("/stream?count=4&abort_every=2&retry=300")
    t0 = time.monotonic()
    events, _, _ = await collect(Request(url), StreamConfig(default_retry_ms=10))
    assert len(events) == 4
    assert time.monotonic() - t0 >= 0.3  # one reconnect waited the server's 300 ms, not 10 ms


async def test_bearer_token_never_appears_in_errors(sse_server):
    secret = "sk-very-secret-token-42"
    url = sse_server.url("/stream?status=401")
    _, items, summary = await collect(Request(url, auth_type="bearer", auth_token=secret))
    blob = orjson.dumps([i.to_dict() for i in items] + [summary.to_dict()]).decode()
    assert secret not in blob
    assert "HTTP 401" in blob


async def test_credential_query_values_are_masked_in_output(sse_server):
    url = sse_server.url("/stream?count=1&token=abc123secret")
    events, _, summary = await collect(Request(url))
    assert "abc123secret" not in orjson.dumps([e.to_dict() for e in events] + [summary.to_dict()]).decode()
    assert "token=***" in events[0].url


@pytest.mark.parametrize(
    "request_kw, message",
    [
        (dict(url="not a url"), "bad URL"),
        (dict(url="ftp://example.com/x"), "bad URL"),
        (dict(url="http://127.0.0.1/x", headers={"X-A": "a\r\nInjected: 1"}), "CR, LF or NUL"),
        (dict(url="http://127.0.0.1/x", headers={"Bad Name": "a"}), "bad header name"),
        (dict(url="http://127.0.0.1/x", auth_type="bearer"), "needs a token"),
        (dict(url="http://127.0.0.1/x", auth_type="bearer", auth_token="x\ny"), "CR, LF or NUL"),
        (dict(url="http://127.0.0.1/x", auth_type="magic", auth_token="x"), "bad auth type"),
    ],
)
def test_bad_requests_are_rejected_with_one_line(request_kw, message):
    with pytest.raises(UsageError) as info:
        FanIn([Request(**request_kw)])
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "x\ny" not in text


@pytest.mark.parametrize(
    "config_kw, message",
    [
        (dict(reconnect="sometimes"), "bad reconnect mode"),
        (dict(connect_timeout=0), "connect-timeout"),
        (dict(idle_timeout=-1), "idle-timeout"),
        (dict(retries=-1), "retries"),
        (dict(max_line_size=1), "max-line-size"),
    ],
)
def test_bad_config_rejected(config_kw, message):
    with pytest.raises(UsageError) as info:
        FanIn([Request("http://127.0.0.1/x")], StreamConfig(**config_kw))
    assert message in str(info.value)


async def test_http_proxy_from_the_environment_is_used(monkeypatch):
    """HTTP_PROXY is honoured: the request goes to the proxy in absolute form."""
    import asyncio

    seen: list[bytes] = []

    async def proxy(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                     b"data: via proxy\n\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        events, _, summary = await collect(Request("http://example.invalid/feed"))
    finally:
        server.close()
    assert [e.data for e in events] == ["via proxy"]
    assert seen == [b"GET http://example.invalid/feed HTTP/1.1"]
    assert summary.status == "completed"
