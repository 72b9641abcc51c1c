"""Every code example in README.md and docs/*.md runs as written.

Each fenced block is found automatically (a new docs page or section is picked up with no
change here):
- ```python blocks run as scripts;
- ```bash blocks run as bash scripts (`set -e -o pipefail`) with .venv/bin first on PATH.

Both run in a temporary folder against a real `fanin serve` this module starts on a free
loopback port; the examples are written for the default port 8765, and `:8765` is the one
thing rewritten. A `fanin serve ... &` line in a bash example is the server this module
already runs, so it is left out (with a `kill %1` that would stop it). Every URL an example opens must be on 127.0.0.1, and every
example must end by itself (`--max-events`, `-d`, `-n`, `count=`): a run is bounded.

An example that cannot run here (it needs the internet, a real API key or Dify, or takes
minutes) carries an explicit marker on the line directly above its fence:

    <!-- not run: needs an API key -->

Those are counted and listed, never run. A ```python block whose first line is a comment
naming a file (`# locustfile.py`) is also written under that name next to every example of
the same page, so a bash example can use it (`locust -f locustfile.py ...`). Blocks in other languages (json, yaml, text
diagrams) are illustrations, not examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import server_process

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*not run:\s*(.+?)\s*-->\s*$")
SERVE_LINE = re.compile(r"^\s*fanin serve\b[^\n&]*&\s*(#.*)?$")
KILL_SERVER = re.compile(r"^\s*kill %1\s*(#.*)?$")  # stops the job a left-out `fanin serve &` line started
EXAMPLE_TIMEOUT = 90


@dataclass(frozen=True)
class Example:
    path: Path
    line: int            # 1-based line of the opening fence
    language: str        # python | bash
    code: str
    not_run: str | None  # the marker's reason

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(fence line, info language, code, not-run reason) for every fenced block of a file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening.groups()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence[0] * len(fence)):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        blocks.append((start + 1, language.lower(), "\n".join(body) + "\n", marker.group(1) if marker else None))
    return blocks


def collect() -> list[Example]:
    examples = []
    for path in DOCS:
        for line, language, code, reason in fenced_blocks(path):
            if language in RUN_LANGUAGES:
                examples.append(Example(path, line, RUN_LANGUAGES[language], code, reason))
    return examples


EXAMPLES = collect()
TO_RUN = [e for e in EXAMPLES if e.not_run is None]
NAMED_FILE = re.compile(r"^#\s*([\w.-]+\.py)\s*$")


def files_of_page(path: Path) -> dict[str, str]:
    """The named ```python blocks of a page: file name -> code."""
    named = {}
    for example in EXAMPLES:
        first = example.code.split("\n", 1)[0]
        if example.path == path and example.language == "python" and NAMED_FILE.match(first):
            named[NAMED_FILE.match(first).group(1)] = example.code
    return named
NOT_RUN = [e for e in EXAMPLES if e.not_run is not None]


def test_the_examples_are_found_and_every_skipped_one_is_marked():
    assert len(DOCS) >= 8, [p.name for p in DOCS]  # README plus the pages per face
    assert len(TO_RUN) >= 15, f"only {len(TO_RUN)} runnable examples found"
    for example in NOT_RUN:
        assert len(example.not_run) >= 8, f"{example.name}: say why it is not run"
    print(f"\n{len(TO_RUN)} examples run, {len(NOT_RUN)} marked not run:")
    for example in NOT_RUN:
        print(f"  {example.name}: {example.not_run}")


def test_a_marker_stands_only_above_a_fence():
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if MARKER.match(line):
                assert n + 1 < len(lines) and FENCE.match(lines[n + 1]), \
                    f"{path.relative_to(ROOT)}:{n + 1}: a not-run marker must sit directly above a fence"


@pytest.fixture(scope="module")
def server_port() -> int:
    with server_process() as base:
        yield int(base.rsplit(":", 1)[1])


def prepare(example: Example, port: int) -> str:
    code = example.code.replace("127.0.0.1:8765", f"127.0.0.1:{port}").replace("localhost:8765", f"127.0.0.1:{port}")
    if example.language == "bash":
        served = any(SERVE_LINE.match(line) for line in code.splitlines())
        code = "\n".join("" if SERVE_LINE.match(line) or (served and KILL_SERVER.match(line)) else line
                          for line in code.splitlines()) + "\n"
        code = "set -e -o pipefail\n" + code
    for url in re.findall(r"https?://[^\s'\"\\)]+", code):
        host = re.sub(r"^https?://([^/:?#]+).*$", r"\1", url)
        assert host == "127.0.0.1", f"{example.name}: {url} is not on 127.0.0.1 (mark the example not run)"
    return code


@pytest.mark.parametrize("example", TO_RUN, ids=[e.name for e in TO_RUN])
def test_example_runs_as_written(example, server_port, tmp_path):
    code = prepare(example, server_port)
    for name, text in files_of_page(example.path).items():
        (tmp_path / name).write_text(prepare(Example(example.path, example.line, "python", text, None), server_port),
                                     encoding="utf-8")
    script = tmp_path / ("example.py" if example.language == "python" else "example.sh")
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               NO_PROXY="*", PYTHONPATH=str(ROOT))
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    command = [sys.executable, str(script)] if example.language == "python" else ["bash", str(script)]
    try:
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=EXAMPLE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{example.name} did not end within {EXAMPLE_TIMEOUT} s: bound it (--max-events, -d, count=)")
    assert proc.returncode == 0, (f"{example.name} exited {proc.returncode}\n--- stdout\n{proc.stdout[-1500:]}"
                                  f"\n--- stderr\n{proc.stderr[-1500:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-1500:]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a page, plus explicit <a id="...">."""
    text = path.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)"', text))
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip()
            found.add(re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-"))
    return found


def test_every_relative_link_points_at_a_file_and_heading_that_exist():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            assert linked.exists(), f"{path.relative_to(ROOT)}: {target} does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{path.relative_to(ROOT)}: no heading #{anchor} in {file_part or path.name}"
