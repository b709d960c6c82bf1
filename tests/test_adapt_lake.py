"""Lake's 20-way runs laid out as a user's task folders and scored through `metalearner adapt`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from metalearner.config.presets import get_preset
from metalearner.runs.config import load_config
from metalearner.tasks import export_lake_runs
from metalearner.training.loop import meta_train

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_lake_runs_as_folders_are_adapted_to_from_the_command_line(
    data_dir: Path, tmp_path: Path
) -> None:
    runs = export_lake_runs(tmp_path / "lake", data_dir)
    assert [r.name for r in runs] == [f"run{i:02d}" for i in range(1, 21)]
    first = runs[0]
    classes = sorted(p.name for p in (first / "support").iterdir())
    assert len(classes) == 20 and classes == sorted(p.name for p in (first / "query").iterdir())
    assert all(len(list((first / "query" / c).glob("*.png"))) == 1 for c in classes)

    # Brief meta-training on the background alphabets only: the runs' alphabets stay unseen.
    cfg = load_config(
        base=get_preset("omniglot-20w1s-protonet").load(),
        overrides=["data.split=lake", "steps=30", "val_every=30", "val_tasks=10"],
    )
    meta_train(cfg, tmp_path / "run", data_dir=data_dir, quiet=True)
    accuracies = []
    for run in runs[:3]:
        result = subprocess.run(
            [sys.executable, "-m", "metalearner", "adapt", str(tmp_path / "run"),
             "--support", str(run / "support"), "--query", str(run / "query"),
             "--output", str(run / "predictions.csv")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "adapted protonet to 20 classes from 20 examples" in result.stdout
        found = re.search(r"accuracy ([\d.]+)% \((\d+)/20\)", result.stdout)
        assert found, result.stdout
        accuracies.append(float(found.group(1)))
    # Chance is 5%; even 30 steps of ProtoNets make a one-shot classifier many times better.
    assert sum(accuracies) / len(accuracies) > 30.0, accuracies
