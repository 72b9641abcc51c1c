"""Out of file descriptors (hardening issue, round 3, class 6): 200 sources in a process
limited to 64 descriptors, against the built-in server on 127.0.0.1. A source that cannot
get a socket fails like any connection that could not be made (a network failure, retried
per --retries); nothing on that path may need a descriptor of its own (an import did: the
failure became an 'internal' one and --retries never applied)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import asyncio, contextlib, json, resource, sys
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

async def main(url):
    config = StreamConfig(retries=200, default_retry_ms=10, max_backoff=0.2)
    fan = FanIn([Request(f"{url}&s={i}") for i in range(200)], config)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # after the imports a healthy run needs, before any socket
    async with asyncio.timeout(120), contextlib.aclosing(fan.stream()) as items:
        events = len([i async for i in items if type(i).__name__ == "Event"])
    print(json.dumps({"events": events, "kinds": [s.kind for s in fan.summary.sources],
                      "statuses": [s.status for s in fan.summary.sources],
                      "reconnects": sum(s.reconnects for s in fan.summary.sources),
                      "errors": sorted({s.error for s in fan.summary.sources if s.error})[:3]}))

asyncio.run(main(sys.argv[1]))
"""


def test_two_hundred_sources_with_64_descriptors_retry_and_never_fail_internally(sse_server):
    result = subprocess.run([sys.executable, "-c", SCRIPT, sse_server.url("/stream?count=3&rate=50")],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert "internal" not in report["kinds"], report["errors"]
    assert set(report["kinds"]) <= {None, "network"}, report["errors"]
    assert report["reconnects"] > 0, "with 64 descriptors some sources had to wait for a socket: retried"
    completed = report["statuses"].count("completed")
    assert completed == 200, (completed, report["errors"])
    assert report["events"] == 3 * 200
