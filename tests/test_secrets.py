"""Secrets never appear in any text we produce (issue 8, class 3).

A hostile loopback server sends back every secret it received: in a 401 body (padded so the
excerpt's cut falls inside a long token), in a reason phrase, in a Content-Type header, in a
redirect Location, in an unparsable Location, and in a status line aiohttp cannot parse (whose
exception quotes the request URL). Every form of every secret we sent (the token, an
auth-like header, a cookie, `--query` and URL credentials, userinfo and its Basic form,
percent-encoded spellings, and the first characters of each) must be absent from everything
`fanin stream` and `fanin load --json` print. The Dify tools are driven the same way in
test_secrets_dify.py.
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

from fanin.errors import UsageError
from fanin.redact import MASK, Secrets, is_secret_name, redact_url
from fanin.stream import Request
from loopback_apps import HOSTILE_PATHS, garbled_status, hostile_app, serve, serve_raw

ROOT = Path(__file__).resolve().parent.parent

# Each secret starts with 12 plain characters (a leak of its first part shows as is) and goes
# on with characters that percent-encoding, `+` for space and base64 all spell differently.
TOKEN = "tokA1b2C3d4E" + "/+=&~ f5G6h7" * 20
X_AUTH = "xauB7c8D9e0F" + "/+=~g1H2" * 4
COOKIE = "cooC3d4E5f6G" + "+/=h7I8" * 3
QUERY = "qryD5e6F7g8H" + "/+ &=i9J0" * 3
URL_KEY = "urlE7f8G9h0I" + "/+ &=k1L2" * 3
USER = "alice"
PASSWORD = "pwdF9g0H1i2J" + "/+:@k3L4" * 3
SECRETS = (TOKEN, X_AUTH, COOKIE, QUERY, URL_KEY, PASSWORD)


BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}


FULL_FORMS = set().union(*map(forms, SECRETS)) | {BASIC}
# In output, not even a secret's first characters may show (a cut must never leave them).
FORBIDDEN = FULL_FORMS | {s[:12] for s in SECRETS} | {BASIC[:16]}


def leaks(text: str) -> list[str]:
    return sorted(f for f in FORBIDDEN if f in text)


def hostile_url(port: int, path: str, *, userinfo: bool) -> str:
    auth = f"{USER}:{quote(PASSWORD, safe='')}@" if userinfo else ""
    return f"http://{auth}127.0.0.1:{port}{path}?api_key={quote(URL_KEY, safe='')}&n=1"


@pytest.fixture(scope="module")
def hostile_urls(unused_port_module):
    """Every hostile endpoint, plus a server whose status line aiohttp cannot parse."""
    with serve(hostile_app(unused_port_module)) as port, serve_raw(garbled_status) as raw_port:
        yield [port] * len(HOSTILE_PATHS) + [raw_port], list(HOSTILE_PATHS) + ["/garbled"]


@pytest.fixture(scope="module")
def unused_port_module():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def urls_for(hostile_urls, *, userinfo: bool) -> list[str]:
    ports, paths = hostile_urls
    return [hostile_url(port, path, userinfo=userinfo) for port, path in zip(ports, paths)]


# Two ways to send credentials: an API key in a custom header with userinfo (sent as Basic),
# and a bearer token (userinfo then yields to the explicit Authorization header).
VARIANTS = {
    "api_key+userinfo": (["--api-key", TOKEN, "--api-key-header", "X-Api-Key"], True),
    "bearer": (["--bearer", TOKEN], False),
}
COMMON = ["-H", f"X-Auth-Token: {X_AUTH}", "-H", f"Cookie: sid={COOKIE}", "--query", f"access_token={QUERY}"]


def fanin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
    return subprocess.run([sys.executable, "-m", "fanin", *args], capture_output=True, timeout=timeout,
                          env=env, cwd=ROOT)


# ----------------------------------------------------------------------------- the boundary itself
def test_every_form_of_every_secret_is_masked():
    request = Request(url=hostile_url(1, "/x", userinfo=True), headers={"X-Auth-Token": X_AUTH,
                      "Cookie": f"sid={COOKIE}; theme=dark"}, params=[("access_token", QUERY), ("page", "2")],
                      auth_type="bearer", auth_token=TOKEN)
    secrets = request.secrets
    text = " | ".join(sorted(FULL_FORMS)) + f" Bearer {TOKEN} page=2"
    scrubbed = secrets.scrub(text)
    assert leaks(scrubbed) == []
    assert "page=2" in scrubbed and MASK in scrubbed  # every cookie value counts as secret: "dark" too
    assert secrets.scrub(TOKEN.lower()) == MASK  # servers echo percent-escapes in either case
    assert Secrets().scrub("nothing to hide") == "nothing to hide"


def test_display_url_masks_userinfo_and_credential_query_values():
    shown = Request(url=hostile_url(8, "/x", userinfo=True), params=[("access_token", QUERY)]).display_url
    assert leaks(shown) == [] and f"{USER}:{MASK}@" in shown and "api_key=***" in shown and "n=1" in shown
    assert redact_url("https://tok123456@host/x") == "https://***@host/x"  # a lone user name is a token


def test_token_counts_are_not_credentials():
    """LLM APIs' max_tokens and friends are counts: a load report shows them as given."""
    assert redact_url("http://h/v1?max_tokens=16&max_new_tokens=8&access_token=abc123") == \
        "http://h/v1?max_tokens=16&max_new_tokens=8&access_token=***"
    assert is_secret_name("X-Auth-Token") and is_secret_name("token") and not is_secret_name("max_tokens")


def test_a_url_too_broken_to_parse_is_still_masked():
    request = Request(url=f"http://{USER}:{quote(PASSWORD, safe='')}@[::1/x?api_key={quote(URL_KEY, safe='')}",
                      params=[("access_token", QUERY)])
    with pytest.raises(UsageError) as info:
        request.validate()
    assert "bad URL" in str(info.value) and leaks(str(info.value)) == []


def test_cli_masks_auth_like_header_names_as_the_plugin_does():
    """The CLI and the tools share the engine's rule: X-Auth-Token, X-Api-Key, Cookie, ... are secret."""
    for name in ("X-Auth-Token", "X-Api-Key", "Cookie", "Proxy-Authorization", "X-Session-Id", "X-Signature"):
        request = Request(url="http://127.0.0.1/x", headers={name: "value-that-is-secret"})
        assert request.secrets.scrub("said value-that-is-secret") == f"said {MASK}", name
        assert request.is_credential(name)
    assert not Request(url="http://127.0.0.1/x").is_credential("X-Trace-Id")


# ----------------------------------------------------------------------------- hostile servers
@pytest.mark.parametrize("variant", VARIANTS)
def test_fanin_stream_prints_no_secret(hostile_urls, variant):
    flags, userinfo = VARIANTS[variant]
    urls = urls_for(hostile_urls, userinfo=userinfo)
    result = fanin("stream", *urls, *flags, *COMMON, "--format", "ndjson", "--retries", "0", "--timeout", "10")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1, err
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    summary = records[-1]
    assert summary["status"] == "failed" and all(s["status"] == "failed" for s in summary["sources"])
    errors = {s["source"]: s["error"] for s in summary["sources"]}
    # Each hostile place was reached and quoted (masked), so the test is not vacuous.
    assert "HTTP 401" in errors[0] and MASK in errors[0] and len(errors[0]) < 600
    assert "HTTP 401" in errors[1] and MASK in errors[1]
    assert "wrong content type" in errors[3] and MASK in errors[3]
    assert "cannot connect to" in errors[4] and "redirected from" in errors[4] and MASK in errors[4]
    assert "bad redirect Location" in errors[5] and MASK in errors[5]
    assert "ClientResponseError" in errors[6] and MASK in errors[6]
    assert all("\n" not in e for e in errors.values())
    assert leaks(out) == [] and leaks(err) == []
    assert "Traceback" not in err


@pytest.mark.parametrize("variant", VARIANTS)
def test_fanin_load_json_prints_no_secret(hostile_urls, variant):
    flags, userinfo = VARIANTS[variant]
    urls = urls_for(hostile_urls, userinfo=userinfo)
    result = fanin("load", *urls, *flags, *COMMON, "-c", str(len(urls)), "-d", "1s", "--retries", "0",
                   "--timeout", "10s", "--json", "-", "--no-progress")
    out, err = result.stdout.decode(), result.stderr.decode()
    report = orjson.loads(result.stdout)
    assert result.returncode == 1
    examples = report["errors"]["examples"]
    assert {"http_4xx", "content_type", "redirect"} <= set(examples), examples
    assert any(MASK in e for e in examples.values())
    assert all(MASK in t for t in report["targets"])
    assert leaks(out) == [] and leaks(err) == []
    assert "Traceback" not in err


def test_excerpt_is_scrubbed_before_it_is_cut(hostile_urls):
    """The 401 body puts a 252-character token across the 300-character cut (and, with 4-byte
    characters, across the bytes a naive excerpt reads): not one character of it may show."""
    ports, paths = hostile_urls
    for path in ("/body", "/wide"):
        url = f"http://127.0.0.1:{ports[0]}{path}"
        result = fanin("stream", url, "--bearer", TOKEN, "--retries", "0", "--format", "ndjson")
        error = orjson.loads(result.stdout.splitlines()[-1])["sources"][0]["error"]
        assert result.returncode == 1
        assert error.endswith("...") and MASK in error[-30:], error  # the token sat across the cut
        assert TOKEN[:4] not in error and leaks(error) == [], error
