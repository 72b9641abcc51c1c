"""The package as the Marketplace checks and installs it: built from the staging folder
(pluginpack/build.py, what `make package` runs), unpacked into a temporary folder, given a
fresh venv made from its own requirements.txt alone (with uv, as the plugin daemon does),
started with INSTALL_METHOD=serverless, and both URL tools invoked against loopback."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from fanin.server.app import ServerThread
from fanin.server.dify import dify_answer_for
from test_dify_e2e import Invocation
from tests.serverproc import serverless_plugin

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
RUNTIME_DIRS = {"_assets", "provider", "tools", "fanin", "fanin/embed", "readme"}


def load_builder():
    spec = importlib.util.spec_from_file_location("pluginpack_build", ROOT / "pluginpack" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    path, how = load_builder().build(tmp_path_factory.mktemp("dist"), use_cli=False)
    assert how == "unsigned zip"
    return path


@pytest.fixture(scope="session")
def installed(package, tmp_path_factory) -> tuple[Path, Path]:
    """(unpacked plugin folder, its venv's python): one fresh venv per test session."""
    where = tmp_path_factory.mktemp("installed")
    plugin = where / "plugin"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(plugin)
    venv = where / "venv"
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    env = dict(os.environ, VIRTUAL_ENV=str(venv))
    proc = subprocess.run([str(uv), "pip", "install", "-q", "-r", str(plugin / "requirements.txt")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return plugin, venv / "bin" / "python"


def test_layout_is_what_dify_plugin_package_makes(package):
    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and "manifest.yaml" in names          # sorted, no wrapper folder
    assert not any(n.endswith("/") for n in names)
    assert sum(i.file_size for i in infos) < 50 * 1024 * 1024
    assert {"main.py", "requirements.txt", "PRIVACY.md", "README.md", "readme/README_zh_Hans.md",
            "_assets/icon.svg", "provider/sse_fanin.yaml", "tools/dify_app.yaml"} <= set(names)
    for name in names:   # only what runs: no CLI, load tester, server, tests, caches or dev files
        folder = name.rsplit("/", 1)[0] if "/" in name else ""
        assert folder in RUNTIME_DIRS | {""}, name
        assert not name.endswith((".pyc", "pyproject.toml")) and name != "fanin/__main__.py", name


def test_readme_is_english_links_the_source_and_localised_ones_sit_in_readme(package):
    with zipfile.ZipFile(package) as archive:
        readme = archive.read("README.md").decode()
        manifest = yaml.safe_load(archive.read("manifest.yaml"))
        privacy = archive.read("PRIVACY.md").decode()
        chinese = archive.read("readme/README_zh_Hans.md").decode()
    outside_fences = re.sub(r"```.*?```", "", readme, flags=re.S)
    assert not CJK.search(outside_fences)
    assert manifest["repo"] in readme and privacy.strip() and CJK.search(chinese)
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", manifest["contact"])
    assert "Risk level: high" in readme and "BLOCK_PRIVATE_NETWORKS" in readme


def test_requirements_are_pinned_and_the_sdk_is_recent_enough(package):
    with zipfile.ZipFile(package) as archive:
        lines = [line.strip() for line in archive.read("requirements.txt").decode().splitlines()]
    pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
    assert all(re.fullmatch(r"[0-9][0-9a-z.]*", version) for version in pins.values()), pins
    assert tuple(int(x) for x in pins["dify_plugin"].split(".")[:2]) >= (0, 9)   # the Marketplace's floor


def test_the_installed_package_runs_both_url_tools(installed):
    plugin, python = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BLOCK_PRIVATE_NETWORKS")}
    with serverless_plugin(plugin.parent / "plugin.log", python=str(python), cwd=plugin, env=env,
                           start_timeout=30) as (base, _proc):
        with ServerThread() as server:
            sse = Invocation(base, "sse_request", {"url": server.url("/stream?count=5")})
            chat = Invocation(base, "dify_chatflow_sse", {"api_base": server.url("/v1"),
                                                          "api_key": "app-test-completion",
                                                          "app_type": "completion", "query": "安装 ✅"})
    assert not sse.errors and sse.variables["status"] == "completed" and sse.variables["total_events"] == 5
    assert not chat.errors and chat.text == chat.variables["answer"] == dify_answer_for("安装 ✅", "user-e2e")
