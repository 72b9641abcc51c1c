"""Issue 11's starvation, under the REAL plugin runtime (`python -m main`, serverless,
gevent-patched): while one `sse_request` invocation reads a stream as fast as a server
can send, a second, paced invocation started a second later must reach its server at
once, get its events live and finish within about a second of its time alone. Before
the bridge gave the hub turns, the second one did not start until the first had ended."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

from tests.serverproc import server_process
from tests.test_dify_e2e import Invocation, plugin  # noqa: F401  (the plugin fixture)

PACED = "/stream?count=20&rate=10&ts=1"  # 20 events, 100 ms apart


def paced_run(base: str, url: str) -> tuple[Invocation, list[float], list[float]]:
    """The invocation, each text message's time since the POST, and each event's
    lateness (arrival at this test minus the server's `ts` stamp)."""
    run = Invocation(base, "sse_request", {"url": url, "max_events": 100})
    offsets, lateness = [], []
    for message, arrived in zip(run.messages, run.times):
        data = message["data"]
        if data["type"] != "stream" or data["data"]["type"] != "text":
            continue
        offsets.append(arrived - run.started)
        wall_arrived = time.time() - (time.monotonic() - arrived)
        for line in data["data"]["message"]["text"].splitlines():
            lateness.append(wall_arrived - json.loads(line)["ts"])
    return run, offsets, lateness


def drain_fast(base: str, server: str, into: dict) -> None:
    """The fast invocation, read as fast as possible (bytes counted, not kept). Events of
    1 KiB, so the tool's cap of 1,000,000 events is not reached while the paced one runs."""
    body = {"event": "request", "session_id": str(uuid.uuid4()),
            "data": {"type": "tool", "action": "invoke_tool", "user_id": "user-e2e", "provider": "sse_fanin",
                     "tool": "sse_request", "credentials": {},
                     "tool_parameters": {"url": server + "/stream?count=0&size=1024", "max_events": 1_000_000,
                                         "max_duration": 60, "retry_attempts": 0, "reconnect": "never"}}}
    request = urllib.request.Request(base + "/invoke", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    into["bytes"] = 0
    with urllib.request.urlopen(request, timeout=60) as response:
        while chunk := response.read1(1 << 20):
            into["bytes"] += len(chunk)
            into["last"] = time.monotonic()


def test_a_paced_invocation_stays_live_beside_a_fast_one(plugin):  # noqa: F811
    base, _ = plugin
    with server_process() as fast_server, server_process() as paced_server:
        alone, _, _ = paced_run(base, paced_server + PACED)
        alone_seconds = alone.times[-1] - alone.started
        assert alone.variables["total_events"] == 20

        fast: dict = {}
        thread = threading.Thread(target=drain_fast, args=(base, fast_server, fast))
        thread.start()
        time.sleep(1.0)
        busy, offsets, lateness = paced_run(base, paced_server + PACED)
        busy_seconds = busy.times[-1] - busy.started
    # leaving the block stopped the fast server: the fast invocation ends with an error
    thread.join(60)
    assert not thread.is_alive()
    assert fast["last"] > busy.times[-1]  # it was still streaming throughout
    assert fast["bytes"] > 1_000_000

    assert busy.variables["total_events"] == 20 and busy.variables["status"] == "completed"
    assert len(lateness) == 20
    assert offsets[0] < 1.0, offsets  # it reached its server at once (first event at ~0.1 s)
    lateness.sort()
    assert lateness[int(0.9 * len(lateness))] < 0.5, lateness  # live, not held back
    assert busy_seconds < alone_seconds + 1.5, (busy_seconds, alone_seconds)
