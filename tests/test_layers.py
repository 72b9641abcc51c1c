"""The package's shape is a contract: the engine at `fanin/` top level, each face in its own
subpackage, lower layers never importing higher ones, and no import circle. Read from the
source with `ast`, so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fanin"

# Each face is a package (or module) of its own; what faces share lives in a lower layer
# (fanin.measure, fanin.cli's shared modules), so no face imports another. `fanin demo`
# starts two faces (the server and the stream writer) and so is an entry point.
FACES = ("fanin.load", "fanin.locust", "fanin.server", "fanin.cli.stream_command")


def face_of(module: str) -> str | None:
    return next((face for face in FACES if module == face or module.startswith(face + ".")), None)


# Lowest first. A module may import its own layer or lower ones, never a higher one.
LAYERS = [
    ("engine", lambda m: m.count(".") == 1 or m == "fanin"),
    ("embed", lambda m: m.startswith("fanin.embed")),
    ("cli-shared", lambda m: m in {"fanin.cli", "fanin.cli.options", "fanin.cli.writers", "fanin.cli.runloop", "fanin.cli.lazy_tls",
                                   "fanin.cli.durations", "fanin.cli.console", "fanin.cli.sink", "fanin.cli.url_lists",
                                   "fanin.cli.fd_limit"}),
    ("measure", lambda m: m.startswith("fanin.measure")),
    ("faces", lambda m: face_of(m) is not None and not m.endswith("__main__")),
    ("entry", lambda m: m in {"fanin.cli.main", "fanin.cli.demo", "fanin.__main__"} or m.endswith("__main__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for index in range(len(LAYERS) - 1, -1, -1):
        if LAYERS[index][1](module):
            return index
    raise AssertionError(f"{module} belongs to no layer")


def imports_of(path: Path, module: str) -> set[str]:
    """Every fanin module that `path` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fanin"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "fanin":
                continue
            for alias in node.names:  # `from fanin.cli import runloop` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {name for name in found if name != module}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_every_module_has_a_layer_and_imports_only_known_modules():
    for name, targets in GRAPH.items():
        layer_of(name)
        unknown = {t for t in targets if t not in MODULES}
        assert not unknown, f"{name} imports unknown fanin modules {unknown}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_lower_layers_never_import_higher_ones(name):
    own = layer_of(name)
    higher = {t: LAYERS[layer_of(t)][0] for t in GRAPH[name] if layer_of(t) > own}
    assert not higher, f"{name} ({LAYERS[own][0]}) imports higher layers: {higher}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if face_of(m) and not m.endswith("__main__")))
def test_faces_never_import_other_faces(name):
    own = face_of(name)
    others = {t for t in GRAPH[name] if face_of(t) not in (None, own)}
    assert not others, f"{name} (face {own}) imports other faces: {others}"


def test_the_layer_rules_see_a_face_importing_a_face():
    """The rule itself can fail: the imports the demo and fanin.locust had before the
    measure layer are caught."""
    assert face_of("fanin.locust.report") != face_of("fanin.load.report")
    assert face_of("fanin.cli.stream_command") != face_of("fanin.server.app")
    assert layer_of("fanin.measure.metrics") < layer_of("fanin.locust.recorder")


def test_no_import_circle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


# fanin.locust's contract is `from fanin.locust import SSEUser` (see its docstring).
PUBLIC_INITS = {"fanin", "fanin.locust"}


def test_subpackage_inits_import_nothing():
    """A subpackage's __init__ runs whenever any of its modules is imported: keeping it empty
    keeps start-up cheap and can never close a circle."""
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name not in PUBLIC_INITS:
            assert not GRAPH[name], f"{name}/__init__.py imports {GRAPH[name]}"


def test_the_engine_and_its_faces_never_import_dify_plugin():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "dify_plugin" for n in names), f"{name} imports dify_plugin"
