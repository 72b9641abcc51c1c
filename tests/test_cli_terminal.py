"""`fanin stream` for people (issue 15): readable on an 80-column terminal (a real
pseudo-terminal), plain when piped, and retries shown as they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ptyrun import run_in_pty

ROOT = Path(__file__).resolve().parent.parent
FANIN = [sys.executable, "-m", "fanin"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), NO_PROXY="*")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BOX = set("─│┃┏┓┗┛━┡┩└┘┌┐├┤┬┴┼╇╈")


def long_url(server) -> str:
    return server.url("/stream?count=3&size=5&label=" + "a-long-feed-name-" * 5 + "end")


def test_pretty_at_80_columns_fits_and_never_cuts_a_value(sse_server, unused_port):
    url, refused = long_url(sse_server), f"http://127.0.0.1:{unused_port}/refused"
    status, screen = run_in_pty([*FANIN, "stream", url, refused, "--retries", "1", "--format", "pretty"],
                                columns=80, env=ENV, cwd=ROOT)
    assert status == 1
    plain = ANSI.sub("", screen)
    lines = plain.splitlines()
    assert max(len(line) for line in lines) <= 80, plain
    assert "\x1b[" in screen  # colour on a terminal
    row = next(line for line in lines if line.lstrip().startswith("0 ") and "completed" in line)
    shown = row.split()[-1]
    # the URL is whole, or shortened in its middle: its start and its end are both there
    assert shown == url or (shown.endswith("…" + shown.split("…")[1]) and url.startswith(shown.split("…")[0])
                            and url.endswith(shown.split("…")[1]))
    assert "partial: 3 events from 2 sources" in plain
    # the error, wrapped at the width, is there whole
    assert f"cannot connect to {refused}: connection refused (gave up after 2 attempts)" in " ".join(
        line.strip() for line in lines)


def test_pretty_piped_is_plain_lines_without_padding(sse_server, unused_port):
    url, refused = long_url(sse_server), f"http://127.0.0.1:{unused_port}/refused"
    env = dict(ENV, COLUMNS="110")  # what a 110-column terminal around the pipe would say
    result = subprocess.run([*FANIN, "stream", url, refused, "--retries", "0", "--format", "pretty"],
                            capture_output=True, env=env, cwd=ROOT, timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "\x1b" not in out and not BOX & set(out)
    assert all(line == line.rstrip() for line in out.splitlines())
    lines = out.splitlines()
    assert any(line.startswith("partial: 3 events from 2 sources in ") for line in lines)
    assert "source  status     events  reconnects  url" in lines
    assert f"0       completed       3           0  {url}" in lines
    assert f"1       failed          0           0  {refused}" in lines
    assert f"[1] cannot connect to {refused}: connection refused" in lines


def test_a_source_that_never_connected_is_retried_not_reconnected(unused_port):
    refused = f"http://127.0.0.1:{unused_port}/x"
    result = subprocess.run([*FANIN, "stream", refused, "--retries", "2", "--format", "pretty"],
                            capture_output=True, env=ENV, cwd=ROOT, timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "reconnecting" not in out
    assert f"[0] cannot connect to {refused}: connection refused; retrying (attempt 2 of 3)" in out
    assert f"[0] cannot connect to {refused}: connection refused; retrying (attempt 3 of 3)" in out
    assert re.search(rf"^0 +failed +0 +0  {re.escape(refused)}$", out, re.M), out  # 0 reconnects


def test_a_stream_that_drops_is_reconnecting_with_its_attempt(sse_server):
    url = sse_server.url("/stream?count=6&abort_every=3&retry=5&tag=pretty-attempts")
    result = subprocess.run([*FANIN, "stream", url, "--format", "pretty"], capture_output=True, env=ENV, cwd=ROOT,
                            timeout=60)
    out = result.stdout.decode()
    assert result.returncode == 0
    assert re.search(r"^\[0\] connection cut mid-stream.*; reconnecting \(attempt 2 of 4\)$", out, re.M), out
    assert re.search(r"^0 +completed +6 +1  http", out, re.M), out


def test_the_demo_fits_80_columns_on_a_terminal():
    status, screen = run_in_pty([*FANIN, "demo"], columns=80, env=ENV, cwd=ROOT, timeout=60)
    plain = ANSI.sub("", screen)
    assert status == 0
    assert max(len(line) for line in plain.splitlines()) <= 80, plain
    assert "reconnecting (attempt 2 of 4)" in plain.replace("\n", " ")
    assert re.search(r"^ *2 +completed +45 +3 +http://127\.0\.0\.1:", plain, re.M), plain


def test_control_characters_from_a_server_never_reach_the_terminal_raw(sse_server):
    """An event could otherwise recolour the terminal, retitle its window or hide a line
    (OSC, CSI, CR). On a terminal they are written out as \\xNN; piped, the data is exact."""
    import base64

    body = ("event: x\x1b[8m\nid: 7\x07\ndata: title\x1b]0;pwned\x07 red\x1b[31m\x9b2J end\n\n").encode()
    url = sse_server.url("/raw?content_type=text/event-stream&b64=" + base64.urlsafe_b64encode(body).decode())
    shown = "title\\x1b]0;pwned\\x07 red\\x1b[31m\\x9b2J end"
    for fmt in ("text", "pretty"):
        status, screen = run_in_pty([*FANIN, "stream", url, "--format", fmt, "--reconnect", "never"],
                                    env=ENV, cwd=ROOT)
        assert status == 0, screen
        assert "pwned\x07" not in screen and "\x1b]0;" not in screen and "\x9b" not in screen, repr(screen)
        assert shown in ANSI.sub("", screen).replace("\n", ""), repr(screen)
    piped = subprocess.run([*FANIN, "stream", url, "--format", "text", "--reconnect", "never"],
                           capture_output=True, env=ENV, cwd=ROOT, timeout=60)
    assert piped.stdout == "title\x1b]0;pwned\x07 red\x1b[31m\x9b2J end\n".encode()
