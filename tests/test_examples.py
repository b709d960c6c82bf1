"""The scripts in examples/ run as a user runs them, and do what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_maml_on_your_tensors_adapts_new_tasks(tmp_path: Path) -> None:
    out = _run("maml_on_your_tensors.py", "--steps", "150", cwd=tmp_path)
    before, after = map(float, re.search(r"([\d.]+) before, ([\d.]+) after", out).groups())
    assert after < 0.5 * before, out


@pytest.mark.slow
def test_your_own_model_learns_new_classes_with_maml_protonet_and_anil(tmp_path: Path) -> None:
    out = _run("your_own_model.py", "--steps", "15", "--width", "4", cwd=tmp_path)
    scores = re.findall(r"(\w+): new classes, (\d+)% before, (\d+)% after", out)
    assert [name for name, _, _ in scores] == ["maml", "protonet", "anil"], out
    for _, before, after in scores:
        assert int(after) >= int(before) + 20 and int(after) >= 60, out  # chance is 20%


@pytest.mark.slow
def test_adapt_to_your_files_predicts_classes_it_never_saw(tmp_path: Path) -> None:
    out = _run("adapt_to_your_files.py", "--out", str(tmp_path / "ex"), "--steps", "100",
               cwd=tmp_path)  # fmt: skip
    right, total = map(int, re.search(r"(\d+) of (\d+) query images right", out).groups())
    assert right >= 0.6 * total, out  # chance is a third
    assert (tmp_path / "ex" / "run" / "checkpoints" / "best" / "meta.json").is_file()


@pytest.mark.slow
def test_your_own_strategy_passes_the_contract_and_trains_by_name(tmp_path: Path) -> None:
    out = _run("your_own_strategy.py", "--steps", "150", cwd=tmp_path)
    assert "contract: passed" in out
    accuracy = float(re.search(r"accuracy ([\d.]+)% ±", out).group(1))
    assert accuracy > 30, out  # chance is 20% at 5-way


def test_every_example_is_tested() -> None:
    tested = set(re.findall(r'"(\w+\.py)"', Path(__file__).read_text()))
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested
