"""`fanin load --mode requests` against the built-in OpenAI-compatible and Dify-like servers
(real sockets): request counts in the closed and open loop, TTFT/ITL/TPOT/E2E against the
emulator's configured delays, goodput, not-started requests, datasets, failures by kind,
thresholds, and a sweep that finds a known knee.

Tolerances: the emulator sleeps the configured time on a shared 2-core machine, so measured
times may run late by scheduling noise but never early; lower bounds are the configured
delay minus 2 ms (timer rounding), upper bounds generous (+40 ms or +50 %)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanin.cli.main import main as fanin_main
import load_run
from fanin.server.app import ServerThread

CHAT = "/v1/chat/completions"
STREAM_BODY = '{"stream": true, "stream_options": {"include_usage": true}}'
OPENAI = ["--json-body", STREAM_BODY, "--extract", "choices.0.delta.content", "--stop-on", "[DONE]"]


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def run_load(argv: list[str], tmp_path, capsys) -> tuple[int, dict, str]:
    return load_run.run_load(argv, tmp_path, capsys, mode="requests")


def issued(report: dict) -> int:
    r = report["requests"]
    return r["completed"] + r["failed"] + r["not_started"] + r["interrupted"]


# --------------------------------------------------------------------------- load models
def test_closed_loop_sends_exactly_n_and_measures_known_delays(server, tmp_path, capsys):
    # 3 users, 12 requests; each: 60 ms to the first token, then 9 more tokens 15 ms apart.
    url = server.url(f"{CHAT}?ttft_ms=60&itl_ms=15&max_tokens=10&ts=1")
    before = server.stats.total_requests
    code, report, _ = run_load([url, "-c", "3", "-n", "12", *OPENAI, "--usage-field", "usage.completion_tokens",
                                "--latency-field", "fanin_sent_ns"], tmp_path, capsys)
    assert code == 0, report
    r, tokens, lat = report["requests"], report["tokens"], report["latency_ms"]
    assert r["completed"] == 12 and r["failed"] == 0 and r["not_started"] == 0 and r["interrupted"] == 0
    assert server.stats.total_requests - before == 12  # sent once each, never re-sent
    assert report["connections"]["peak_active"] == 3
    # Tokens: the role-only first delta, the finish chunk and the usage chunk are not tokens.
    assert tokens["total"] == 120 and tokens["usage_missing"] == 0
    assert tokens["events_per_request_mean"] == 13  # role + 10 tokens + finish + usage ([DONE] stops)
    assert lat["ttft"]["count"] == 12 and lat["e2e"]["count"] == 12 and lat["tpot"]["count"] == 12
    assert lat["itl"]["count"] == 12 * 9
    assert 58 <= lat["ttft"]["p50"] <= 100 and lat["ttft"]["p99"] <= 160
    assert 13 <= lat["itl"]["p50"] <= 30
    assert 13 <= lat["tpot"]["p50"] <= 30
    assert 58 + 9 * 13 <= lat["e2e"]["p50"] <= (60 + 9 * 15) * 1.5
    assert r["per_s"] > 0 and tokens["per_s"] > 0
    # Delivery latency of each token (server's send stamp -> arrival), same clock on loopback.
    assert lat["latency"]["count"] == 120 and lat["latency"]["p50"] < 50


def test_closed_loop_for_a_duration(server, tmp_path, capsys):
    # 2 users x 1.5 s of ~100 ms requests: about 30 requests (scheduling noise only lowers it).
    url = server.url(f"{CHAT}?ttft_ms=10&itl_ms=10&max_tokens=10")
    code, report, _ = run_load([url, "-c", "2", "-d", "1.5s", *OPENAI], tmp_path, capsys)
    assert code == 0
    assert 14 <= report["requests"]["completed"] <= 32
    assert report["requests"]["failed"] == 0


def test_open_loop_issues_the_configured_count(server, tmp_path, capsys):
    # Constant arrivals, 20/s for 1.5 s: due at 0, 50, ..., 1450 ms -> exactly 30 requests.
    url = server.url(f"{CHAT}?ttft_ms=5&itl_ms=5&max_tokens=3")
    code, report, _ = run_load([url, "--request-rate", "20", "-d", "1.5s", *OPENAI], tmp_path, capsys)
    assert code == 0
    assert issued(report) == 30 and report["requests"]["not_started"] == 0
    assert report["settings"]["request_rate"] == 20 and report["settings"]["arrival"] == "constant"
    # How late the scheduler started them: recorded for every request, small on an idle client.
    assert report["latency_ms"]["start_delay"]["count"] == 30
    # Poisson with -n: exactly n, whatever the gaps.
    code, report, _ = run_load([url, "--request-rate", "40", "--arrival", "poisson", "--seed", "7", "-n", "15",
                                *OPENAI], tmp_path, capsys)
    assert code == 0 and issued(report) == 15 and report["requests"]["completed"] == 15


def test_open_loop_reports_requests_it_could_not_start(server, tmp_path, capsys):
    # 40 due per second, but only 2 may run and each takes ~200 ms: most are not started.
    url = server.url(f"{CHAT}?ttft_ms=100&itl_ms=10&max_tokens=10")
    code, report, out = run_load([url, "--request-rate", "40", "-d", "1s", "--max-in-flight", "2", *OPENAI],
                                 tmp_path, capsys)
    r = report["requests"]
    assert issued(report) == 40
    assert r["completed"] <= 14 and r["not_started"] >= 24
    assert report["connections"]["peak_active"] == 2
    assert any("not started" in w for w in report["warnings"]) and "not started" in out
    assert code == 0  # reported, not an error by itself; a threshold can make it one:
    code, report, _ = run_load([url, "--request-rate", "40", "-d", "1s", "--max-in-flight", "2", *OPENAI,
                                "--threshold", "not_started==0"], tmp_path, capsys)
    assert code == 1 and report["thresholds"][0]["actual"] >= 24


def test_workers_split_the_load_and_merge_exactly(server, tmp_path, capsys):
    # Two processes: closed loop, 12 requests over 4 users; open loop, 20/s for 1.5 s with the
    # two schedules interleaved: exactly 30 due, as from one process.
    url = server.url(f"{CHAT}?ttft_ms=10&itl_ms=10&max_tokens=5")
    code, report, _ = run_load([url, "-c", "4", "-n", "12", "--workers", "2", *OPENAI], tmp_path, capsys)
    assert code == 0
    assert report["client"]["workers"] == 2 and report["settings"]["workers"] == 2
    assert report["requests"]["completed"] == 12 and report["latency_ms"]["ttft"]["count"] == 12
    assert report["tokens"]["total"] == 60 and report["latency_ms"]["itl"]["count"] == 48
    code, report, _ = run_load([url, "--request-rate", "20", "-d", "1.5s", "--workers", "2", *OPENAI],
                               tmp_path, capsys)
    assert code == 0 and issued(report) == 30 and report["requests"]["completed"] == 30


# --------------------------------------------------------------------------- goodput, dataset
def test_goodput_counts_requests_meeting_every_slo(server, tmp_path, capsys):
    # The dataset alternates a fast (20 ms) and a slow (300 ms) first token: exactly half meet ttft<150ms.
    dataset = tmp_path / "bodies.jsonl"
    dataset.write_text(
        '{"stream": true, "ttft_ms": 20, "itl_ms": 5, "max_tokens": 4}\n'
        '\n'
        '{"body": {"stream": true, "ttft_ms": 300, "itl_ms": 5, "max_tokens": 4}, "headers": {"X-Kind": "slow"}}\n'
    )
    code, report, _ = run_load([server.url(CHAT), "-c", "2", "-n", "10", "--dataset", str(dataset),
                                "--extract", "choices.0.delta.content", "--slo", "ttft<150ms",
                                "--slo", "itl_p99<200ms"], tmp_path, capsys)
    assert code == 0
    r = report["requests"]
    assert r["completed"] == 10 and r["goodput"] == 5 and r["goodput_ratio"] == 0.5
    assert r["goodput_per_s"] == pytest.approx(r["per_s"] / 2, rel=0.01)
    assert report["settings"]["method"] == "POST"  # a dataset means POST
    # Tightening one SLO takes every request out of goodput.
    code, report, _ = run_load([server.url(CHAT), "-c", "2", "-n", "4", "--dataset", str(dataset),
                                "--extract", "choices.0.delta.content", "--slo", "ttft<150ms",
                                "--slo", "e2e<10ms"], tmp_path, capsys)
    assert report["requests"]["goodput"] == 0


def test_bad_dataset_line_is_one_line_before_any_request(server, tmp_path, capsys):
    dataset = tmp_path / "bad.jsonl"
    dataset.write_text('{"stream": true}\n{"stream": true}\n{"stream": tru\n')
    before = server.stats.total_requests
    code, report, out = run_load([server.url(CHAT), "-n", "5", "--dataset", str(dataset)], tmp_path, capsys)
    assert code == 2 and report == {}
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{dataset}:3" in lines[0] and "not valid JSON" in lines[0]
    assert "Traceback" not in out
    assert server.stats.total_requests == before
    dataset.write_text('{"stream": true}\n[1, 2]\n')
    code, _, out = run_load([server.url(CHAT), "-n", "5", "--dataset", str(dataset)], tmp_path, capsys)
    assert code == 2 and f"{dataset}:2" in out and "JSON object" in out


# --------------------------------------------------------------------------- failures, thresholds
def test_failures_are_counted_by_kind_and_never_resent(server, tmp_path, capsys):
    before = server.stats.total_requests
    code, report, _ = run_load([server.url(f"{CHAT}?error_rate=1&error_status=503"), "-c", "2", "-n", "6",
                                *OPENAI], tmp_path, capsys)
    assert report["requests"]["failed"] == 6 and report["requests"]["completed"] == 0
    assert report["errors"]["by_kind"] == {"http_5xx": 6}
    assert server.stats.total_requests - before == 6  # a 503 is not retried in request mode
    assert code == 1  # nothing got a stream
    before = server.stats.total_requests
    code, report, _ = run_load([server.url(f"{CHAT}?ttft_ms=5&itl_ms=5&max_tokens=10&cut_after=3"),
                                "-c", "2", "-n", "4", *OPENAI], tmp_path, capsys)
    assert report["requests"]["failed"] == 4 and report["errors"]["by_kind"] == {"truncated": 4}
    assert server.stats.total_requests - before == 4  # events had arrived: never re-sent


def test_thresholds_on_request_metrics_fail_ci(server, tmp_path, capsys):
    url = server.url(f"{CHAT}?ttft_ms=50&itl_ms=5&max_tokens=4")
    code, report, out = run_load([url, "-c", "2", "-n", "4", *OPENAI, "--threshold", "p99_ttft<20ms",
                                  "--threshold", "requests_failed==0"], tmp_path, capsys)
    assert code == 1
    failed, ok = report["thresholds"]
    assert not failed["ok"] and failed["actual"] >= 48 and ok["ok"]
    assert "threshold breached: p99_ttft<20ms" in out
    code, report, _ = run_load([url, "-c", "2", "-n", "4", *OPENAI, "--threshold", "p99_ttft<2s",
                                "--threshold", "tokens==16"], tmp_path, capsys)
    assert code == 0 and report["passed"]
    for name in ("ttft", "itl", "tpot", "e2e"):
        assert set(report["latency_ms"][name]) == {"count", "mean", "p50", "p90", "p95", "p99", "max"}
    assert set(report["requests"]) >= {"completed", "failed", "not_started", "per_s", "goodput", "goodput_per_s"}
    assert set(report["tokens"]) >= {"total", "per_s"}
    assert {"connections", "events", "errors", "client", "warnings"} <= set(report)  # today's shape kept
    assert report["client"]["cpu_us_per_event"] > 0


def test_dify_app_in_request_mode(server, tmp_path, capsys):
    body = '{"query": "load", "user": "u1", "response_mode": "streaming", "inputs": {}}'
    code, report, out = run_load([server.url("/v1/chat-messages"), "--bearer", "app-test", "--json-body", body,
                                  "--extract", "answer", "-c", "2", "-n", "4"], tmp_path, capsys)
    assert code == 0, out
    from fanin.server.dify import dify_answer_for

    chunks = -(-len(dify_answer_for("load", "u1")) // 3)  # the fake app streams 3 characters a chunk
    assert report["requests"]["completed"] == 4 and report["tokens"]["total"] == 4 * chunks
    assert "app-test" not in out and "app-test" not in json.dumps(report)


def test_bad_request_mode_usage_exits_2(server, tmp_path, capsys):
    url = server.url(CHAT)
    for argv in (["-c", "2", "--request-rate", "5"], ["--slo", "ttft>5ms"], ["--slo", "ttfb<5ms"],
                 ["--sweep", "concurrency=4,2"], ["--workers", "0"], ["--extract", ""], ["-n", "0"], ["--retries", "5"]):
        code, _, out = run_load([url, *argv], tmp_path, capsys)
        assert code == 2, argv
        assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, (argv, out)
    code = fanin_main(["load", url, "--request-rate", "5", "--no-progress"])
    assert code == 2 and "--mode requests" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep
def test_sweep_finds_the_knee_of_a_server_that_saturates_at_2(server, tmp_path, capsys):
    # The server generates at most 2 requests at once (~70 ms each); the rest queue before their
    # first token. With ttft<60ms: 1 and 2 users pass, 4 users wait ~70 ms for a slot and fail.
    url = server.url(f"{CHAT}?ttft_ms=15&itl_ms=10&max_tokens=6&max_concurrency=2")
    report_path = tmp_path / "sweep.json"
    code = fanin_main(["load", "--mode", "requests", url, *OPENAI, "--sweep", "concurrency=1,2,4", "-d", "1.2s",
                       "--warmup", "0.2s", "--slo", "ttft<60ms", "--no-progress", "--json", str(report_path)])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(report_path.read_text())
    assert doc["type"] == "load_sweep" and doc["parameter"] == "concurrency"
    assert [s["sweep"]["load"] for s in doc["steps"]] == [1, 2, 4]
    assert [s["sweep"]["passed"] for s in doc["steps"]] == [True, True, False]
    assert doc["knee"] == {"index": 1, "load": 2}
    assert all(s["requests"]["warmup"] > 0 for s in doc["steps"])  # each step warmed up on its own
    assert "knee: concurrency 2" in out
    png = tmp_path / "sweep.png"
    assert doc["chart"] == "sweep.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_without_matplotlib_says_so_and_still_reports(server, tmp_path):
    url = server.url(f"{CHAT}?ttft_ms=5&itl_ms=5&max_tokens=3")
    report_path = tmp_path / "sweep.json"
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from fanin.cli.main import main\n"
              f"sys.exit(main(['load', '--mode', 'requests', {url!r}, '--json-body', '{{\"stream\": true}}', "
              f"'--sweep', 'rate=20', '-n', '3', '--no-progress', '--json', {str(report_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no sweep chart: matplotlib is not installed" in done.stderr
    doc = json.loads(report_path.read_text())
    assert doc["chart"] is None and doc["steps"][0]["requests"]["completed"] == 3
    assert not (tmp_path / "sweep.png").exists()


# --------------------------------------------------------------------------- the pieces
def test_openai_server_answers_like_an_openai_endpoint(server):
    import urllib.request

    def post(path: str, body: dict) -> tuple[int, bytes]:
        request = urllib.request.Request(server.url(path), data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, body = post(f"{CHAT}?itl_ms=0&ttft_ms=0", {"max_tokens": 3})
    assert status == 200
    answer = json.loads(body)
    assert answer["choices"][0]["message"]["content"] == "t0 t1 t2 " and answer["usage"]["completion_tokens"] == 3
    status, body = post(f"{CHAT}?itl_ms=fast", {"stream": True})
    assert status == 400 and "itl_ms must be a number" in json.loads(body)["error"]["message"]
    status, body = post(CHAT, {"stream": True, "error_rate": 2})
    assert status == 400
    status, body = post(CHAT, {"stream": True, "max_tokens": 2, "ttft_ms": 0, "itl_ms": 0, "jitter_ms": 3})
    lines = [line for line in body.decode().split("\n\n") if line]
    assert lines[0].startswith("data: ") and json.loads(lines[0][6:])["choices"][0]["delta"] == {
        "role": "assistant", "content": ""}
    assert [json.loads(x[6:])["choices"][0]["delta"].get("content") for x in lines[1:3]] == ["t0 ", "t1 "]
    assert lines[-1] == "data: [DONE]" and "usage" not in json.loads(lines[-2][6:])


def test_dataset_cycles_or_shuffles_with_the_seed(tmp_path):
    from fanin.load.dataset import RequestSource, load_dataset
    from fanin.stream import Request

    path = tmp_path / "d.jsonl"
    path.write_text("".join(f'{{"i": {i}}}\n' for i in range(5)))
    items = load_dataset(str(path))
    bases = [Request(url="http://127.0.0.1:1/a", method="POST"), Request(url="http://127.0.0.1:1/b", method="POST")]
    plain = RequestSource(bases, items)
    sent = [plain.next() for _ in range(10)]
    assert [json.loads(r.body)["i"] for r in sent] == [0, 1, 2, 3, 4] * 2
    assert [r.url[-1] for r in sent] == ["a", "b"] * 5
    assert sent[0].headers["Content-Type"] == "application/json"

    def order(seed):
        source = RequestSource(bases, items, shuffle=True, seed=seed)
        return [json.loads(source.next().body)["i"] for _ in range(10)]

    first = order(3)
    assert first == order(3) and sorted(first[:5]) == sorted(first[5:]) == [0, 1, 2, 3, 4]
    assert first != [0, 1, 2, 3, 4] * 2


def test_a_stalled_client_says_so_in_the_open_loop(server):
    # The client's loop stalls for 0.6 s in a 2 s open-loop run at 50/s: ~30 requests fall
    # due during the stall and start late. The report must say the client was the limit.
    import asyncio
    import time

    from fanin.load.dataset import RequestSource
    from fanin.measure.report import add_request_sections, build_report
    from fanin.load.requests_mode import RequestPlan, RequestRunner
    from fanin.stream import Request, StreamConfig

    request = Request(url=server.url(f"{CHAT}?ttft_ms=5&itl_ms=5&max_tokens=3"), method="POST",
                      body=b'{"stream": true}')
    plan = RequestPlan(source=RequestSource([request], None), config=StreamConfig(reconnect="never", retries=0),
                       rate=50, duration=2.0, grace=5.0)

    async def run():
        asyncio.get_running_loop().call_later(0.5, time.sleep, 0.6)
        return await RequestRunner(plan).run()

    result = asyncio.run(run())
    metrics = result.metrics
    report = build_report(metrics, targets=[], settings={"connections": 1}, elapsed_s=result.elapsed,
                          window=result.window.as_dict(), client=result.client, warnings=[])
    add_request_sections(report, metrics, measured_s=result.elapsed, slos=[], usage_field=None)
    assert report["requests"]["completed"] + report["requests"]["failed"] == 100
    assert report["latency_ms"]["start_delay"]["p99"] >= 300
    assert report["client"]["saturated"]
    assert any("started late" in reason for reason in report["client"]["saturated_by"])
