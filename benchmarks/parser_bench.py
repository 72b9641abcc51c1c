"""Parser throughput: fanin's SSEParser against the parsers inside httpx-sse and
sseclient-py, on the same bytes fed in the same 64 KiB chunks (no network involved).

    .venv/bin/python benchmarks/parser_bench.py [--events N] [--chunk BYTES] [--repeat R]

Prints events/s and microseconds per event (best of R runs) for two streams:
  data-only  N x `data: <64 bytes>\\n\\n`, the common LLM-token shape
  id+data    N x `id: <n>\\ndata: <64 bytes>\\n\\n`, the throughput benchmark's shape
  mixed      N events with `event:` and `id:` lines, CRLF ends, a comment every 10th
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanin.parser import SSEParser  # noqa: E402

PAYLOAD = b"x" * 56 + b"01234567"  # 64 bytes


def data_only_stream(n: int) -> bytes:
    return (b"data: " + PAYLOAD + b"\n\n") * n


def id_data_stream(n: int) -> bytes:
    return b"".join(b"id: %d\ndata: %s\n\n" % (i, PAYLOAD) for i in range(1, n + 1))


def mixed_stream(n: int) -> bytes:
    parts = []
    for i in range(n):
        if i % 10 == 0:
            parts.append(b": keep-alive\r\n")
        parts.append(b"event: update\r\nid: %d\r\ndata: {\"n\": %d, \"text\": \"%s\"}\r\n\r\n" % (i, i, PAYLOAD[:40]))
    return b"".join(parts)


def chunks_of(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def run_fanin(chunks: list[bytes]) -> int:
    parser = SSEParser()
    count = 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    return count


def run_httpx_sse(chunks: list[bytes]) -> int:
    """httpx-sse's own pipeline: incremental UTF-8 text, its line splitter, its decoder."""
    from httpx_sse._decoders import SSEDecoder, SSELineDecoder

    text_decoder = codecs.getincrementaldecoder("utf-8")("replace")
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    count = 0
    for chunk in chunks:
        for line in lines.decode(text_decoder.decode(chunk)):
            if decoder.decode(line) is not None:
                count += 1
    return count


def run_sseclient(chunks: list[bytes]) -> int:
    import sseclient

    return sum(1 for _ in sseclient.SSEClient(iter(chunks)).events())


RUNNERS = {"fanin": run_fanin, "httpx-sse": run_httpx_sse, "sseclient-py": run_sseclient}


def best_time(runner, chunks: list[bytes], repeat: int) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = runner(chunks)
        best = min(best, time.perf_counter() - start)
    return best, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--chunk", type=int, default=64 * 1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=sorted(RUNNERS), help="run one parser only")
    args = ap.parse_args()

    streams = {"data-only": data_only_stream(args.events), "id+data": id_data_stream(args.events),
               "mixed": mixed_stream(args.events)}
    print(f"{args.events} events per stream, {args.chunk}-byte chunks, best of {args.repeat}, Python {sys.version.split()[0]}")
    print(f"{'stream':<10} {'parser':<13} {'events/s':>12} {'us/event':>9} {'vs fanin':>9}")
    for stream_name, body in streams.items():
        chunks = chunks_of(body, args.chunk)
        fanin_rate = None
        for name, runner in RUNNERS.items():
            if args.only and name != args.only:
                continue
            try:
                seconds, count = best_time(runner, chunks, args.repeat)
            except ImportError as exc:
                print(f"{stream_name:<10} {name:<13} skipped ({exc})")
                continue
            if count != args.events:
                print(f"{stream_name:<10} {name:<13} counted {count} events, expected {args.events}")
            rate = count / seconds
            if name == "fanin":
                fanin_rate = rate
            ratio = f"{fanin_rate / rate:.1f}x" if fanin_rate and name != "fanin" else ""
            print(f"{stream_name:<10} {name:<13} {rate:>12,.0f} {1e6 * seconds / count:>9.3f} {ratio:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
