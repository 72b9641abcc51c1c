"""Fan-in peer: one thread per stream, each with a launchdarkly-eventsource SSEClient."""

import threading

from ld_eventsource import SSEClient
from ld_eventsource.config import ErrorStrategy

from _fanin_ndjson import FanInWriter, read_urls


def one(source: int, url: str, out: FanInWriter) -> None:
    client = SSEClient(url, error_strategy=ErrorStrategy.always_fail())
    try:
        for event in client.events:  # ends with the stream (always_fail: no reconnect)
            with out.lock:
                out.write(source, url, event.event, event.data, event.last_event_id)
    finally:
        client.close()


urls, _ = read_urls()
out = FanInWriter()
threads = [threading.Thread(target=one, args=(i, u, out)) for i, u in enumerate(urls)]
for t in threads:
    t.start()
for t in threads:
    t.join()
out.close()
