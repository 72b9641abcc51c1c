"""`pip install sse-fanin` is the engine alone. The wheel `make wheel` builds is installed with
no extra into a fresh venv (made with uv; the engine's three dependencies come from the package
registry, or uv's cache): the library and `fanin stream` work against a loopback server, and the
faces that need an extra say which one in one line (exit 2).

This is an install test like tests/test_dify_package.py: it builds a wheel and a venv once per
session (a few seconds with a warm uv cache)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")
ENGINE_DEPENDENCIES = {"aiohttp", "orjson"}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([str(UV), "build", "-q", "--wheel", "--out-dir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("sse_fanin-*-py3-none-any.whl")
    return path


@pytest.fixture(scope="session")
def bare_venv(wheel, tmp_path_factory) -> Path:
    """A venv with the wheel and no extra; returns its bin folder."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    env = dict(os.environ, VIRTUAL_ENV=str(venv))
    proc = subprocess.run([str(UV), "pip", "install", "-q", str(wheel)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return venv / "bin"


def run(bin_dir: Path, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # run outside the checkout, so nothing but the installed wheel can be imported
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or bin_dir, env=dict(os.environ, NO_PROXY="*"))


def test_the_wheel_requires_only_the_engine_and_offers_each_face_as_an_extra(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert all(n.startswith(("fanin/", "sse_fanin-")) for n in names), names
    assert "fanin/py.typed" in names
    core = {line.split(":", 1)[1].strip().split("<")[0].split(">")[0].split("=")[0].strip()
            for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert core == ENGINE_DEPENDENCIES
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert extras == {"cli", "load", "locust", "dify", "all"}


def test_bare_install_has_no_face_dependencies(bare_venv):
    proc = run(bare_venv, "python", "-c",
               "import importlib.util as u, fanin, fanin.merge, fanin.parser\n"
               "print([m for m in ('rich', 'hdrh', 'httptools', 'uvloop', 'locust', 'dify_plugin') if u.find_spec(m)])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_library_runs_on_the_bare_install(bare_venv, sse_server, tmp_path):
    script = tmp_path / "use.py"
    script.write_text(
        "import asyncio, contextlib, sys\n"
        "from fanin import FanIn, Request\n"
        "async def main():\n"
        "    fan = FanIn([Request(sys.argv[1])], max_events=3)\n"
        "    async with contextlib.aclosing(fan.stream()) as items:\n"
        "        async for item in items:\n"
        "            print(item.data)\n"
        "    print(fan.summary.status)\n"
        "asyncio.run(main())\n")
    proc = run(bare_venv, "python", str(script), sse_server.url("/stream?count=5"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == "completed", proc.stdout


def test_fanin_stream_works_without_extras(bare_venv, sse_server):
    proc = run(bare_venv, "fanin", "stream", sse_server.url("/stream?count=3"), "--format", "ndjson")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["type"] for r in records] == ["event"] * 3 + ["summary"]
    assert proc.stderr == ""


def test_fanin_stream_on_a_terminal_without_rich_prints_text(bare_venv, sse_server):
    # pretty is the terminal default only when rich is installed; without it, plain text
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([str(bare_venv / "fanin"), "stream", sse_server.url("/stream?count=2&size=4")],
                              stdout=follower, stderr=subprocess.PIPE, text=True, timeout=60, cwd=bare_venv)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    lines = out.decode().splitlines()
    assert len(lines) == 2 and all(not line.startswith("{") for line in lines), out


@pytest.mark.parametrize(("argv", "extra", "what"), [
    (["load", "{url}", "-d", "1s"], "load", "fanin load"),
    (["load", "--mode", "requests", "{url}", "-n", "1"], "load", "fanin load"),
    (["stream", "{url}", "--format", "pretty"], "cli", "fanin stream --format pretty"),
    (["demo", "--format", "pretty"], "cli", "fanin demo --format pretty"),
])
def test_a_face_without_its_extra_says_so_in_one_line(bare_venv, sse_server, argv, extra, what):
    url = sse_server.url("/stream?count=1")
    proc = run(bare_venv, "fanin", *[a.format(url=url) for a in argv])
    assert proc.returncode == 2
    assert proc.stderr == f"fanin: error: {what} needs the [{extra}] extra: pip install 'sse-fanin[{extra}]'\n"
    assert proc.stdout == ""


def test_the_refusal_comes_before_any_request(bare_venv, fresh_server):
    proc = run(bare_venv, "fanin", "load", fresh_server.url("/stream?count=0&rate=1"), "-d", "5s")
    assert proc.returncode == 2
    assert fresh_server.stats.total_requests == 0


def test_building_and_installing_this_checkout_prints_no_warning(tmp_path):
    """What `make` runs (an editable install) and what `make wheel` makes: pip shows the build
    backend's warnings, and none may come from our pyproject.toml (setuptools warned about the
    license table and about its editable strategy). The machine's own pip configuration is
    left out, so only this checkout can cause a warning."""
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    for command in ([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-e", str(ROOT)],
                    [*pip, "wheel", "--no-deps", "-w", str(tmp_path / "wheel"), str(ROOT)]):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        output = proc.stdout + proc.stderr
        assert "warn" not in output.lower(), output[-3000:]
        assert "Successfully" in output
