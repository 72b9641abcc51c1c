"""Credentials never cross an origin (issue 8, class 2).

Two loopback servers on different ports are two origins. Each echoes, as one SSE event, the
headers it received. A redirect from A to B must arrive at B without any credential the user
gave (bearer, API-key header, auth-like headers, cookies, userinfo); a redirect within A keeps
them; once dropped they stay dropped, even when the chain comes back to A.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from fanin.embed.bridge import get_bridge
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig
from loopback_apps import echo_app, serve

ROOT = Path(__file__).resolve().parent.parent
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-auth-token", "cookie", "proxy-authorization")


@pytest.fixture(scope="module")
def origins():
    with serve(echo_app("A")) as a, serve(echo_app("B")) as b:
        yield f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"


def via(start: str, *hops: str, status: int = 302) -> str:
    """A URL on `start` that redirects through `hops` (each a URL) in turn."""
    url = hops[-1]
    for hop in reversed((start,) + hops[:-1]):
        url = f"{hop}/to?status={status}&url={quote(url, safe='')}"
    return url


def seen_by_servers(requests: list[Request]) -> list[dict]:
    fan = FanIn(requests, StreamConfig(retries=0))
    items = list(get_bridge().iterate(fan.stream))
    assert fan.summary.status == "completed", [s.error for s in fan.summary.sources]
    return [orjson.loads(e.data) for e in sorted(items, key=lambda e: e.source)]


def credentials_in(seen: dict) -> set[str]:
    return {name.lower() for name in seen["headers"]} & set(CREDENTIAL_HEADERS)


def test_cross_origin_hop_drops_every_credential_same_origin_keeps_them(origins):
    a, b = origins
    headers = {"X-Auth-Token": "xat-123456", "Cookie": "sid=cookie-123456", "Proxy-Authorization": "Basic cHJveHk6cHc=",
               "X-Trace": "kept-everywhere"}
    def request(url: str, **auth) -> Request:
        return Request(url=url, headers=dict(headers), **auth)

    seen = seen_by_servers([
        request(via(a, f"{b}/echo"), auth_type="bearer", auth_token="bearer-123456"),
        request(via(a, f"{a}/echo"), auth_type="bearer", auth_token="bearer-123456"),
        request(via(a, f"{b}/echo"), auth_type="api_key", auth_token="key-123456", auth_header="X-Api-Key"),
        request(via(a, f"{a}/echo"), auth_type="api_key", auth_token="key-123456", auth_header="X-Api-Key"),
        request(via(a, f"{b}/to?url={quote(a + '/echo', safe='')}")),  # A -> B -> A: dropped for good
        request(via(a, f"{b}/echo".replace("127.0.0.1", "localhost"))),  # same port, other host
    ])
    cross, same, cross_key, same_key, back, other_host = seen
    assert cross["server"] == "B" and credentials_in(cross) == set()
    assert same["server"] == "A" and credentials_in(same) == {"authorization", "x-auth-token", "cookie",
                                                              "proxy-authorization"}
    assert same["headers"]["Authorization"] == "Bearer bearer-123456"
    assert cross_key["server"] == "B" and credentials_in(cross_key) == set()
    assert same_key["headers"]["X-Api-Key"] == "key-123456"
    assert back["server"] == "A" and credentials_in(back) == set()
    assert other_host["server"] == "B" and credentials_in(other_host) == set()
    for record in seen:  # what is not a credential travels on
        assert record["headers"]["X-Trace"] == "kept-everywhere"
        assert record["headers"]["Accept"] == "text/event-stream"


def test_userinfo_is_sent_as_basic_to_its_origin_only(origins):
    a, b = origins
    with_user = a.replace("http://", "http://alice:s3cret-pw@")
    same, cross = seen_by_servers([Request(url=via(with_user, f"{a}/echo")), Request(url=via(with_user, f"{b}/echo"))])
    assert same["headers"]["Authorization"] == "Basic YWxpY2U6czNjcmV0LXB3"  # alice:s3cret-pw
    assert credentials_in(cross) == set()


def test_a_location_with_userinfo_sends_nothing(origins):
    """A server cannot make us send credentials it chose either."""
    a, b = origins
    (seen,) = seen_by_servers([Request(url=via(a, b.replace("http://", "http://mallory:pw@") + "/echo"))])
    assert seen["server"] == "B" and credentials_in(seen) == set()


def test_method_and_body_follow_the_status(origins):
    a, _ = origins
    body = b'{"q": 1}'
    kept, changed = seen_by_servers([
        Request(url=via(a, f"{a}/echo", status=307), method="POST", body=body),
        Request(url=via(a, f"{a}/echo", status=303), method="POST", body=body),
    ])
    assert kept["method"] == "POST" and kept["body"] == body.decode()
    assert changed["method"] == "GET" and changed["body"] == ""


def test_too_many_redirects_fail_with_one_line(origins):
    a, _ = origins
    url = via(a, *([a] * 11), f"{a}/echo")  # 12 redirects; 10 are followed
    fan = FanIn([Request(url=url, auth_type="bearer", auth_token="loop-token-123")], StreamConfig(retries=0))
    list(get_bridge().iterate(fan.stream))
    error = fan.summary.sources[0].error
    assert fan.summary.status == "failed" and "too many redirects" in error and "loop-token-123" not in error
    (seen,) = seen_by_servers([Request(url=via(a, *([a] * 9), f"{a}/echo"))])  # 10 redirects are followed
    assert seen["server"] == "A"


def test_fanin_stream_drops_credentials_across_origins(origins):
    """The same through the command line, with -H headers, --bearer and a cookie."""
    a, b = origins
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    result = subprocess.run(
        [sys.executable, "-m", "fanin", "stream", via(a, f"{b}/echo"), via(a, f"{a}/echo"), "--bearer", "cli-bearer-1",
         "-H", "X-Auth-Token: cli-xat-1", "-H", "Cookie: sid=cli-cookie-1", "--format", "ndjson", "--retries", "0"],
        capture_output=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    events = sorted((orjson.loads(line) for line in result.stdout.splitlines()[:-1]), key=lambda e: e["source"])
    cross, same = (orjson.loads(e["data"]) for e in events)
    assert cross["server"] == "B" and credentials_in(cross) == set()
    assert same["server"] == "A" and credentials_in(same) == {"authorization", "x-auth-token", "cookie"}
