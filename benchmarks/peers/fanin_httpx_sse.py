"""Fan-in peer: asyncio.gather over httpx-sse streams on one httpx.AsyncClient."""

import asyncio

import httpx
from httpx_sse import aconnect_sse

from _fanin_ndjson import FanInWriter, read_urls


async def one(client: httpx.AsyncClient, source: int, url: str, out: FanInWriter) -> None:
    async with aconnect_sse(client, "GET", url) as events:
        async for sse in events.aiter_sse():
            out.write(source, url, sse.event, sse.data, sse.id)


async def main() -> None:
    urls, _ = read_urls()
    out = FanInWriter()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        await asyncio.gather(*(one(client, i, u, out) for i, u in enumerate(urls)))
    out.close()


asyncio.run(main())
