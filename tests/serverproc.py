"""Processes the tests start and stop: the built-in server in a process of its own (`fanin
serve --port 0`, for tests where the server must not share the test process's GIL), and the
Dify plugin in the SDK's serverless mode (`python -m main`, real POSTs to /invoke)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a process we started: politely, then for sure."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    """Yields the server's base URL (http://127.0.0.1:PORT); stops it on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "fanin", "serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not found:
            raise RuntimeError(f"fanin serve did not start: {line!r}")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        stop(proc)
        if proc.stdout:
            proc.stdout.close()


@contextlib.contextmanager
def serverless_plugin(log_path: Path, *, python: str = sys.executable, cwd: Path = ROOT,
                      env: Mapping[str, str] | None = None,
                      start_timeout: float = 15.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """The Dify plugin (`python -m main`) under the SDK's real serverless runtime on a free
    loopback port, its output in `log_path` (a file, so a full pipe never blocks it). Yields
    (base URL, process) once /health answers; stops it on exit."""
    port = free_port()
    env = {**(os.environ if env is None else env),
           "INSTALL_METHOD": "serverless", "SERVERLESS_HOST": "127.0.0.1", "SERVERLESS_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen([python, "-m", "main"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("the plugin exited: " + log.read().decode(errors="replace")[-2000:])
                try:
                    urllib.request.urlopen(base + "/health", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the plugin did not answer /health within {start_timeout:g} s") from None
                    time.sleep(0.05)
            yield base, proc
        finally:
            stop(proc)
