"""`fanin load --html FILE`: one self-contained page, rendered by a real headless Chromium
(Debian's package; `.ci/run` installs it). The screenshot lands in tests/artifacts/ (git-
ignored); the rendered DOM must hold the charts, with axes labelled and units; Chromium's own
network log must show no request made by the page. The browser's own background requests
(Google's time and sign-in services) are sent to a closed loopback proxy port, so nothing
leaves the machine either way; a control page that does load something from a loopback
server proves the network-log check sees page requests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fanin.cli.main import main as fanin_main
from fanin.server.app import ServerThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Whatever the browser itself still tries goes to a closed local port, never out.
         "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("FANIN_REQUIRE_BROWSER"),
    reason="needs Chromium (apt-get install -y --no-install-recommends chromium; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def chromium(tmp_path: Path, page: Path, *extra: str) -> tuple[str, list[dict]]:
    """Load `page`; return (stdout, the page's own URL requests from the network log)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    netlog = profile.with_suffix(".netlog.json")
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(netlog.read_text())
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    # The browser's own fetches have no origin; anything the page asks for carries its origin.
    requests = [e["params"] for e in log["events"]
                if types.get(e["type"]) == "URL_REQUEST_START_JOB" and e.get("params", {}).get("url")]
    from_page = [r for r in requests if r.get("initiator") != "not an origin"]
    return proc.stdout, from_page


def render(tmp_path: Path, html: Path, name: str) -> str:
    """Screenshot into tests/artifacts/NAME.png; returns the rendered DOM."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    _, from_page = chromium(tmp_path, html, "--window-size=1500,2400", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert from_page == []
    dom, from_page = chromium(tmp_path, html, "--dump-dom")
    assert from_page == []
    return dom


def charts(dom: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'<svg class="chart"[^>]*data-title="([^"]+)".*?</svg>',
                                                        dom, re.S)}


def lines_drawn(svg: str) -> list[int]:
    """Points per drawn line (polyline points parsed: every one a pair of numbers)."""
    out = []
    for points in re.findall(r'<polyline class="series"[^>]*points="([^"]*)"', svg):
        pairs = points.split()
        assert all(re.fullmatch(r"-?[\d.]+,-?[\d.]+", p) for p in pairs)
        out.append(len(pairs))
    return out


def run(argv: list[str], tmp_path: Path, name: str) -> tuple[int, dict, Path]:
    html, report = tmp_path / f"{name}.html", tmp_path / f"{name}.json"
    code = fanin_main(["load", *argv, "--no-progress", "--json", str(report), "--html", str(html)])
    return code, json.loads(report.read_text()), html


def self_contained(text: str) -> None:
    """No script, no stylesheet, image, font or frame from anywhere: nothing to fetch."""
    for pattern in (r"<script", r"<link", r"<img", r"<iframe", r"\bsrc=", r"\bhref=", r"url\(", r"@import"):
        assert not re.search(pattern, text, re.I), pattern


def test_streams_report_renders_in_a_browser(server, tmp_path):
    url = server.url("/stream?count=0&rate=40&ts=1&abort_every=15&retry=30")
    code, report, html = run([url, "-c", "6", "-d", "4s", "--latency-field", "ts", "--seq-ids", "--workers", "2"],
                             tmp_path, "streams")
    assert code == 0
    self_contained(html.read_text())
    dom = render(tmp_path, html, "load_report_streams")
    drawn = charts(dom)
    assert set(drawn) == {"Open streams", "Events per second", "End-to-end event latency", "Gap between events",
                          "Time to first event", "Client event-loop lag", "Errors per second by kind"}
    for title, svg in drawn.items():
        assert all(n >= 2 for n in lines_drawn(svg)) and lines_drawn(svg), title
        assert 'class="xlabel"' in svg and "time since start (s)" in svg
    assert "milliseconds (ms)" in drawn["End-to-end event latency"] and "events/s" in drawn["Events per second"]
    assert 'data-name="truncated"' in drawn["Errors per second by kind"]  # the aborts, by kind
    assert len(re.findall(r'data-name="p(50|90|99)"', drawn["Client event-loop lag"])) == 3
    for section in ("Summary", "Percentiles", "Settings", "delivery", "lost 0"):
        assert section in dom
    assert 'id="verdict"' in dom and "passed" in dom
    assert "2 processes," in dom and "process(es)" not in dom  # one language: counted words agree
    # The timeline in the JSON, merged over the two processes, holds every first event exactly.
    rows = report["timeline"]
    assert len(rows) >= 2 and all(r["active"] <= 6 for r in rows)
    assert sum(r["ms"].get("ttfe", {}).get("count", 0) for r in rows) <= report["latency_ms"]["ttfe"]["count"]
    assert sum(r["errors"].get("truncated", 0) for r in rows) >= 1


def test_request_mode_report_renders_in_a_browser(server, tmp_path):
    url = server.url("/stream?count=20&rate=200")
    code, report, html = run([url, "--mode", "requests", "-c", "3", "-d", "2.5s"], tmp_path, "requests")
    assert code == 0 and report["requests"]["completed"] >= 10
    self_contained(html.read_text())
    dom = render(tmp_path, html, "load_report_requests")
    drawn = charts(dom)
    assert {"Requests in flight", "Tokens per second", "Completed requests per second", "Time to first token",
            "Inter-token latency", "Request latency (e2e)", "Client event-loop lag"} <= set(drawn)
    assert "tokens/s" in drawn["Tokens per second"] and 'id="no-errors"' in dom
    assert all(lines_drawn(svg) for svg in drawn.values())


def test_the_network_check_sees_what_a_page_loads(server, tmp_path):
    # The control: a page that does fetch something (from the loopback server) is caught.
    page = tmp_path / "control.html"
    page.write_text(f'<!DOCTYPE html><img src="{server.url("/echo")}">')
    _, from_page = chromium(tmp_path, page, "--dump-dom")
    assert [r["url"] for r in from_page] == [server.url("/echo")]


def test_a_sweep_has_its_page(server, tmp_path):
    url = server.url("/stream?count=5&rate=100")
    code, _, html = run([url, "--mode", "requests", "--sweep", "concurrency=1,2", "-d", "1s"], tmp_path, "sweep")
    assert code == 0
    text = html.read_text()
    self_contained(text)
    assert text.count("<tr><td>") == 2 and 'data-title="Throughput per step"' in text
