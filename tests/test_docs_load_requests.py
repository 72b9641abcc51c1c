"""The shell examples of docs/load.md's request-mode and compare sections run as written
against the built-in server on 127.0.0.1 (started here on a free port, which replaces the
documented 8765), each exiting 0, with the files they name written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fanin.server.app import ServerThread

DOC = Path(__file__).resolve().parent.parent / "docs" / "load.md"
SECTIONS = ("## Request mode for LLM servers", "## Comparing runs")


def examples() -> list[str]:
    text = DOC.read_text()
    blocks = []
    for section in re.split(r"(?m)^(?=## )", text):
        if section.startswith(SECTIONS):
            blocks.extend(re.findall(r"```sh\n(.*?)```", section, flags=re.S))
    return blocks


def test_the_sections_have_examples():
    assert len(examples()) >= 4


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs_as_written(index, server, tmp_path):
    script = examples()[index].replace("127.0.0.1:8765", f"127.0.0.1:{server.port}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for name in re.findall(r"--(?:json|csv) (\S+)", script):
        assert (tmp_path / name).stat().st_size > 0
