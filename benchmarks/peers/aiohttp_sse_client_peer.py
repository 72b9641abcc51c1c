"""Peer: aiohttp-sse-client's EventSource. It reconnects after the stream ends (like a browser),
so it stops after the expected number of events (the benchmark passes it)."""

import asyncio

import aiohttp
from aiohttp_sse_client import client as sse_client

from _ndjson import NdjsonWriter, args


async def main() -> None:
    url, limit = args()
    out = NdjsonWriter(url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async with sse_client.EventSource(url, session=session) as source:
            async for event in source:
                out.write(event.type, event.data, event.last_event_id)
                if out.count == limit:
                    break
    out.close()


asyncio.run(main())
