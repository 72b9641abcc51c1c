"""Secrets never appear in what the Dify tools send back (issue 8, class 3), under the real
plugin runtime (`python -m main`, gevent-patched): the hostile servers of test_secrets.py
quote every secret back, and a Dify-like app answers with an error event quoting the key."""

from __future__ import annotations

import orjson
import pytest

from loopback_apps import hostile_dify_app, serve
from test_dify_e2e import Invocation, plugin  # noqa: F401  (the module-scoped plugin process)
from test_secrets import COOKIE, MASK, QUERY, TOKEN, X_AUTH, hostile_urls, leaks, unused_port_module, urls_for  # noqa: F401


def all_text(call: Invocation) -> str:
    """The bytes on the wire, and the same messages decoded (JSON escapes undone)."""
    return call.raw.decode() + orjson.dumps(call.messages).decode()


@pytest.mark.parametrize("auth", [{"auth_type": "api_key", "auth_header": "X-Api-Key"}, {"auth_type": "bearer"}])
def test_sse_request_tool_shows_no_secret(plugin, hostile_urls, auth):  # noqa: F811
    base, _ = plugin
    urls = urls_for(hostile_urls, userinfo=auth["auth_type"] == "api_key")
    call = Invocation(base, "sse_request", {
        "url": "\n".join(urls), "auth_token": TOKEN, **auth, "retry_attempts": 0, "timeout": 10,
        "headers": orjson.dumps({"X-Auth-Token": X_AUTH, "Cookie": f"sid={COOKIE}"}).decode(),
        "query_params": orjson.dumps({"access_token": QUERY}).decode(),
    })
    assert len(call.errors) == 1, call.messages  # every source failed: the node's fail branch
    message = call.errors[0]["message"]
    assert "HTTP 401" in message and "wrong content type" in message and MASK in message
    assert leaks(all_text(call)) == []


def test_chatflow_tool_masks_the_key_an_app_quotes_back(plugin):  # noqa: F811
    base, _ = plugin
    with serve(hostile_dify_app()) as port:
        call = Invocation(base, "dify_chatflow_sse", {"api_base": f"http://127.0.0.1:{port}/v1", "api_key": TOKEN,
                                                      "query": "hello"})
    assert len(call.errors) == 1
    assert "invalid_key" in call.errors[0]["message"] and MASK in call.errors[0]["message"]
    assert leaks(all_text(call)) == []
