"""Run a command under a real pseudo-terminal of a given width (as a user's terminal is),
and collect everything it prints there."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


def run_in_pty(argv: Sequence[str], *, columns: int = 80, env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike | None = None, timeout: float = 60) -> tuple[int, str]:
    """(exit status, what the terminal received, CR LF turned into LF) for `argv` with
    stdout and stderr on a `columns`-wide terminal; COLUMNS is set too, as shells do."""
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    full_env = dict(os.environ if env is None else env, COLUMNS=str(columns), TERM="xterm-256color")
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=child_fd, stderr=child_fd,
                            env=full_env, cwd=cwd, close_fds=True)
    os.close(child_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv[:3]} did not end within {timeout} s")
            ready, _, _ = select.select([main_fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main_fd, 65536)
                except OSError:  # EIO: the child side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(main_fd)
    return status, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
