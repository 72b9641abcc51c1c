"""Request mode at parity with vLLM bench, GuideLLM and AIPerf, against the built-in
OpenAI-, Anthropic- and Dify-like servers on 127.0.0.1: each API read where it puts its
text and usage, a role-only or batched first chunk, time to second token, per-user speed,
tokens by usage / chunks / a local tokenizer file, synthetic prompts, gamma arrivals,
ramp-up, --max-concurrency with its queue time, chosen percentiles and CSV.

Timing bounds follow test_load_requests.py: never earlier than configured minus 2 ms,
upper bounds generous for a shared 2-core machine."""

from __future__ import annotations

import csv
import json
import random
import statistics

import pytest

from fanin.cli.main import main as fanin_main
from fanin.load.requests_mode import RequestPlan, RequestRunner, next_gap
from fanin.server.app import ServerThread

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
USAGE_BODY = '{"stream": true, "stream_options": {"include_usage": true}}'


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def run_load(argv, tmp_path, capsys, name="report.json"):
    path = tmp_path / name
    code = fanin_main(["load", "--mode", "requests", *argv, "--no-progress", "--json", str(path)])
    captured = capsys.readouterr()
    return code, (json.loads(path.read_text()) if path.exists() else {}), captured.err + captured.out


def make_tokenizer(path) -> str:
    """A word-level tokenizer.json built here (nothing downloaded): one token per word."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {"[UNK]": 0, **{f"t{i}": i + 1 for i in range(64)}}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.save(str(path))
    return str(path)


# --------------------------------------------------------------------------- chunks and tokens
def test_openai_role_only_first_chunk_is_not_the_first_token(server, tmp_path, capsys):
    # No --extract: the path names the OpenAI API. 8 tokens, 60 ms to the first, 10 ms apart.
    url = server.url(f"{CHAT}?ttft_ms=60&itl_ms=10&max_tokens=8")
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "-c", "2", "-n", "4"], tmp_path, capsys)
    assert code == 0, out
    lat, tokens = report["latency_ms"], report["tokens"]
    assert report["settings"]["api"] == "openai"
    # the role-only chunk arrives at once, the first token 60 ms later: TTFT is the token's
    assert lat["ttfe"]["p50"] < 30 and 58 <= lat["ttft"]["p50"] <= 120
    assert tokens["total"] == 32 and tokens["counted_by"] == {"usage": 0, "chunks": 4, "tokenizer": 0}
    assert lat["itl"]["count"] == 4 * 7 and 8 <= lat["ttst"]["p50"] <= 40 and lat["ttst"]["count"] == 4


def test_batched_chunks_count_every_token_by_usage_or_tokenizer(server, tmp_path, capsys):
    # 12 tokens, 3 a chunk: 4 content chunks, the first one carrying the role too
    url = server.url(f"{CHAT}?ttft_ms=20&itl_ms=20&max_tokens=12&tokens_per_chunk=3&role_chunk=0")
    code, report, out = run_load([url, "--json-body", USAGE_BODY, "-c", "1", "-n", "3"], tmp_path, capsys)
    assert code == 0, out
    tokens, lat = report["tokens"], report["latency_ms"]
    assert tokens["total"] == 36 and tokens["counted_by"]["usage"] == 3  # the server's count, not 4 chunks
    assert lat["itl"]["count"] == 3 * 3  # gaps between chunks, as vLLM's ITL
    # TPOT spreads the time after the first token over the 11 tokens that followed
    assert 3 * 18 / 11 <= lat["tpot"]["p50"] <= 3 * 60 / 11

    # a tokenizer file counts the 3 tokens of each chunk: the second token came with the first
    tok = make_tokenizer(tmp_path / "tokenizer.json")
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "-c", "1", "-n", "3",
                                  "--tokenizer", tok], tmp_path, capsys, "tok.json")
    assert code == 0, out
    assert report["tokens"]["total"] == 36 and report["tokens"]["counted_by"]["tokenizer"] == 3
    assert report["tokens"]["source"] == f"tokenizer {tok}"
    assert report["latency_ms"]["ttst"]["max"] == 0  # batched first chunk: TTST 0
    # without usage or a tokenizer, chunks are counted and the report says so
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "-c", "1", "-n", "3"],
                                 tmp_path, capsys, "chunks.json")
    assert report["tokens"]["total"] == 12 and report["tokens"]["counted_by"]["chunks"] == 3


def test_bad_tokenizer_file_is_one_line(server, tmp_path, capsys):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    for path in (str(bad), str(tmp_path / "missing.json")):
        code, _, out = run_load([server.url(CHAT), "--json-body", "{}", "-n", "1", "--tokenizer", path],
                                tmp_path, capsys)
        assert code == 2 and "--tokenizer" in out and "Traceback" not in out, out


def test_per_user_tokens_per_second(server, tmp_path, capsys):
    url = server.url(f"{CHAT}?ttft_ms=10&itl_ms=20&max_tokens=11")
    code, report, out = run_load([url, "--json-body", USAGE_BODY, "-c", "2", "-n", "4"], tmp_path, capsys)
    assert code == 0, out
    per_user = report["tokens"]["per_user_per_s"]
    # 10 tokens after the first, 20 ms apart: at most 50 tokens/s for each user
    assert per_user["count"] == 4 and 20 <= per_user["p50"] <= 51


# --------------------------------------------------------------------------- Anthropic and Dify
def test_anthropic_messages_stream(server, tmp_path, capsys):
    url = server.url(f"{MESSAGES}?ttft_ms=40&itl_ms=10&max_tokens=6")
    body = '{"model": "m", "max_tokens": 6, "stream": true, "messages": [{"role": "user", "content": "a b c"}]}'
    code, report, out = run_load([url, "--json-body", body, "-H", "anthropic-version: 2023-06-01", "-c", "2",
                                  "-n", "4"], tmp_path, capsys)
    assert code == 0, out
    tokens, lat = report["tokens"], report["latency_ms"]
    assert report["settings"]["api"] == "anthropic"
    assert tokens["total"] == 24 and tokens["counted_by"]["usage"] == 4  # message_delta's output_tokens
    assert tokens["input_total"] == 4 * 3  # message_start's input_tokens
    assert 38 <= lat["ttft"]["p50"] <= 100 and lat["itl"]["count"] == 4 * 5
    # message_start, content_block_start and ping carry no text: TTFT is not the first event
    assert lat["ttfe"]["p50"] < lat["ttft"]["p50"]


def test_anthropic_error_event_fails_the_request(server, tmp_path, capsys):
    body = '{"model": "m", "max_tokens": 6, "stream": true, "messages": [{"role": "user", "content": "x"}]}'
    code, report, out = run_load([server.url(f"{MESSAGES}?ttft_ms=1&itl_ms=1&max_tokens=6&error_after=2"),
                                  "--json-body", body, "-n", "3", "-c", "1"], tmp_path, capsys)
    r, errors = report["requests"], report["errors"]
    assert r["failed"] == 3 and r["completed"] == 0 and errors["by_kind"] == {"api_error": 3}
    assert "overloaded_error" in errors["examples"]["api_error"]
    # an HTTP error before the stream is counted by the engine's kind
    code, report, out = run_load([server.url(f"{MESSAGES}?error_rate=1&error_status=529"), "--json-body", body,
                                  "-n", "2", "-c", "1"], tmp_path, capsys, "http.json")
    assert report["errors"]["by_kind"] == {"http_5xx": 2}


def test_openai_error_chunk_fails_the_request(server, tmp_path, capsys):
    code, report, out = run_load([server.url(f"{CHAT}?ttft_ms=1&itl_ms=1&max_tokens=6&error_after=3"),
                                  "--json-body", '{"stream": true}', "-n", "2", "-c", "1"], tmp_path, capsys)
    assert code == 0 and report["errors"]["by_kind"] == {"api_error": 2}, out


def test_dify_app_read_without_extract(server, tmp_path, capsys):
    body = '{"query": "load", "user": "u1", "response_mode": "streaming", "inputs": {}}'
    code, report, out = run_load([server.url("/v1/chat-messages"), "--bearer", "app-test", "--json-body", body,
                                  "-c", "2", "-n", "4"], tmp_path, capsys)
    assert code == 0, out
    assert report["settings"]["api"] == "dify" and report["requests"]["completed"] == 4
    assert report["tokens"]["counted_by"]["usage"] == 4  # message_end's metadata.usage
    assert "app-test" not in out and "app-test" not in json.dumps(report)


# --------------------------------------------------------------------------- synthetic prompts
def test_synthetic_prompts_follow_the_seeded_lengths(server, tmp_path, capsys):
    def run(api_path, name, seed="7"):
        code, report, out = run_load([server.url(f"{api_path}?ttft_ms=1&itl_ms=1"), "--input-tokens", "30,8",
                                      "--output-tokens", "5,2", "--seed", seed, "-n", "40", "-c", "4"],
                                     tmp_path, capsys, name)
        assert code == 0, out
        return report

    a, b, c = run(CHAT, "a.json"), run(CHAT, "b.json"), run(CHAT, "c.json", seed="8")
    # the stand-in reports a prompt's words as its input tokens, and sends max_tokens tokens
    assert a["tokens"]["input_total"] == b["tokens"]["input_total"] and a["tokens"]["total"] == b["tokens"]["total"]
    assert (a["tokens"]["input_total"], a["tokens"]["total"]) != (c["tokens"]["input_total"], c["tokens"]["total"])
    assert 40 * 24 <= a["tokens"]["input_total"] <= 40 * 36 and 40 * 3 <= a["tokens"]["total"] <= 40 * 7
    assert a["settings"]["synthetic"]["input_tokens"] == {"mean": 30, "stddev": 8.0}
    anthropic = run(MESSAGES, "anthropic.json")  # the same bodies' lengths, as Messages requests
    assert anthropic["tokens"]["input_total"] == a["tokens"]["input_total"]
    assert anthropic["tokens"]["total"] == a["tokens"]["total"]


def test_synthetic_prompts_exact_with_a_tokenizer(server, tmp_path, capsys):
    from tokenizers import Tokenizer

    from fanin.load.synthetic import LengthDist, synthetic_items
    from fanin.load.tokenizer import TokenCounter

    path = tmp_path / "tok.json"
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    t = Tokenizer(WordLevel(vocab={"[UNK]": 0, "the": 1, "of": 2}, unk_token="[UNK]"))
    t.pre_tokenizer = WhitespaceSplit()
    t.save(str(path))
    counter = TokenCounter(str(path))
    items = synthetic_items("openai", model="m", input_tokens=LengthDist(17), output_tokens=LengthDist(4),
                            count=3, seed=1, tokenizer=counter)
    for item in items:
        body = json.loads(item.body)
        assert counter.count(body["messages"][0]["content"]) == 17 and body["max_tokens"] == 4


# --------------------------------------------------------------------------- arrivals
def test_gamma_gaps_have_the_configured_mean_and_burstiness():
    for burstiness in (0.25, 1.0, 4.0):
        rng = random.Random(5)
        gaps = [next_gap(rng, "gamma", 20.0, burstiness) for _ in range(20_000)]
        mean = statistics.fmean(gaps)
        cv2 = statistics.pvariance(gaps) / mean**2
        assert abs(mean - 1 / 20) < 0.003
        assert abs(cv2 - 1 / burstiness) < 0.15 / burstiness  # gamma: squared CV = 1 / shape
    assert next_gap(random.Random(1), "constant", 4.0, 1.0) == 0.25


def test_ramp_rates_linear_and_exponential():
    plan = RequestPlan(source=None, config=None, rate=100.0, ramp_up=10.0, ramp_start_rate=1.0)  # type: ignore[arg-type]
    runner = RequestRunner(plan)
    assert runner._rate_at(0) == 1.0 and runner._rate_at(5) == pytest.approx(50.5) and runner._rate_at(12) == 100
    plan.ramp_strategy = "exponential"
    assert runner._rate_at(5) == pytest.approx(10.0) and runner._rate_at(10) == 100


def test_open_loop_ramp_issues_the_integral_of_its_rate(server, tmp_path, capsys):
    # 40/s after a 1 s linear ramp from 4/s, for 2 s: about 22 + 40 = 62 requests due (80 without)
    url = server.url(f"{CHAT}?ttft_ms=1&itl_ms=1&max_tokens=2")
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "--request-rate", "40", "--ramp-up", "1s",
                                  "--ramp-start-rate", "4", "-d", "2s", "--burstiness", "1", "--seed", "3"],
                                 tmp_path, capsys)
    assert code == 0, out
    r = report["requests"]
    issued = r["completed"] + r["failed"] + r["not_started"] + r["interrupted"]
    assert 45 <= issued <= 78, issued
    s = report["settings"]
    assert s["arrival"] == "gamma" and s["burstiness"] == 1.0 and s["ramp_strategy"] == "linear"


def test_closed_loop_ramp_starts_users_one_by_one(server, tmp_path, capsys):
    url = server.url(f"{CHAT}?ttft_ms=1&itl_ms=1&max_tokens=2")
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "-c", "4", "--ramp-up", "400ms",
                                  "-d", "1s"], tmp_path, capsys)
    assert code == 0 and report["connections"]["peak_active"] <= 4 and report["requests"]["completed"] > 4, out


def test_max_concurrency_queues_due_requests_and_measures_the_wait(server, tmp_path, capsys):
    # 20 requests due at 100/s, each ~60 ms, 2 at once: the last waits ~0.5 s for a place
    url = server.url(f"{CHAT}?ttft_ms=50&itl_ms=5&max_tokens=3")
    code, report, out = run_load([url, "--json-body", '{"stream": true}', "--request-rate", "100", "-n", "20",
                                  "--max-concurrency", "2"], tmp_path, capsys)
    assert code == 0, out
    r, lat = report["requests"], report["latency_ms"]
    assert r["completed"] == 20 and r["not_started"] == 0
    assert report["connections"]["peak_active"] == 2
    assert lat["queue"]["count"] == 20 and lat["queue"]["max"] >= 300
    assert lat["ttft"]["p99"] < 200  # queue time is the client's, not in TTFT


# --------------------------------------------------------------------------- percentiles and CSV
def test_chosen_percentiles_in_json_table_and_csv(server, tmp_path, capsys):
    url = server.url(f"{CHAT}?ttft_ms=5&itl_ms=2&max_tokens=4")
    csv_path = tmp_path / "run.csv"
    code, report, out = run_load([url, "--json-body", USAGE_BODY, "-c", "2", "-n", "6", "--percentiles",
                                  "50,90,99.9", "--csv", str(csv_path), "--threshold", "p99_ttst<5s",
                                  "--threshold", "max_ttst<1us"], tmp_path, capsys)
    assert code == 1, out  # the new metrics gate a run like the others: one held, one breached
    assert [t["ok"] for t in report["thresholds"]] == [True, False]
    assert report["percentiles"] == ["p50", "p90", "p99.9"]
    assert report["latency_ms"]["ttft"]["p99.9"] >= report["latency_ms"]["ttft"]["p50"] > 0
    assert "p99.9" in out and "p95" not in out.split("metric")[1].splitlines()[0]
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1
    assert float(rows[0]["latency_ms.ttft.p99.9"]) == report["latency_ms"]["ttft"]["p99.9"]
    assert rows[0]["requests.completed"] == "6" and rows[0]["settings.api"] == "openai"
    assert rows[0]["passed"] == "False"


def test_parity_usage_errors_exit_2(server, tmp_path, capsys):
    chat, stream = server.url(CHAT), server.url("/stream")
    cases = (
        [chat, "--burstiness", "0", "--request-rate", "5"],
        [chat, "--burstiness", "2", "-c", "2"],
        [chat, "--burstiness", "2", "--request-rate", "5", "--arrival", "poisson"],
        [chat, "--max-concurrency", "2", "-c", "2"],
        [chat, "--max-concurrency", "0", "--request-rate", "5"],
        [chat, "--input-tokens", "many"],
        [chat, "--input-tokens", "0"],
        [chat, "--input-tokens", "10", "--json-body", "{}"],
        [stream, "--input-tokens", "10"],
        [server.url("/v1/chat-messages"), "--output-tokens", "10"],
        [chat, "--percentiles", "0,50"],
        [chat, "--percentiles", "x"],
        [chat, "--ramp-strategy", "exponential", "-c", "2"],
        [chat, "--ramp-start-rate", "50", "--request-rate", "5", "--ramp-up", "1s"],
        [chat, "--model", "m", "--json-body", "{}"],
        [chat, server.url(MESSAGES), "--json-body", "{}"],
        [chat, "--csv", str(tmp_path / "missing" / "r.csv"), "--json-body", "{}"],
    )
    for argv in cases:
        code, _, out = run_load([*argv, "-n", "1"], tmp_path, capsys)
        assert code == 2, (argv, out)
        line = out.strip().splitlines()[-1]
        assert line.startswith("fanin: error: ") and "Traceback" not in out, (argv, out)
    code, _, out = run_load([stream, "--mode", "streams", "--burstiness", "2"], tmp_path, capsys)
    assert code == 2 and "--burstiness needs --mode requests" in out
