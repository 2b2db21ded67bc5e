"""The conda environment and the pip project must ask for the same packages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the check needs one interpreter only

ROOT = Path(__file__).resolve().parents[1]


def _name_and_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip_section, "environment.yml must install the project itself"
    conda_reqs = [r for r in pip_section if not r.startswith("-e")]
    assert dict(map(_name_and_spec, conda_reqs)) == dict(map(_name_and_spec, wanted))
    assert "python=3.11" in env["dependencies"]


def test_console_script_is_declared_and_runs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["cfnet"] == "cfnet.cli:main"
    out = subprocess.run([sys.executable, "-m", "cfnet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "bench modules" in out.stdout and "train" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "cfnet", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def test_every_cli_command_module_exists_and_has_entry_points():
    import importlib.util

    from cfnet.cli import COMMANDS

    for words, module, _ in COMMANDS:
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"cfnet {' '.join(words)}: module {module} is missing"
        source = Path(spec.origin).read_text()
        assert "def add_arguments(" in source and "def main(" in source, module


def test_makefile_offers_the_readme_commands():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo:", "test:", "lab:"):
        assert target in makefile
    readme = (ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "make demo" in head and "make test" in head
