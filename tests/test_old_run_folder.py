"""A run folder written by the code before the reorganisation still evaluates, adapts, resumes.

The fixture (tests/fixtures/README.md says how it was made) is a real run folder of
metalearner 0.1.0 at commit 9458b0b: its config.yaml, metrics.jsonl and checkpoints are as that
code wrote them, checkpoints without the metadata digest included.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import metalearner
from cli_runner import run_cli
from metalearner.evaluation import evaluate
from metalearner.runs.folder import read_metrics, read_run_config
from metalearner.tasks import SinusoidTasks
from metalearner.training import meta_train

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0-sinusoid-maml"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    return folder


def test_the_fixture_is_of_the_old_format() -> None:
    meta = json.loads((FIXTURE / "checkpoints" / "latest" / "meta.json").read_text())
    assert "meta_sha256" not in meta and meta["step"] == 3


def test_an_old_run_folder_evaluates(old_run: Path) -> None:
    result = evaluate(old_run, num_tasks=8, curve=False)
    assert result.metric == "mse" and result.score.mean >= 0 and (old_run / "eval.json").is_file()
    cli = run_cli("evaluate", str(old_run), "--tasks", "8", cwd=old_run.parent)
    assert cli.returncode == 0, cli.stderr
    assert "(8 tasks)" in cli.stdout


def test_an_old_run_folder_adapts(old_run: Path) -> None:
    task = SinusoidTasks(shots=10, queries=5).sample(1, generator=torch.Generator().manual_seed(3))
    learner = metalearner.load(old_run)
    prediction = learner.adapt(task.support_x[0], task.support_y[0]).predict(task.query_x[0])
    assert prediction.scores.shape[0] == 5 and bool(torch.isfinite(prediction.scores).all())


def test_an_old_run_folder_resumes_to_its_end(old_run: Path) -> None:
    result = meta_train(read_run_config(old_run), old_run, resume=True, quiet=True)
    assert result.step == 6
    assert [r["step"] for r in read_metrics(old_run)] == [1, 2, 3, 4, 5, 6]
