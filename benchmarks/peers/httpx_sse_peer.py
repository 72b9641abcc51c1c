"""Peer: httpx-sse over a sync httpx client (its documented usage)."""

import httpx
from httpx_sse import connect_sse

from _ndjson import NdjsonWriter, args

url, limit = args()
out = NdjsonWriter(url)
with httpx.Client(timeout=None) as client, connect_sse(client, "GET", url) as source:
    for sse in source.iter_sse():
        out.write(sse.event, sse.data, sse.id)
        if out.count == limit:
            break
out.close()
