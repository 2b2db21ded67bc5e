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
