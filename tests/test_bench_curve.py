"""benchmarks/machine.py's validation curve: the line a missed target's row carries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from machine import validation_curve


def write_run(folder: Path, lines: list[dict[str, float]]) -> Path:
    folder.mkdir()
    (folder / "config.yaml").write_text("steps: 3\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_each_validation_is_given_at_its_training_minute_in_percent(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [
        {"step": 100, "time": 30.0, "loss": 1.5},
        {"step": 200, "time": 90.0, "loss": 1.0, "val_accuracy": 0.905, "val_ci95": 0.0125},
        {"step": 300, "time": 150.0, "loss": 0.8},
        {"step": 400, "time": 270.0, "loss": 0.7, "val_accuracy": 0.9575, "val_ci95": 0.005},
    ])  # fmt: skip
    assert validation_curve(run) == (
        "validation accuracy (%) against training time: 1.5 min 90.50 ± 1.25, 4.5 min 95.75 ± 0.50"
    )


def test_a_score_that_is_not_an_accuracy_is_given_as_logged(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [{"step": 10, "time": 6.0, "val_mse": 0.25}])
    assert validation_curve(run) == "validation mse against training time: 0.1 min 0.25"


def test_a_run_never_validated_says_so(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [{"step": 10, "time": 6.0, "loss": 2.0}])
    assert validation_curve(run) == "validation score against training time: none"
