"""The body excerpt of a 4xx error line (the front-door issue): it adds what the status line
does not say, never repeats it, never pastes an HTML page, and is decoded when the body is
compressed. Real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gzip

from aiohttp import web

from fanin.error_body import shown_excerpt
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

PAGE = ("<!DOCTYPE html><html><head><title>403 Forbidden</title><style>body { color: red }</style>"
        "<script>var secret_sauce = 1;</script></head><body><h1>Access denied</h1>"
        "<p>Your key &amp; its scope do not cover this model.</p>" + "<div>filler</div>" * 400 + "</body></html>")


@contextlib.asynccontextmanager
async def server(handler):
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def error_of(handler) -> tuple[str, str]:
    async with server(handler) as url:
        fan = FanIn([Request(url)], StreamConfig(retries=0))
        async with asyncio.timeout(30), contextlib.aclosing(fan.stream()) as items:
            async for _ in items:
                pass
    assert fan.summary is not None
    report = fan.summary.sources[0]
    assert report.status == "failed" and report.kind == "http_4xx"
    return url, report.error or ""


async def test_a_body_that_only_repeats_the_status_is_not_shown():
    async def handler(request):
        raise web.HTTPNotFound()  # aiohttp's own body: "404: Not Found"

    url, error = await error_of(handler)
    assert error == f"HTTP 404 Not Found from {url}"


async def test_an_html_error_page_is_reduced_to_its_text():
    async def handler(request):
        return web.Response(status=403, text=PAGE, content_type="text/html")

    url, error = await error_of(handler)
    assert error.startswith(f"HTTP 403 Forbidden from {url}: ")
    assert "Access denied" in error and "Your key & its scope" in error
    assert "<" not in error and "secret_sauce" not in error and "color: red" not in error
    assert len(error) < len(url) + 400 and "\n" not in error


async def test_a_compressed_error_body_is_decoded():
    async def handler(request):
        body = gzip.compress(b'{"code": "invalid_param", "message": "model gpt-x does not exist"}')
        return web.Response(status=400, body=body, headers={"Content-Encoding": "gzip",
                                                             "Content-Type": "application/json"})

    _, error = await error_of(handler)
    assert "model gpt-x does not exist" in error


def test_an_html_page_without_text_is_named_not_pasted():
    shown = shown_excerpt("<html><body><script>x()</script></body></html>", status=401, reason="Unauthorized",
                          content_type="text/html", size=47)
    assert shown == "(HTML error page, 47 bytes)"


def test_a_plain_text_explanation_is_kept_and_bounded():
    shown = shown_excerpt("quota exceeded for project p1 " * 40, status=403, reason="Forbidden")
    assert shown.startswith("quota exceeded for project p1") and len(shown) == 303 and shown.endswith("...")


def test_character_references_in_a_page_are_decoded():
    from fanin.error_body import unescape

    assert unescape("Tom &amp; Jerry &#39;&#x27; &lt;b&gt; &unknown; &#0;") == "Tom & Jerry '' <b> &unknown; \ufffd"
