"""Locust doing what `fanin load --mode requests` does, for benchmarks/request_ceiling.py:
plain `HttpUser`s, each posting a streaming chat completion and reading its SSE lines with a
small line reader, noting for every token the delay from the server's send stamp
(`fanin_sent_ns`) to its arrival here, and counting tokens. Samples start after a warm-up.

Run by request_ceiling.py as
    locust -f locust_requests.py --headless -u U -r U -t 6s --host http://127.0.0.1:PORT
with PEER_PATH (path and query), PEER_WARMUP_S and PEER_RESULT (a JSON file to write)."""

from __future__ import annotations

import os
import time

import orjson
from hdrh.histogram import HdrHistogram
from locust import HttpUser, constant, events, task

PATH = os.environ.get("PEER_PATH", "/v1/chat/completions")
BASES = os.environ.get("PEER_BASES", "").split()  # several servers: users spread over them, as fanin's URLs
WARMUP_S = float(os.environ.get("PEER_WARMUP_S", "1"))
BODY = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
HEADERS = {"Content-Type": "application/json"}

STATE = {"start": time.monotonic(), "tokens": 0, "requests": 0, "failed": 0, "users": 0, "cpu0": None}
LATENCY = HdrHistogram(1, 3_600_000_000, 3)  # microseconds, as fanin's


def sse_data_lines(response):
    """The `data:` payloads of an SSE response, one per line (enough for one-line events)."""
    for line in response.iter_lines(chunk_size=None):
        if line.startswith(b"data:"):
            yield line[5:].lstrip(b" ")


class ChatUser(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.url = (BASES[STATE["users"] % len(BASES)] + PATH) if BASES else PATH
        STATE["users"] += 1

    @task
    def chat(self) -> None:
        measured = time.monotonic() - STATE["start"] >= WARMUP_S
        if measured and STATE["cpu0"] is None:
            STATE["cpu0"] = (time.process_time(), STATE["tokens"])
        tokens = 0
        with self.client.post(self.url, data=BODY, headers=HEADERS, stream=True, catch_response=True,
                              name="chat") as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                STATE["failed"] += measured
                return
            for data in sse_data_lines(response):
                if data == b"[DONE]":
                    break
                chunk = orjson.loads(data)
                choices = chunk.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    tokens += 1
                    sent = chunk.get("fanin_sent_ns")
                    if measured and sent:
                        LATENCY.record_value(max(1, (time.time_ns() - sent) // 1000))
            response.success()
        if measured:
            STATE["tokens"] += tokens
            STATE["requests"] += 1


@events.test_start.add_listener
def _start(environment, **kwargs) -> None:
    STATE["start"] = time.monotonic()


@events.test_stop.add_listener
def _stop(environment, **kwargs) -> None:
    measured_s = max(time.monotonic() - STATE["start"] - WARMUP_S, 1e-9)
    result = {
        "requests": STATE["requests"],
        "failed": STATE["failed"],
        "tokens": STATE["tokens"],
        "tokens_per_s": STATE["tokens"] / measured_s,
        "latency_ms": {f"p{p}": LATENCY.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)},
        "latency_count": LATENCY.get_total_count(),
        "cpu_us_per_token": (time.process_time() - STATE["cpu0"][0]) * 1e6 / STATE["tokens"]
        if STATE["cpu0"] and STATE["tokens"] else None,
    }
    with open(os.environ["PEER_RESULT"], "wb") as f:
        f.write(orjson.dumps(result))
