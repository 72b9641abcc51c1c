"""Fan-in peer: asyncio.gather over aiohttp-sse-client EventSources on one session. It
reconnects after a stream ends (like a browser), so each stops after its known count."""

import asyncio

import aiohttp
from aiohttp_sse_client import client as sse_client

from _fanin_ndjson import FanInWriter, read_urls


async def one(session: aiohttp.ClientSession, source: int, url: str, limit: int, out: FanInWriter) -> None:
    seen = 0
    async with sse_client.EventSource(url, session=session) as events:
        async for event in events:
            out.write(source, url, event.type, event.data, event.last_event_id)
            seen += 1
            if seen == limit:
                break


async def main() -> None:
    urls, limit = read_urls()
    out = FanInWriter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        await asyncio.gather(*(one(session, i, u, limit, out) for i, u in enumerate(urls)))
    out.close()


asyncio.run(main())
