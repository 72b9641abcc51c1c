"""The fan-in floor: every stream read on a plain asyncio connection (one GET each) and
every received byte copied to stdout. No parsing, no JSON."""

import asyncio
import sys
from urllib.parse import urlsplit

from _fanin_ndjson import read_urls


async def one(url: str, out) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    target = parts.path + ("?" + parts.query if parts.query else "")
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
                 "Connection: close\r\n\r\n".encode())
    while chunk := await reader.read(65536):
        out.write(chunk)
    writer.close()


async def main() -> None:
    urls, _ = read_urls()
    out = sys.stdout.buffer
    await asyncio.gather(*(one(u, out) for u in urls))
    out.flush()


asyncio.run(main())
