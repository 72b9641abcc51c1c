"""The library surface: public names visible to type checkers as well as at run time, the
PEP 561 marker shipped in the wheel, async-generator annotations (aclosing needs aclose),
and what iterating a FanIn twice does."""

from __future__ import annotations

import ast
import collections.abc
import contextlib
import shutil
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import pytest

import fanin
from fanin.errors import UsageError
from fanin.merge import FanIn
from fanin.stream import Request, StreamConfig

ROOT = Path(__file__).resolve().parent.parent


def _names_bound_statically(tree: ast.Module) -> set[str]:
    """Names a type checker sees bound in a module: imports and assignments at the top
    level or under `if TYPE_CHECKING:` (not those a module __getattr__ makes up)."""
    names: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(node.body)

    visit(tree.body)
    return names


def test_every_public_name_is_visible_to_type_checkers_and_at_run_time():
    tree = ast.parse((ROOT / "fanin" / "__init__.py").read_text())
    bound = _names_bound_statically(tree)
    missing = [name for name in fanin.__all__ if name not in bound]
    assert missing == [], f"only reachable through __getattr__: {missing}"
    for name in fanin.__all__:
        assert getattr(fanin, name) is not None
    from fanin.events import Batch
    from fanin.stream import StreamObserver

    assert fanin.Batch is Batch and fanin.StreamObserver is StreamObserver
    assert fanin.FanIn is FanIn and fanin.Request is Request and fanin.StreamConfig is StreamConfig
    with pytest.raises(AttributeError):
        fanin.NoSuchThing  # noqa: B018


def test_stream_methods_are_annotated_as_async_generators():
    for method in (FanIn.stream, FanIn.stream_batches):
        hint = typing.get_type_hints(method)["return"]
        assert typing.get_origin(hint) is collections.abc.AsyncGenerator, (method, hint)


def test_the_wheel_ships_the_py_typed_marker(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "fanin", source / "fanin", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(out)], check=True, capture_output=True, timeout=120)
    (wheel,) = out.glob("*.whl")
    assert "fanin/py.typed" in zipfile.ZipFile(wheel).namelist()


async def test_a_fanin_runs_once_and_says_so_when_iterated_again(sse_server):
    fan = FanIn([Request(sse_server.url("/stream?count=3"))])
    async with contextlib.aclosing(fan.stream()) as items:
        first = [item async for item in items]
    assert len(first) == 3 and fan.summary.total_events == 3
    for again in (fan.stream, fan.stream_batches):
        with pytest.raises(UsageError) as info:
            async with contextlib.aclosing(again()) as items:
                [item async for item in items]
        assert "already run" in str(info.value) and "new FanIn" in str(info.value)
    assert fan.summary.total_events == 3  # the first run's summary is left as it was


def test_a_request_without_a_json_body_stays_so_through_pickle():
    """`fanin load --workers` pickles requests into other processes: the 'no JSON body'
    marker must survive, or a GET would arrive there with a JSON body of `object()`."""
    import pickle

    from fanin.stream import MISSING

    copy = pickle.loads(pickle.dumps(Request("http://127.0.0.1:1/x")))
    assert copy.json is MISSING
    assert copy.body_bytes() is None
