"""The package's shape is checked by tools: import-linter's contracts hold, and they can fail.

The contracts live in pyproject.toml (``[tool.importlinter]``) and scripts/test.sh runs
``lint-imports`` on the package as it is. These tests show that each kind of contract catches
what it forbids, by planting one bad import in a copy of the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "metalearner"
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts on the package found in ``src``."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package to plant imports in; returns its ``src`` folder."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "metalearner", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _plant(src: Path, module: str, line: str) -> None:
    path = src / "metalearner" / (module.replace(".", "/") + ".py")
    text = path.read_text()
    # A top-level import beside the module's own, after its docstring and __future__ import.
    at = re.search(r"^(import|from) (?!__future__)", text, re.M)
    assert at is not None, path
    path.write_text(text[: at.start()] + line + "\n" + text[at.start() :])


def test_the_package_keeps_its_contracts(tmp_path: Path, package_copy: Path) -> None:
    result = _lint(package_copy, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout)


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # A lower stage importing a higher one: the network layers know no command.
        ("nn.layers", "import metalearner.cli.app", "Stages"),
        # The public face is for users; inside the package it would import everything.
        ("tasks.batch", "import metalearner", "public face"),
        # Two modules of one folder importing each other (the run folder reads checkpoints).
        ("runs.checkpoint", "import metalearner.runs.folder", "cycles"),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tmp_path: Path, package_copy: Path, module: str, line: str, broken: str
) -> None:
    _plant(package_copy, module, line)
    result = _lint(package_copy, tmp_path)
    assert result.returncode != 0, result.stdout
    # A planted import may break the no-cycles contract too (the higher stage imports back).
    assert re.search(rf"{broken}.* BROKEN", result.stdout), result.stdout
    assert f".{module.split('.')[-1]}" in result.stdout  # the report names the importer


def test_the_package_root_holds_at_most_five_modules() -> None:
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 5, modules
