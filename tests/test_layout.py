"""The package layout: no module shadows the standard library, and imports point one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".ipynb_checkpoints" not in p.parts)


def test_no_module_or_package_shadows_the_standard_library():
    # `python cfnet/x.py` puts cfnet/ first on sys.path: a cfnet/inspect.py broke `import torch` there.
    clashes = [
        str(p.relative_to(ROOT))
        for folder in ("cfnet", "app")
        for p in [*_modules(folder), *(d for d in (ROOT / folder).rglob("*") if d.is_dir())]
        if p.stem in sys.stdlib_module_names
    ]
    assert clashes == []


def test_torch_imports_with_the_package_folder_first_on_the_path():
    out = subprocess.run(
        [sys.executable, "-c", "import torch, inspect; print(inspect.__file__)"],
        cwd=ROOT / "cfnet",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert str(ROOT / "cfnet") not in out.stdout


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_cfnet_never_imports_the_demo():
    # Only `cfnet demo` starts it: cfnet/cli.py names "app.main" as the command's module, as data.
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imported(p) if n == "app" or n.startswith("app."))
        for p in _modules("cfnet")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_readme_map_names_files_that_exist():
    import re

    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    paths = {p for row in rows for p in re.findall(r"`((?:cfnet|app|notebooks|docs)/[^`\s]*)`", row)}
    assert paths and sorted(p for p in paths if not (ROOT / p).exists()) == []


def _cfnet_modules() -> dict[str, Path]:
    """{dotted name: file} of every module and package of cfnet."""
    names = {}
    for p in _modules("cfnet"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return names


def _import_graph() -> dict[str, set[str]]:
    """{module: the cfnet modules it imports}, function-local imports included (one hides a cycle
    just as well as it breaks it). ``from a.b import c`` imports ``a.b.c`` when that is a module,
    else ``a.b``. A submodule's implicit import of its parent package is no edge: a package that
    imports its own submodules is the usual shape, not a cycle."""
    modules = _cfnet_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from .x import y: relative to the package, one level up per extra dot
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        deps = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_cfnet_has_no_import_cycle():
    # Imports point one way, so none needs to hide inside a function to dodge a cycle: training
    # imports evaluation and runtime, evaluation imports runtime, never the other way round.
    graph = _import_graph()
    assert "cfnet.model" in graph["cfnet.checkpoint"]  # function-local imports count
    assert "cfnet.engine.evaluate" in graph["cfnet.engine.train"]
    assert "cfnet.engine.train" not in graph["cfnet.engine.evaluate"]
    assert _find_cycle(graph) == []


def test_the_model_never_imports_data_or_engine_code():
    graph = _import_graph()
    reached: set[str] = set()
    todo = [m for m in graph if m == "cfnet.model" or m.startswith(("cfnet.modules", "cfnet.heads"))]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    assert {"cfnet.heads.instance", "cfnet.targets", "cfnet.config"} <= reached  # the walk goes deep
    assert sorted(m for m in reached if m.startswith(("cfnet.data", "cfnet.engine"))) == []
