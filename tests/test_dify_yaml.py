"""The plugin's YAML loads through the SDK's own models (in a subprocess: importing
dify_plugin patches the whole process with gevent) and keeps the plugin daemon's
stricter rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tools.dify_result import STREAMED_VARIABLES, VARIABLES

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("en_US", "zh_Hans", "ja_JP", "pt_BR")

SDK_CHECK = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
from dify_plugin.config.config import DifyPluginEnv
from dify_plugin.core.plugin_registration import PluginRegistration
reg = PluginRegistration(DifyPluginEnv())
provider, provider_cls, tools = reg.tools_mapping["sse_fanin"]
print(json.dumps({
    "name": reg.configuration.name, "author": reg.configuration.author, "version": reg.configuration.version,
    "runner": reg.configuration.meta.runner.version, "entrypoint": reg.configuration.meta.runner.entrypoint,
    "credentials": len(provider.credentials_schema),
    "tools": {name: {"class": cls.__name__, "params": [p.name for p in conf.parameters],
                     "secret": [p.name for p in conf.parameters if p.type.value == "secret-input"],
                     "outputs": sorted((conf.output_schema or {}).get("properties", {}))}
              for name, (conf, cls) in tools.items()},
    "assets": [f.filename for f in reg.files],
    "app_permission": reg.configuration.resource.permission.app.enabled,
}))
"""


def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))


def test_yaml_loads_through_the_sdk_models():
    proc = subprocess.run([sys.executable, "-c", SDK_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["name"] == "sse_fanin" and got["author"] == "sse-fanin" and got["version"] == "0.1.0"
    assert got["runner"] == "3.12" and got["entrypoint"] == "main"
    assert got["credentials"] == 0  # nothing to authorise
    sse, chat = got["tools"]["sse_request"], got["tools"]["dify_chatflow_sse"]
    assert sse["params"] == ["url", "method", "headers", "query_params", "body", "auth_type", "auth_token",
                             "auth_header", "timeout", "idle_timeout", "max_events", "max_duration",
                             "retry_attempts", "reconnect", "stop_on", "extract", "output_mode", "language"]
    assert sse["secret"] == ["auth_token"] and chat["secret"] == ["api_key"]
    assert sse["outputs"] == sorted(["status", "total_events", "connection_duration", "answer", "events",
                                     "sources", "error"])
    assert chat["outputs"] == sorted(VARIABLES + STREAMED_VARIABLES)
    assert chat["params"][:3] == ["api_base", "api_key", "app_type"]
    picker = got["tools"]["dify_app"]
    assert picker["class"] == "DifyAppTool" and picker["outputs"] == sorted(VARIABLES + STREAMED_VARIABLES)
    assert picker["params"] == ["app", "app_type", "query", "inputs", "conversation_id", "max_duration",
                                "remember_conversation", "show_progress"]
    assert got["app_permission"] is True
    assert "icon.svg" in got["assets"]


def _i18n_objects(node, path=""):
    if isinstance(node, dict):
        if "en_US" in node:
            yield path, node
        for key, value in node.items():
            yield from _i18n_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _i18n_objects(value, f"{path}[{index}]")


def test_daemon_rules_versions_author_i18n_icons():
    manifest = load("manifest.yaml")
    assert re.fullmatch(r"[a-z0-9_-]{1,64}", manifest["author"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["meta"]["version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["meta"]["minimum_dify_version"])
    assert manifest["privacy"] == "PRIVACY.md" and (ROOT / "PRIVACY.md").is_file()
    assert set(manifest["tags"]) == {"utilities", "productivity"} and manifest["repo"].startswith("https://")
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", manifest["contact"])
    files = ["manifest.yaml", "provider/sse_fanin.yaml", "tools/sse_request.yaml", "tools/dify_chatflow_sse.yaml",
             "tools/dify_app.yaml"]
    for path in files:
        doc = load(path)
        for where, obj in _i18n_objects(doc):
            for lang, text in obj.items():
                assert lang in LANGS, f"{path}{where}: unknown language {lang}"
                assert isinstance(text, str) and 0 < len(text) < 1024, f"{path}{where}.{lang}"
        for where, obj in _i18n_objects({k: v for k, v in doc.items() if k in ("label", "description", "identity")}):
            if where.endswith(("label", "description", "human")) and "parameters" not in where:
                assert set(obj) == set(LANGS), f"{path}{where} lacks a language"
    provider = load("provider/sse_fanin.yaml")
    for doc in (manifest, provider["identity"]):
        assert (ROOT / "_assets" / doc["icon"]).is_file()
    assert provider["identity"]["author"] == manifest["author"]
    for tool in provider["tools"]:
        doc = load(tool)
        assert doc["identity"]["author"] == manifest["author"]
        assert (ROOT / doc["extra"]["python"]["source"]).is_file()
        assert len(doc["description"]["llm"]) < 1024
        for param in doc["parameters"]:
            assert set(param["label"]) == set(LANGS) and set(param["human_description"]) == set(LANGS)
            assert param.get("llm_description")


def test_max_duration_is_capped_below_the_daemon_limit():
    for tool in ("tools/sse_request.yaml", "tools/dify_chatflow_sse.yaml"):
        params = {p["name"]: p for p in load(tool)["parameters"]}
        assert params["max_duration"]["default"] == 300 and params["max_duration"]["max"] < 600


def test_package_ships_requirements_txt_as_its_only_dependency_file():
    """The plugin daemon installs from pyproject.toml (uv sync) when the package has one;
    ours is the CLI's and lacks dify_plugin, so it must stay out of the .difypkg."""
    ignored = {line.strip() for line in (ROOT / ".difyignore").read_text().splitlines()}
    assert "pyproject.toml" in ignored
    assert "requirements.txt" not in ignored
    pins = (ROOT / "requirements.txt").read_text()
    for package in ("dify_plugin==", "aiohttp==", "orjson=="):
        assert package in pins


def test_minimum_dify_version_matches_the_pinned_sdk():
    """dify_plugin's README maps SDK versions to the Dify they need (0.9.0 and later: 1.14.2)."""
    pin = re.search(r"^dify_plugin==([0-9.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert tuple(int(x) for x in pin.split(".")[:2]) >= (0, 9)   # the Marketplace asks for >= 0.9.0
    assert load("manifest.yaml")["meta"]["minimum_dify_version"] == "1.14.2"


def test_app_picker_parameter_is_a_form_app_selector():
    params = {p["name"]: p for p in load("tools/dify_app.yaml")["parameters"]}
    assert params["app"]["type"] == "app-selector" and params["app"]["form"] == "form"
    assert params["app"]["scope"] == "all" and params["app"]["required"] is True
    assert params["max_duration"]["max"] <= 240
    assert load("manifest.yaml")["resource"]["permission"]["app"]["enabled"] is True
