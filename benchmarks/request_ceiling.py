"""Client ceiling in request mode: the highest token rate one client process measures while
the latency it adds stays under 1 ms at p99, `fanin load --mode requests` side by side with
Locust (plain HttpUser, peers/locust_requests.py) doing the same job.

The built-in OpenAI-compatible server (`fanin serve`, --servers processes, requests spread
over them) streams chat completions of --tokens tokens --itl-ms apart and stamps every token
chunk with its wall clock at send (`ts=1` -> `fanin_sent_ns`). Client and server share the
clock on loopback, so arrival minus stamp is the delivery latency: the network plus the time
the token waited for the client. A floor (peers/raw_requests_floor.py: bare sockets, a byte
search for the stamps) measures what the machine alone adds; a tool's added latency is its p99
minus the floor's p99 in the same step and round. Each step runs U users (closed loop) for --seconds after a
1 s warm-up, offering about U x 1000/itl tokens/s. A tool's ceiling in one round is the most
tokens/s it measured at a step where its added p99 stayed under 1 ms (no failed requests).
Tools run as whole processes, interleaved, with the starting tool rotating.

    .venv/bin/python benchmarks/request_ceiling.py [--users 1,2,5,10,20,40,80,160] [--runs 3]

Writes benchmarks/results/request_ceiling.json, .txt and .png."""

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
from common import PEERS, PYTHON, RESULTS, fanin_command, machine, median, print_table, save_json, server_process  # noqa: E402

LIMIT_MS = 1.0
TOOLS = ("fanin", "locust", "floor")


def run_fanin(urls: list[str], users: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [*fanin_command(), "load", "--mode", "requests", *urls, "-c", str(users), "-d", f"{seconds + 1}s",
               "--warmup", "1s", "--json-body", '{"model": "m", "stream": true}', "--extract",
               "choices.0.delta.content", "--stop-on", "[DONE]", "--latency-field", "fanin_sent_ns",
               "--grace", "5s", "--no-progress", "--json", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=seconds + 60)
        report = orjson.loads(Path(out).read_bytes())
    lat = report["latency_ms"]["latency"]
    return {
        "tokens_per_s": report["tokens"]["per_s"],
        "p50_ms": lat["p50"], "p99_ms": lat["p99"], "samples": lat["count"],
        "failed": report["requests"]["failed"],
        "cpu_us_per_token": report["client"]["cpu_seconds"] * 1e6 / max(report["tokens"]["total"], 1),
        "loop_lag_p99_ms": report["latency_ms"]["lag"]["p99"],
        "saturated": report["client"]["saturated"],
    }


def run_locust(urls: list[str], users: int, seconds: float) -> dict:
    base, _, query = urls[0].partition("/v1/")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        env = {**os.environ, "PEER_PATH": "/v1/" + query, "PEER_WARMUP_S": "1", "PEER_RESULT": out,
               "PEER_BASES": " ".join(u.partition("/v1/")[0] for u in urls)}
        locust = Path(PYTHON).with_name("locust")
        cmd = [str(locust), "-f", str(PEERS / "locust_requests.py"), "--headless", "-u", str(users),
               "-r", str(users), "-t", f"{seconds + 1:g}s", "--host", base, "--only-summary",
               "--loglevel", "ERROR", "--stop-timeout", "5"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       timeout=seconds + 60)
        result = orjson.loads(Path(out).read_bytes())
    return {"tokens_per_s": result["tokens_per_s"], "p50_ms": result["latency_ms"]["p50"],
            "p99_ms": result["latency_ms"]["p99"], "samples": result["latency_count"], "failed": result["failed"],
            "cpu_us_per_token": result["cpu_us_per_token"]}


def run_floor(urls: list[str], users: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [PYTHON, str(PEERS / "raw_requests_floor.py"), ",".join(urls), str(users), f"{seconds:g}", "1", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=seconds + 60)
        result = orjson.loads(Path(out).read_bytes())
    return {"tokens_per_s": result["tokens_per_s"], "p50_ms": result["latency_ms"]["p50"],
            "p99_ms": result["latency_ms"]["p99"], "samples": result["latency_count"], "failed": 0,
            "cpu_us_per_token": result["cpu_us_per_token"]}


RUNNERS = {"fanin": run_fanin, "locust": run_locust, "floor": run_floor}


def added_p99(step: dict, tool: str, run: int) -> float:
    """The tool's p99 delivery latency above the floor's, same step, same round."""
    return step["runs"][tool][run]["p99_ms"] - step["runs"]["floor"][run]["p99_ms"]


def ceiling(steps: list[dict], tool: str, run: int) -> float:
    """The most tokens/s the tool measured in one round at a step where the latency it added
    (its p99 above the floor's) stayed under the limit, with no failed request."""
    best = 0.0
    for step in steps:
        r = step["runs"][tool][run]
        if added_p99(step, tool, run) < LIMIT_MS and not r["failed"]:
            best = max(best, r["tokens_per_s"])
    return best


def chart(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, constrained_layout=True)
    offered = [s["offered"] for s in doc["steps"]]
    for tool, style in zip(TOOLS, ("-o", "-s", ":^")):
        p99 = [median([r["p99_ms"] for r in s["runs"][tool]]) for s in doc["steps"]]
        rate = [median([r["tokens_per_s"] for r in s["runs"][tool]]) for s in doc["steps"]]
        top.plot(offered, p99, style, label=f"{tool}")
        bottom.plot(offered, rate, style, label=f"{tool}")
    floor = [median([r["p99_ms"] for r in s["runs"]["floor"]]) for s in doc["steps"]]
    top.plot(offered, [f + LIMIT_MS for f in floor], ":", color="red", label="limit: floor + 1 ms")
    top.set_yscale("log")
    top.set_ylabel("token delivery latency p99 (ms, log)")
    top.legend(fontsize=8)
    top.grid(True, which="both", alpha=0.3)
    bottom.plot(offered, offered, ":", color="grey", label="offered")
    bottom.set_ylabel("tokens/s measured by the client")
    bottom.set_xlabel("offered token rate (tokens/s, log scale)")
    bottom.set_xscale("log")
    bottom.legend(fontsize=8)
    bottom.grid(True, alpha=0.3)
    fig.suptitle(f"One client process, request mode: median of {doc['runs']} runs; ITL {doc['itl_ms']:g} ms, "
                 f"{doc['tokens']} tokens per request\nfloor: bare-socket reader (what the machine adds); "
                 f"{doc['servers']} server processes on the same 2 cores", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,2,5,10,20,40,80,160")
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2, help="server processes (requests spread over them)")
    args = parser.parse_args()
    users = [int(u) for u in args.users.split(",")]
    query = f"/v1/chat/completions?ttft_ms=0&itl_ms={args.itl_ms:g}&max_tokens={args.tokens}&ts=1"
    steps = [{"users": u, "offered": round(u * 1000 / args.itl_ms), "runs": {t: [] for t in TOOLS}} for u in users]
    with ExitStack() as stack:
        bases = [stack.enter_context(server_process())[0] for _ in range(args.servers)]
        urls = [b + query for b in bases]
        for run in range(args.runs):
            for index, step in enumerate(steps):
                shift = (run + index) % len(TOOLS)
                for tool in TOOLS[shift:] + TOOLS[:shift]:
                    result = RUNNERS[tool](urls, step["users"], args.seconds)
                    step["runs"][tool].append(result)
                    print(f"run {run + 1} users {step['users']:>4} {tool:>6}: {result['tokens_per_s']:>9,.0f} tok/s, "
                          f"p99 {result['p99_ms']} ms", file=sys.stderr)
    doc = {"machine": machine(), "itl_ms": args.itl_ms, "tokens": args.tokens, "seconds": args.seconds,
           "runs": args.runs, "servers": args.servers, "limit_ms": LIMIT_MS, "steps": steps}
    doc["ceiling_tokens_per_s"] = {t: [ceiling(steps, t, r) for r in range(args.runs)] for t in TOOLS[:2]}
    headers = ["offered tok/s", "users", "floor p99 ms"]
    for tool in TOOLS[:2]:
        headers += [f"{tool} tok/s", f"{tool} p99 ms", f"{tool} added p99 ms", f"{tool} CPU µs/token"]
    rows = []
    for s in steps:
        floors = [r["p99_ms"] for r in s["runs"]["floor"]]
        row = [f"{s['offered']:,}", str(s["users"]), f"{min(floors):.2f}-{max(floors):.2f}"]
        for tool in TOOLS[:2]:
            rates = [r["tokens_per_s"] for r in s["runs"][tool]]
            p99s = [r["p99_ms"] for r in s["runs"][tool]]
            added = [added_p99(s, tool, r) for r in range(args.runs)]
            cpus = [r["cpu_us_per_token"] for r in s["runs"][tool]]
            row += [f"{min(rates):,.0f}-{max(rates):,.0f}", f"{min(p99s):.2f}-{max(p99s):.2f}",
                    f"{min(added):.2f}-{max(added):.2f}", f"{min(cpus):.0f}-{max(cpus):.0f}"]
        rows.append(row)
    print_table(headers, rows)
    for tool in TOOLS[:2]:
        values = doc["ceiling_tokens_per_s"][tool]
        print(f"{tool}: ceiling (p99 at most {LIMIT_MS:g} ms above the floor's) {min(values):,.0f}-{max(values):,.0f} tokens/s "
              f"over {args.runs} runs")
    save_json("request_ceiling", doc)
    chart(doc, RESULTS / "request_ceiling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
