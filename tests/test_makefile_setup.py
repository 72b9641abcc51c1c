"""The Makefile's set-up as a new user meets it, run as real `make` processes on a copy of the
Makefile in a temporary folder (the checkout's own .venv is never touched): without Python
3.12 it refuses in one line that says how to get it, and a failed set-up leaves no .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def make(where: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "-C", str(where), "--no-print-directory", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=timeout)


@pytest.fixture
def checkout(tmp_path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return tmp_path


def assert_one_line_refusal(proc: subprocess.CompletedProcess, where: Path) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Python 3.12 is needed" in lines[0] and "pyenv" in lines[0] and "python.org" in lines[0], lines[0]
    assert "apt install python3.12" in lines[0]
    assert proc.stdout.strip() == "", proc.stdout
    assert not (where / ".venv").exists()


@pytest.mark.parametrize("target", ["demo", "test"])
def test_a_missing_python_is_one_line_and_no_venv(checkout, target):
    proc = make(checkout, target, "PYTHON=/nonexistent/python3.12")
    assert_one_line_refusal(proc, checkout)
    assert "/nonexistent/python3.12 was not found" in proc.stderr


def test_no_python_on_path_at_all_is_one_line(checkout):
    # neither python3.12 nor python3 on PATH: the Makefile's own fallback finds nothing
    proc = make(checkout, "test", env=dict(os.environ, PATH=str(checkout / "empty-bin")))
    assert_one_line_refusal(proc, checkout)


def other_python() -> str | None:
    """An interpreter on this machine that is not 3.12 (the fallback `python3` on many systems)."""
    for name in ("python3.11", "python3.13", "python3.10", "python3"):
        for folder in ("/usr/bin", "/usr/local/bin"):
            path = Path(folder, name)
            if path.exists():
                out = subprocess.run([str(path), "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
                if out == "False":
                    return str(path)
    return None


def test_a_python_of_another_version_is_refused_before_any_venv(checkout):
    python = other_python()
    if python is None:
        pytest.skip("no Python other than 3.12 on this machine")
    proc = make(checkout, "test", f"PYTHON={python}")
    assert_one_line_refusal(proc, checkout)
    assert f"{python} is 3." in proc.stderr


def test_a_failed_install_removes_the_venv(checkout):
    # A real Python 3.12 builds the venv, then the install fails (offline, a requirement that
    # does not exist): the half-built .venv is removed, so the next `make` starts clean.
    (checkout / "requirements-dev.txt").write_text("./no-such-package-folder\n")
    (checkout / "requirements.txt").write_text("")
    (checkout / "pyproject.toml").write_text("")
    env = dict(os.environ, PIP_NO_INDEX="1")
    proc = make(checkout, "test", f"PYTHON={sys._base_executable}", env=env, timeout=300)
    assert proc.returncode != 0
    assert "[1/2] creating .venv" in proc.stdout and "[2/2] installing" in proc.stdout  # progress, not silence
    assert ".venv was removed, run make again" in proc.stderr
    assert not (checkout / ".venv").exists()


def test_make_demo_runs_the_demo_then_says_how_to_run_fanin(tmp_path):
    # the checkout's own Makefile and venv (this interpreter's), the set-up step taken as done
    venv = Path(sys.prefix)
    proc = make(ROOT, "demo", f"VENV={venv}", "-o", f"{venv}/.installed-dev", "-o", f"{venv}/bin/python",
                timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the demo ran (NDJSON: make's stdout is a pipe here), its summary last before the hint
    assert '"type":"summary","status":"completed"' in proc.stdout, proc.stdout[-1500:]
    activate = f"source {venv}/bin/activate"
    assert f"run '{activate}' once in this shell" in proc.stdout, proc.stdout[-1500:]
    command = next(line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("fanin stream "))
    # what it says works as written: after activating, `fanin` is found and runs
    shell = subprocess.run(["bash", "-c", f"{activate} && command -v fanin && fanin --version"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines()[0] == f"{venv}/bin/fanin"
    assert command.startswith("fanin stream 'http://127.0.0.1:8765/stream?")


def test_make_wheel_builds_the_wheel_pip_installs_with_extras(tmp_path):
    venv = Path(sys.prefix)
    proc = make(ROOT, "wheel", f"VENV={venv}", f"DIST={tmp_path}", "-o", f"{venv}/.installed-dev",
                "-o", f"{venv}/bin/python", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("sse_fanin-*-py3-none-any.whl")
    assert proc.stdout.strip() == str(wheel)
    # what the docs tell a Locust worker machine to run resolves from this file
    # (this venv has every extra's packages, so only the wheel itself would be installed)
    check = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", f"{wheel}[locust]"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "Would install sse-fanin-0.1.0" in check.stdout, check.stdout[-2000:]
