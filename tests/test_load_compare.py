"""`fanin load compare A.json B.json`: two real reports (runs against the built-in OpenAI
stand-in on 127.0.0.1, B's tokens three times slower), the changes shown, thresholds
relative, as a change and as a bound, the exit status a CI job gates on, 80 columns, and
one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanin.cli.main import main as fanin_main
from fanin.load.compare import compare_reports, parse_compare_threshold
from fanin.server.app import ServerThread

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    paths = {}
    with ServerThread() as server:
        for name, itl in (("a", 5), ("b", 15)):
            path = folder / f"{name}.json"
            code = fanin_main(["load", "--mode", "requests", server.url(f"{CHAT}?ttft_ms=5&itl_ms={itl}&max_tokens=6"),
                               "--json-body", '{"stream": true}', "-c", "2", "-n", "6", "--percentiles", "50,99.9",
                               "--no-progress", "--json", str(path)])
            assert code == 0
            paths[name] = str(path)
    return paths


def compare(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fanin", "load", "compare", *argv], capture_output=True,
                          text=True, timeout=60)


def test_a_regression_fails_and_no_regression_passes(reports):
    a, b = reports["a"], reports["b"]
    done = compare(a, b, "--threshold", "p50_itl<+10%", "--threshold", "p99_ttft<5s",
                   "--threshold", "requests_failed<=+0")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "FAIL p50_itl<+10%" in out and "ok   p99_ttft<5s" in out and "ok   requests_failed<=+0" in out
    assert "verdict: regression: 1 of 3 thresholds breached" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "\x1b[" not in out  # plain when piped
    itl = next(line for line in out.splitlines() if line.startswith("p50_itl "))
    assert "worse" in itl and "+" in itl
    assert "p99.9_ttft" in out  # the percentiles the runs were given
    # the other way round it is an improvement, and the gate holds
    done = compare(b, a, "--threshold", "p50_itl<+10%", "--threshold", "tokens_per_s>-5%")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: no regression: 2 of 2 thresholds held" in done.stdout


def test_json_output_and_no_thresholds(reports, tmp_path):
    out = tmp_path / "cmp.json"
    done = compare(reports["a"], reports["b"], "--json", str(out))
    assert done.returncode == 0 and "nothing judged" in done.stdout
    doc = json.loads(out.read_text())
    assert doc["type"] == "load_compare" and doc["passed"] is True and doc["thresholds"] == []
    row = next(r for r in doc["rows"] if r["metric"] == "p50_itl")
    assert row["b"] > row["a"] and row["better"] is False and row["change_percent"] > 50


def test_threshold_kinds_judge_exactly():
    a = {"type": "load_report", "latency_ms": {"ttft": {"p99": 100.0}}, "tokens": {"per_user_per_s": {"p50": 50.0}}}
    b = {"type": "load_report", "latency_ms": {"ttft": {"p99": 109.0}}, "tokens": {"per_user_per_s": {"p50": 40.0}}}

    def ok(expr):
        return compare_reports(a, b, [parse_compare_threshold(expr)])["passed"]

    assert ok("p99_ttft<+10%") and not ok("p99_ttft<+9%")
    assert ok("p99_ttft<=+9ms") and not ok("p99_ttft<+9ms")
    assert ok("p99_ttft<110") and not ok("p99_ttft<100ms")
    assert ok("p50_user_tps>-25%") and not ok("p50_user_tps>-10%")
    assert not ok("p99_itl<+10%")  # no data in either: never a silent pass
    assert parse_compare_threshold("p99_ttft<+1s").value == 1000


def test_bad_input_is_one_line_exit_2(reports, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    sweep = tmp_path / "sweep.json"
    sweep.write_text('{"type": "load_sweep"}')
    for argv in ([reports["a"]], [reports["a"], str(tmp_path / "missing.json")], [reports["a"], str(bad)],
                 [reports["a"], str(sweep)], [reports["a"], reports["b"], "--threshold", "p99_ttft"],
                 [reports["a"], reports["b"], "-c", "4"]):
        done = compare(*argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fanin: error: ") and "Traceback" not in done.stderr


def test_compare_help_is_its_own(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")

    assert fanin_main(["load", "compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fanin load compare [-h] [--threshold EXPR] [--json FILE] REPORT REPORT")
    assert "--connections" not in out and "Exit status: 0 no threshold breached" in out
    assert max(len(line) for line in out.splitlines()) <= 80 and "\n\nMetrics are" in out
