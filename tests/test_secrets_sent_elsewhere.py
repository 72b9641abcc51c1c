"""Secrets that do not travel in the URL's query or our headers (issue 19, class 8).

- A token in the URL's fragment (`#access_token=...`): never sent, but the URL is quoted in
  every event record and error line.
- Credential-like fields of the body we sent: a loopback server answers 400 echoing the
  request body, JSON and form-encoded.
- The proxy's credentials: HTTP_PROXY carries `user:password@`, aiohttp (trust_env) sends them
  as `Proxy-Authorization: Basic ...`, and a loopback "proxy" answers 407 echoing the whole
  request head, for a plain http:// target and for a CONNECT tunnel; likewise a netrc entry,
  which aiohttp sends on its own once trust_env is on.

None of them, in any form, may appear in what `fanin stream` (ndjson and text) or the Dify
`sse_request` tool print.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import orjson
import pytest
from aiohttp import web

from fanin.embed.netguard import AddressGuard
from fanin.redact import MASK, redact_url
from fanin.stream import Request
from loopback_apps import serve, serve_raw
from tools.sse_core import ToolFailure, plan_sse_request, run_sse_request

ROOT = Path(__file__).resolve().parent.parent

FRAGMENT_TOKEN = "fragTok9x8Y7" + "/+=~z6W5" * 3
PASSWORD = "bodyPwd3K4L5" + "\"\\/+ &=q1" * 2
NESTED_TOKEN = "nestTok6M7N8" + "/+=a2" * 3
API_KEY_NUMBER = 918273645546372
FORM_SECRET = "formSec2P3Q4" + "/+ &=%b5" * 2
PROXY_USER = "proxuser"
PROXY_PASSWORD = "proxPwd7R8S9" + "/+=:@c3" * 3
NETRC_PASSWORD = "netrcPw1T2U3" + "xyz" * 4


def forms(secret: str, user: str | None = None) -> set[str]:
    found = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret), secret[:12],
             orjson.dumps(secret).decode()[1:-1]}
    if user is not None:
        pair = f"{user}:{secret}"
        found |= {pair, base64.b64encode(pair.encode()).decode(), base64.b64encode(pair.encode("latin-1")).decode()}
    return found


FORBIDDEN = (forms(FRAGMENT_TOKEN) | forms(PASSWORD) | forms(NESTED_TOKEN) | {str(API_KEY_NUMBER)}
             | forms(FORM_SECRET) | forms(PROXY_PASSWORD, PROXY_USER) | forms(NETRC_PASSWORD, "nuser"))
JSON_BODY = {"user": "ann", "password": PASSWORD, "auth": {"scopes": ["read"], "token": NESTED_TOKEN},
             "api_key": API_KEY_NUMBER, "max_tokens": 64}
FORM_BODY = f"user=ann&client_secret={quote_plus(FORM_SECRET)}&n=3"


def leaks(text: str) -> list[str]:
    return sorted(f for f in FORBIDDEN if f in text)


async def _reject(request: web.Request) -> web.Response:
    """400, echoing the body as received (and once more as it decodes)."""
    raw = await request.read()
    return web.Response(status=400, text="bad request: " + raw.decode("utf-8", "replace")
                        + " decoded: " + repr(dict(await request.post()) if request.content_type.endswith(
                            "x-www-form-urlencoded") else ""))


async def _events(request: web.Request) -> web.Response:
    return web.Response(body=b"data: one\n\ndata: two\n\n", content_type="text/event-stream")


def _proxy_407(head: bytes) -> bytes:
    """A proxy refusing the request, quoting its head back (Proxy-Authorization included), and
    what a Basic credential in it decodes to."""
    decoded = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"proxy-authorization", b"authorization") and b"Basic" in value:
            decoded += b" decoded: " + base64.b64decode(value.split()[-1])
    body = b"proxy says no to: " + head.replace(b"\r\n", b" | ") + decoded
    return (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


@pytest.fixture(scope="module")
def origin():
    app = web.Application()
    app.router.add_post("/reject", _reject)
    app.router.add_get("/events", _events)
    app.router.add_get("/bad", _reject)
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def proxy_port():
    with serve_raw(_proxy_407) as port:
        yield port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "NETRC"}
    return dict(env, PYTHONPATH=str(ROOT), **extra)


def fanin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fanin", "stream", *args, "--retries", "0", "--timeout", "10"],
                          capture_output=True, timeout=60, env=env or clean_env(NO_PROXY="*"), cwd=ROOT)


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout.decode() + result.stderr.decode()


# ------------------------------------------------------------------------------ the boundary
def test_the_boundary_masks_fragments_body_fields_and_proxy_credentials(monkeypatch):
    assert redact_url(f"http://h/p?a=1#access_token={FRAGMENT_TOKEN}") == f"http://h/p?a=1#{MASK}"
    assert redact_url("http://h/p#") == "http://h/p#"
    monkeypatch.setenv("HTTP_PROXY", f"http://{PROXY_USER}:{quote(PROXY_PASSWORD, safe='')}@127.0.0.1:3128")
    request = Request(url=f"http://h/p#access_token={quote(FRAGMENT_TOKEN, safe='')}&state=abc", method="POST",
                      json=JSON_BODY)
    echoed = (f"{request.url} {orjson.dumps(JSON_BODY).decode()} {JSON_BODY!r} Proxy-Authorization: Basic "
              + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode())
    scrubbed = request.secrets.scrub(echoed)
    assert leaks(scrubbed) == [] and '"max_tokens":64' in scrubbed and '"user":"ann"' in scrubbed
    form = Request(url="http://h/p", method="POST", body=FORM_BODY).secrets.scrub(f"got {FORM_BODY} ({FORM_SECRET})")
    assert leaks(form) == [] and "n=3" in form
    deep: dict = {"password": PASSWORD}
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = {"x": [deep]}
    assert Request(url="http://h/p", json=deep).secrets.scrub(PASSWORD) == MASK


# ------------------------------------------------------------------------------ fragments
def test_a_fragment_token_never_shows_in_records_text_or_error_lines(origin):
    fragment = f"#access_token={quote(FRAGMENT_TOKEN, safe='')}&token_type=bearer"
    ndjson = fanin(f"{origin}/events{fragment}", f"{origin}/bad{fragment}", "--format", "ndjson")
    records = [orjson.loads(line) for line in ndjson.stdout.splitlines()]
    events = [r for r in records if r["type"] == "event"]
    assert len(events) == 2 and all(e["url"].endswith(f"/events#{MASK}") for e in events)
    assert records[-1]["sources"][1]["error"].startswith("HTTP 400")
    assert f"/bad#{MASK}" in ndjson.stderr.decode()
    text = fanin(f"{origin}/events{fragment}", f"{origin}/bad{fragment}", "--format", "text")
    assert "[0] one" in text.stdout.decode() and f"/bad#{MASK}" in text.stderr.decode()
    for result in (ndjson, text):
        assert result.returncode == 1 and leaks(output_of(result)) == []


def test_the_dify_tool_masks_a_fragment_token(origin):
    fragment = f"#access_token={quote(FRAGMENT_TOKEN, safe='')}"
    plan = plan_sse_request({"url": f"{origin}/events{fragment}\n{origin}/bad{fragment}", "retry_attempts": 0,
                             "output_mode": "ndjson"})
    outputs = list(run_sse_request(plan, guard=AddressGuard()))
    variables = {o[1]: o[2] for o in outputs if o[0] == "variable"}
    assert variables["total_events"] == 2 and "HTTP 400" in variables["error"]
    assert leaks(orjson.dumps(outputs, default=str).decode()) == []


# ------------------------------------------------------------------------------ bodies
@pytest.mark.parametrize("body", ["json", "form"])
def test_a_400_echoing_the_body_shows_no_credential_field(origin, body):
    flags = ["--json", orjson.dumps(JSON_BODY).decode()] if body == "json" else ["-d", FORM_BODY, "-H",
                                                                                 "Content-Type: application/x-www-form-urlencoded"]
    result = fanin(f"{origin}/reject", "-X", "POST", *flags, "--format", "ndjson")
    error = orjson.loads(result.stdout.splitlines()[-1])["sources"][0]["error"]
    assert result.returncode == 1 and error.startswith("HTTP 400") and MASK in error, error
    assert ("ann" in error) and leaks(output_of(result)) == [], error


def test_the_dify_tool_masks_credential_fields_of_its_body(origin):
    for body in (orjson.dumps(JSON_BODY).decode(), FORM_BODY):
        plan = plan_sse_request({"url": f"{origin}/reject", "method": "POST", "body": body, "retry_attempts": 0,
                                 "headers": "" if body.startswith("{") else
                                 "Content-Type: application/x-www-form-urlencoded"})
        with pytest.raises(ToolFailure) as info:
            list(run_sse_request(plan, guard=AddressGuard()))
        message = str(info.value)
        assert "HTTP 400" in message and MASK in message and leaks(message) == [], message


# ------------------------------------------------------------------------------ proxies
def proxy_env(port: int, tmp_path: Path, *, encoded: bool = True, netrc: bool = False) -> dict[str, str]:
    password = quote(PROXY_PASSWORD, safe="") if encoded else PROXY_PASSWORD.replace("@", "%40").replace("/", "%2F")
    extra = {"HTTP_PROXY": f"http://{PROXY_USER}:{password}@127.0.0.1:{port}",
             "HTTPS_PROXY": f"http://{PROXY_USER}:{password}@127.0.0.1:{port}"}
    if netrc:  # no userinfo: aiohttp takes the proxy's and the target's credentials from netrc
        path = tmp_path / "netrc"
        path.write_text(f"machine 127.0.0.1 login nuser password {NETRC_PASSWORD}\n")
        path.chmod(0o600)
        extra = {"HTTP_PROXY": f"http://127.0.0.1:{port}", "HTTPS_PROXY": f"http://127.0.0.1:{port}",
                 "NETRC": str(path)}
    return clean_env(**extra)


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("credentials", ["userinfo", "netrc"])
def test_a_407_echoing_proxy_authorization_shows_no_proxy_credential(proxy_port, tmp_path, scheme, credentials):
    env = proxy_env(proxy_port, tmp_path, netrc=credentials == "netrc")
    result = fanin(f"{scheme}://127.0.0.1:9/stream", "--format", "ndjson", env=env)
    error = orjson.loads(result.stdout.splitlines()[-1])["sources"][0]["error"]
    assert result.returncode == 1 and "407" in error, output_of(result)
    if scheme == "http":  # the 407 body quotes the head: Proxy-Authorization (and netrc's Authorization)
        assert "Proxy-Authorization: Basic ***" in error or "Proxy-Authorization: ***" in error, error
    assert leaks(output_of(result)) == [], error


def test_the_dify_tool_masks_proxy_credentials(proxy_port, tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.lower().endswith("_proxy") or k == "NETRC"]:
        monkeypatch.delenv(name)
    for name, value in proxy_env(proxy_port, tmp_path).items():
        if name.endswith("_PROXY"):
            monkeypatch.setenv(name, value)
    plan = plan_sse_request({"url": "http://127.0.0.1:9/stream", "retry_attempts": 0})
    with pytest.raises(ToolFailure) as info:
        list(run_sse_request(plan, guard=AddressGuard()))
    message = str(info.value)
    assert "HTTP 407" in message and "Proxy-Authorization" in message and leaks(message) == [], message
