"""The built-in server in a process of its own (`fanin serve --port 0`), for tests where the
server must not share the test process's GIL: fast streams, several servers at once."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
