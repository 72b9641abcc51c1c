"""Shared plumbing for the benchmark scripts: the built-in server in its own process, the
`fanin` command, machine facts for the results, and writing JSON + PNG under results/."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PEERS = ROOT / "benchmarks" / "peers"
PYTHON = sys.executable


@functools.cache
def byte_compile_fanin() -> None:
    """Write fanin's bytecode, as pip does for every package it installs (the peers' and
    aiohttp's included). This checkout is installed editable: under PYTHONDONTWRITEBYTECODE
    each `fanin` process would otherwise compile its own source again (~30 ms of start-up
    that no installed copy pays)."""
    import compileall

    compileall.compile_dir(str(ROOT / "fanin"), quiet=1)


def fanin_command() -> list[str]:
    """The installed console script when present, else the module (same code either way)."""
    byte_compile_fanin()
    script = Path(PYTHON).with_name("fanin")
    return [str(script)] if script.exists() else [PYTHON, "-m", "fanin"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def listening_process(cmd_for_port, *, preexec_fn=None):
    """A server started as `cmd_for_port(port)` on a free loopback port in another process;
    yields (base URL, process) once it accepts connections, and stops it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        cmd_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec_fn, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode(errors='replace').strip()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit("server did not start within 20 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def server_process(extra: list[str] | None = None, nofile: int | None = None):
    """`fanin serve` on a free loopback port in another process; yields (base URL, process)."""

    def raise_limit() -> None:
        if nofile:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

    with listening_process(lambda port: [*fanin_command(), "serve", "--port", str(port), *(extra or [])],
                           preexec_fn=raise_limit) as running:
        yield running


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def save_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    return path


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain aligned table (first column left, the rest right), fit for a README too."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def fmt(row):
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)]
        return "| " + " | ".join(cells) + " |"

    print(fmt(headers))
    print("|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|")
    for row in rows:
        print(fmt(row))
