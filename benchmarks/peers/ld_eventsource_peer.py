"""Peer: launchdarkly-eventsource, the sync `ld_eventsource.SSEClient` (urllib3 underneath)."""

from ld_eventsource import SSEClient
from ld_eventsource.config import ErrorStrategy

from _ndjson import NdjsonWriter, args

url, limit = args()
out = NdjsonWriter(url)
client = SSEClient(url, error_strategy=ErrorStrategy.always_fail())
try:
    for event in client.events:  # ends when the server ends the stream (always_fail: no reconnect)
        out.write(event.event, event.data, event.last_event_id)
        if out.count == limit:
            break
finally:
    client.close()
out.close()
