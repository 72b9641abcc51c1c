"""Client overhead in request mode: how far `fanin load --mode requests` measures TTFT and ITL
above the truth the server was configured with, with 256 concurrent users, and the client's
CPU per 1,000 tokens.

The built-in OpenAI-compatible server (`fanin serve`, --servers processes, the users spread
over them) waits --ttft-ms before the first token and --itl-ms between tokens. Whatever the
client reports above those figures is drift: the server's own timer and scheduling lateness
plus the client's (both on this machine). Every token chunk carries the server's wall clock at
send (`ts=1`), so the delivery latency (send stamp to arrival, one clock on loopback) tells
the part that came after the server wrote the token: the network and the client. The run is closed loop (-c 256), read as the
OpenAI API (told by the URL path: the role-only chunk skipped, tokens from the server's
usage), with a 2 s warm-up left out of the figures. Each run is a fresh client process.

    .venv/bin/python benchmarks/client_overhead.py [--users 256] [--runs 3] [--seconds 10]
                                                   [--out client_overhead.json]

Writes --out (default client_overhead.json in the current directory); --commit writes
benchmarks/results/client_overhead.json instead (the committed figures)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, fanin_command, machine, print_table, server_process  # noqa: E402

BODY = '{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'


def one_run(urls: list[str], users: int, seconds: float, warmup: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [*fanin_command(), "load", "--mode", "requests", *urls, "-c", str(users),
               "-d", f"{seconds + warmup:g}s", "--warmup", f"{warmup:g}s", "--json-body", BODY,
               "--latency-field", "fanin_sent_ns", "--grace", "10s", "--no-progress", "--json", out]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=seconds + warmup + 90)
        if done.returncode not in (0, 1) or not Path(out).exists():
            raise SystemExit(f"fanin load failed: {done.stderr.decode(errors='replace').strip()}")
        return orjson.loads(Path(out).read_bytes())


def figures(report: dict, ttft_ms: float, itl_ms: float) -> dict:
    lat = report["latency_ms"]
    tokens = report["tokens"]["total"]
    return {
        "ttft_drift_p50_ms": round(lat["ttft"]["p50"] - ttft_ms, 3),
        "ttft_drift_p99_ms": round(lat["ttft"]["p99"] - ttft_ms, 3),
        "itl_drift_p50_ms": round(lat["itl"]["p50"] - itl_ms, 3),
        "itl_drift_p99_ms": round(lat["itl"]["p99"] - itl_ms, 3),
        # server's send stamp -> the client's arrival (same clock): the part of the drift after the server wrote
        "delivery_p50_ms": lat["latency"]["p50"],
        "delivery_p99_ms": lat["latency"]["p99"],
        "cpu_ms_per_1000_tokens": round(report["client"]["cpu_seconds"] * 1e6 / max(tokens, 1), 2),
        "tokens_per_s": report["tokens"]["per_s"],
        "requests_completed": report["requests"]["completed"],
        "requests_failed": report["requests"]["failed"],
        "peak_active": report["connections"]["peak_active"],
        "client_cpu_percent_max": report["client"]["cpu_percent_max"],
        "loop_lag_p99_ms": report["latency_ms"]["lag"]["p99"],
        "saturated": report["client"]["saturated"],
    }


def span(values: list[float]) -> str:
    return f"{min(values):.2f} to {max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--itl-ms", type=float, default=50.0)
    parser.add_argument("--tokens", type=int, default=40, help="tokens per answer")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (after a warm-up)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2, help="server processes (users spread over them)")
    parser.add_argument("--out", default="client_overhead.json", help="where to write the figures (a relative path)")
    parser.add_argument("--commit", action="store_true", help="write benchmarks/results/client_overhead.json")
    args = parser.parse_args()
    query = f"/v1/chat/completions?ttft_ms={args.ttft_ms:g}&itl_ms={args.itl_ms:g}&max_tokens={args.tokens}&ts=1"
    runs = []
    with ExitStack() as stack:
        bases = [stack.enter_context(server_process())[0] for _ in range(args.servers)]
        urls = [b + query for b in bases]
        for run in range(args.runs):
            result = figures(one_run(urls, args.users, args.seconds, args.warmup), args.ttft_ms, args.itl_ms)
            runs.append(result)
            print(f"run {run + 1}: TTFT drift p50 {result['ttft_drift_p50_ms']:.2f} ms p99 "
                  f"{result['ttft_drift_p99_ms']:.2f} ms, ITL drift p50 {result['itl_drift_p50_ms']:.2f} ms p99 "
                  f"{result['itl_drift_p99_ms']:.2f} ms, {result['cpu_ms_per_1000_tokens']:.1f} ms CPU per 1,000 "
                  f"tokens, {result['tokens_per_s']:,.0f} tokens/s", file=sys.stderr)
    keys = ("ttft_drift_p50_ms", "ttft_drift_p99_ms", "itl_drift_p50_ms", "itl_drift_p99_ms", "delivery_p50_ms",
            "delivery_p99_ms", "cpu_ms_per_1000_tokens", "tokens_per_s", "loop_lag_p99_ms")
    print_table(["figure", f"range over {args.runs} runs"], [[k, span([r[k] for r in runs])] for k in keys])
    doc = {"machine": machine(), "users": args.users, "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms,
           "tokens": args.tokens, "seconds": args.seconds, "warmup_s": args.warmup, "servers": args.servers,
           "runs": runs, "ranges": {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in keys}}
    path = RESULTS / "client_overhead.json" if args.commit else Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
