"""The plugin READMEs (readme/README.md, English; readme/README_zh_Hans.md, Chinese) say the
same and match the tool YAMLs: every parameter and output variable of every tool is in
both, every name their tables list exists, the seed plugin's migration is in both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sse_request", "dify_chatflow_sse", "dify_app")
SEED_PARAMETERS = ("url", "headers", "query_params", "auth_type", "auth_token", "auth_header", "timeout",
                   "max_events", "max_duration", "retry_attempts")
READMES = {"en": ROOT / "readme" / "README.md", "zh": ROOT / "readme" / "README_zh_Hans.md"}


def tool_names(tool: str) -> tuple[set[str], set[str]]:
    doc = yaml.safe_load((ROOT / "tools" / f"{tool}.yaml").read_text(encoding="utf-8"))
    return {p["name"] for p in doc["parameters"]}, set(doc["output_schema"]["properties"])


def heading(text: str, tool: str) -> int:
    return re.search(rf"^### .*`{tool}`", text, re.M).start()


def section(text: str, tool: str) -> str:
    """From the tool's heading to the next tool heading (the app tools share their outputs)."""
    start = heading(text, tool)
    ends = [i for i in (heading(text, t) for t in TOOLS) if i > start]
    return text[start:min(ends) if ends else len(text)]


def table_names(text: str) -> set[str]:
    """Every `name` in the first column of a table."""
    names: set[str] = set()
    for row in re.findall(r"^\| ([^|]+)\|", text, re.M):
        names.update(re.findall(r"`([a-z_]+)`", row))
    return names


@pytest.mark.parametrize("lang", list(READMES))
@pytest.mark.parametrize("tool", TOOLS)
def test_every_parameter_and_variable_is_in_the_readme(lang, tool):
    text = READMES[lang].read_text(encoding="utf-8")
    params, outputs = tool_names(tool)
    tables = table_names(section(text, tool))
    assert params <= tables, f"{lang}: {tool} lacks parameters {sorted(params - tables)}"
    shared = table_names(text[heading(text, "dify_app"):text.index("\n## ", heading(text, "dify_app"))])
    where = tables if tool == "sse_request" else shared
    assert outputs <= where, f"{lang}: {tool} lacks output variables {sorted(outputs - where)}"


def test_the_readme_tables_name_nothing_the_tools_do_not_have():
    known: set[str] = set()
    for tool in TOOLS:
        params, outputs = tool_names(tool)
        known |= params | outputs
    for lang, path in READMES.items():
        text = path.read_text(encoding="utf-8")
        tool_part = text[text.index("## "):text.index("\n## ", heading(text, "dify_app"))]
        assert table_names(tool_part) <= known, f"{lang}: unknown names {sorted(table_names(tool_part) - known)}"


def test_both_readmes_name_the_same_things_and_have_the_same_sections():
    english, chinese = (p.read_text(encoding="utf-8") for p in READMES.values())
    assert table_names(english) == table_names(chinese)
    assert len(re.findall(r"^## ", english, re.M)) == len(re.findall(r"^## ", chinese, re.M))
    assert "## Privacy" in english and "## 隐私" in chinese and "PRIVACY.md" in chinese
    assert english.count("```yaml") == chinese.count("```yaml") >= 4   # the Marketplace examples


@pytest.mark.parametrize("lang", list(READMES))
def test_the_seed_plugin_migration_names_each_change_and_its_option(lang):
    text = READMES[lang].read_text(encoding="utf-8")
    heading = "## Coming from the seed plugin" if lang == "en" else "## 从旧版插件"
    migration = text[text.index(heading):text.index("\n## ", text.index(heading) + 3)]
    for name in SEED_PARAMETERS:
        assert f"`{name}`" in migration
    for option in ("`output_mode: ndjson`", "`events_returned`", "`events`", "`language: zh_Hans`",
                   '{"type": "error"', "`error`"):
        assert option in migration, (lang, option)


def test_docs_dify_lists_every_parameter_with_its_english_and_chinese_label():
    docs = (ROOT / "docs" / "dify.md").read_text(encoding="utf-8")
    for tool in TOOLS:
        doc = yaml.safe_load((ROOT / "tools" / f"{tool}.yaml").read_text(encoding="utf-8"))
        part = docs[docs.index(f"#### `{tool}` parameters"):]
        for p in doc["parameters"]:
            row = next((line for line in part.splitlines() if line.startswith(f"| `{p['name']}`")), "")
            assert f"| {p['label']['en_US']} | {p['label']['zh_Hans']} |" in row, (tool, p["name"])
        _, outputs = tool_names(tool)
        assert all(f"`{name}`" in docs for name in outputs)
