"""Memory is bounded in bytes by the limits (hardening issue, class 4).

A hostile loopback server sends events made of endless short `data: ab` lines (never a
blank line), plain and gzip-encoded. A client in a subprocess reads them with the engine
and reports its peak Python allocations (tracemalloc), so one stream must cost about
`max_line_size`, and with the process-wide budget on, eight such streams at once must
stay near the budget and fail with a clear error. Bounds are generous: the point is the
order of magnitude (the per-line list overhead used to cost ~17x the limit).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
LIMIT = 2 * MIB
LINE = b"data: ab\n"
PLAIN_BODY = LINE * (LIMIT // 2)  # one event whose data (3 bytes a line) is 1.5 times the limit
GZIP_BODY = gzip.compress(LINE * (16 * LIMIT // len(LINE)), 9)  # ~64 MiB of lines in well under 1 MiB


async def _lines(request: web.Request) -> web.StreamResponse:
    packed = request.query.get("gzip") == "1"
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    if packed:
        resp.headers["Content-Encoding"] = "gzip"
    await resp.prepare(request)
    body = GZIP_BODY if packed else PLAIN_BODY
    try:
        for offset in range(0, len(body), 65536):
            await resp.write(body[offset: offset + 65536])
    except (ConnectionError, RuntimeError):
        pass  # the client gave up, as it should
    return resp


@pytest.fixture(scope="module")
def hostile_server():
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/lines", _lines)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


CLIENT = r"""
import asyncio, json, sys
from fanin import budget
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

urls, limit, budget_bytes = json.loads(sys.argv[1])
if budget_bytes:
    budget.set_process_budget(budget_bytes)

async def main():
    fan = FanIn([Request(url=u) for u in urls], StreamConfig(max_line_size=limit, retries=0))
    events = 0
    async for batch in fan.stream_batches():
        events += sum(len(getattr(b, "messages", ())) for b in batch)
    return fan.summary, events

def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM): a forked child starts with its parent's
base = status_kib("VmRSS")  # imports done: what follows is the streams' own memory
summary, events = asyncio.run(main())
peak = (status_kib("VmHWM") - base) * 1024
print(json.dumps({"peak": peak, "events": events, "status": summary.status,
                  "errors": [s.error for s in summary.sources],
                  "budget_used": budget.process_budget().used if budget_bytes else 0}))
"""


def run_client(urls: list[str], budget_bytes: int = 0) -> dict:
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps([urls, LIMIT, budget_bytes])],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("packed", ["0", "1"], ids=["plain", "gzip"])
def test_one_event_of_short_data_lines_costs_about_the_limit(hostile_server, packed):
    result = run_client([f"{hostile_server}/lines?gzip={packed}"])
    assert result["status"] == "failed" and result["events"] == 0, result
    assert f"SSE event data longer than the limit of {LIMIT} bytes" in result["errors"][0]
    print(f"peak {result['peak'] / MIB:.1f} MiB")
    assert result["peak"] < 4 * LIMIT, f"peak {result['peak'] / MIB:.1f} MiB for a {LIMIT // MIB} MiB limit"


def test_process_budget_bounds_eight_hostile_streams_together(hostile_server):
    budget_bytes = 4 * MIB
    urls = [f"{hostile_server}/lines?gzip=0" for _ in range(8)]  # plain: they grow side by side
    result = run_client(urls, budget_bytes)
    assert result["status"] == "failed"
    budget_errors = [e for e in result["errors"] if "over its limit of 4 MiB" in e]
    assert budget_errors, result["errors"]
    assert all("\n" not in e for e in result["errors"])
    assert result["budget_used"] == 0  # every stream gave its bytes back when it ended
    # Without the budget these eight streams peak near 19 MiB here (about 8 x 2 MiB held at
    # once), and near 8 x 34 MiB before the per-line overhead was bounded.
    print(f"peak {result['peak'] / MIB:.1f} MiB")
    assert result["peak"] < budget_bytes + 4 * LIMIT, f"peak {result['peak'] / MIB:.1f} MiB"


def test_budget_refuses_over_limit_and_gives_back():
    from fanin.budget import ByteBudget
    from fanin.parser import EventTooLargeError, SSEParser

    shared = ByteBudget(1000)
    first, second = SSEParser(budget=shared), SSEParser(budget=shared)
    first.feed(b"data: " + b"x" * 600 + b"\n")
    assert 600 <= shared.used < 1000
    with pytest.raises(EventTooLargeError, match="over its limit"):
        second.feed(b"data: " + b"y" * 600 + b"\n")
    assert [m.data for m in first.feed(b"\n")] == ["x" * 600]  # dispatch frees its bytes
    assert shared.used == 0
    second.new_connection()
    assert [m.data for m in second.feed(b"data: " + b"y" * 600 + b"\n\n")] == ["y" * 600]
    assert shared.used == 0


def test_the_plugin_entry_point_switches_the_process_budget_on():
    """main.py switches it on explicitly; importing a tool module changes nothing."""
    probe = "from fanin.budget import process_budget; b = process_budget(); print(b and b.limit)"
    tools_only = subprocess.run([sys.executable, "-c", "import tools.sse_core, tools.chatflow_core; " + probe],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert tools_only.returncode == 0 and tools_only.stdout.strip() == "None", tools_only.stderr[-1000:]
    proc = subprocess.run([sys.executable, "-c", "import main; " + probe], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert int(proc.stdout.strip().splitlines()[-1]) >= 16 * MIB
