"""The floor for benchmarks/request_ceiling.py: the least a client can do for the same job.
U asyncio users each post the chat completion over a bare socket, scan the bytes for the
server's `"fanin_sent_ns":` stamps (no SSE or JSON parsing, no HTTP library) and note the
delivery latency. What it measures is the machine (loopback, scheduling), not a client.

    python raw_requests_floor.py URL[,URL...] USERS SECONDS WARMUP_S RESULT.json"""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import urlsplit

import orjson
from hdrh.histogram import HdrHistogram

STAMP = b'"fanin_sent_ns":'
BODY = b'{"model": "m", "stream": true}'


async def user(url: str, stop_at: float, warm_at: float, hist: HdrHistogram, counts: dict) -> None:
    parts = urlsplit(url)
    target = (parts.path + ("?" + parts.query if parts.query else "")).encode()
    request = (b"POST " + target + b" HTTP/1.1\r\nHost: " + parts.netloc.encode()
               + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode()
               + b"\r\n\r\n" + BODY)
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(request)
        measured = loop.time() >= warm_at
        tail = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            now = time.time_ns()
            data = tail + chunk
            start = 0
            while True:
                at = data.find(STAMP, start)
                if at < 0:
                    break
                end = data.find(b"}", at)
                if end < 0:
                    break
                if measured:
                    hist.record_value(max(1, (now - int(data[at + len(STAMP):end])) // 1000))
                    counts["tokens"] += 1
                start = end
            tail = data[start:][-64:]
            if b"data: [DONE]" in data:
                break
        writer.close()
        if measured:
            counts["requests"] += 1


async def main() -> None:
    urls, users, seconds, warmup, out = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), \
        float(sys.argv[4]), sys.argv[5]
    loop = asyncio.get_running_loop()
    start = loop.time()
    hist = HdrHistogram(1, 3_600_000_000, 3)
    counts = {"tokens": 0, "requests": 0}

    async def mark_cpu() -> None:
        await asyncio.sleep(warmup)
        counts["cpu0"] = time.process_time()

    marker = asyncio.create_task(mark_cpu())
    await asyncio.gather(*(user(urls[i % len(urls)], start + warmup + seconds, start + warmup, hist, counts)
                           for i in range(users)))
    measured_s = max(loop.time() - start - warmup, 1e-9)
    result = {"tokens_per_s": counts["tokens"] / measured_s, "requests": counts["requests"], "failed": 0,
              "latency_ms": {f"p{p}": hist.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)},
              "latency_count": hist.get_total_count(),
              "cpu_us_per_token": (time.process_time() - counts["cpu0"]) * 1e6 / counts["tokens"]
              if marker.done() and counts["tokens"] else None}
    with open(out, "wb") as f:
        f.write(orjson.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
