"""Peer: sseclient-py over a urllib3 streaming response (the pattern its README shows)."""

import sseclient
import urllib3

from _ndjson import NdjsonWriter, args

url, limit = args()
out = NdjsonWriter(url)
http = urllib3.PoolManager()
response = http.request("GET", url, preload_content=False, headers={"Accept": "text/event-stream"})
for event in sseclient.SSEClient(response).events():
    out.write(event.event, event.data, event.id)
    if out.count == limit:
        break
response.release_conn()
out.close()
