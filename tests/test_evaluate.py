"""Evaluation: the 95% interval, the curve over steps, and test tasks unseen in training."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from metalearner.evaluation.evaluator import (
    Score,
    curve_steps,
    evaluate,
    format_score,
    summarize,
    task_curves,
    task_scores,
)
from metalearner.nn.backbones import build_model
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.strategies import build
from metalearner.tasks import SinusoidTasks
from metalearner.training.loop import meta_train

sys.path.insert(0, str(Path(__file__).parent))
from omniglot_fixture import write_fake_omniglot

TINY_OMNIGLOT = [
    "data.dataset=omniglot",
    "data.ways=3",
    "data.shots=1",
    "data.queries=2",
    "data.meta_train_classes=10",
    "data.val_classes=3",
    "model.width=8",
    "model.depth=2",
]


def test_the_interval_is_1_96_sd_over_root_n() -> None:
    scores = torch.tensor([0.5, 1.0, 0.75, 1.0], dtype=torch.float64)
    got = summarize(scores, 3)
    assert got.mean == pytest.approx(0.8125)
    assert got.ci95 == pytest.approx(1.96 * float(scores.std()) / 2)
    assert summarize(torch.tensor([0.3], dtype=torch.float64)).ci95 == 0.0


def test_lines_read_as_in_the_papers() -> None:
    assert format_score("accuracy", Score(1, 0.98123, 0.0031), 600) == (
        "accuracy 98.12% ± 0.31 (600 tasks)"
    )
    assert format_score("mse", Score(1, 0.5123, 0.031), 600).startswith("mse 0.5123 ± 0.031")
    assert curve_steps(3) == [0, 1, 2, 3]
    assert curve_steps(50)[-1] == 50 and len(curve_steps(50)) < 12


def test_evaluate_writes_a_score_and_a_curve(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            *("data.dataset=sinusoid", "steps=4", "val_every=2", "val_tasks=3", "threads=1"),
            *("meta_batch=4", "strategy_config.inner_lr=0.01", "strategy_config.eval_steps=3"),
        ]
    )
    meta_train(cfg, tmp_path / "run", quiet=True)
    # 3 steps as asked (by default, the steps chosen on validation: tests/test_adapt_choice.py)
    result = evaluate(tmp_path / "run", num_tasks=12, steps=3)
    assert result.metric == "mse" and result.num_tasks == 12 and result.score.steps == 3
    assert [p.steps for p in result.curve] == [0, 1, 2, 3]
    assert result.curve[-1] == result.score
    saved = json.loads((tmp_path / "run/eval.json").read_text())
    assert saved["line"] == result.line() and len(saved["curve"]) == 4
    assert re.fullmatch(r"mse \S+ ± \S+ \(12 tasks\)", result.line())
    again = evaluate(tmp_path / "run", num_tasks=12, steps=1, curve=False)
    assert again.curve == [] and math.isclose(again.score.mean, result.curve[1].mean)


def test_test_tasks_are_never_training_or_validation_tasks(tmp_path: Path) -> None:
    write_fake_omniglot(tmp_path)
    cfg = load_config(
        overrides=[*TINY_OMNIGLOT, "strategy=protonet", "strategy_config.train_ways=null"]
    )
    exp = build_experiment(cfg, data_dir=tmp_path)
    train_classes = set(exp.train.classes.tolist())  # type: ignore[attr-defined]
    val = exp.val_tasks(cfg).batch(0, cfg.val_tasks)
    test = exp.test_tasks(cfg, 50).batch(0, 50)
    assert val.classes is not None and test.classes is not None
    test_classes, val_classes = (
        set(test.classes.flatten().tolist()),
        set(val.classes.flatten().tolist()),
    )
    assert not test_classes & train_classes and not test_classes & val_classes
    assert not val_classes & train_classes
    sine = load_config(overrides=["data.dataset=sinusoid"])
    sexp = build_experiment(sine)
    v = sexp.val_tasks(sine).batch(0, 10).info["amplitude"]
    t = sexp.test_tasks(sine, 10).batch(0, 10).info["amplitude"]
    assert not torch.equal(v, t)


@pytest.mark.parametrize("name", ["maml", "scratch", "reptile"])
def test_one_pass_curves_equal_adapting_afresh_for_each_step(name: str) -> None:
    model = build_model("mlp", (1,), 1, generator=0)
    strategy = build(name, model, {"eval_steps": 4})
    params = strategy.init_params(0)
    tasks = SinusoidTasks(shots=5, queries=5).fixed(6, seed=0)
    steps = [0, 1, 3, 4]
    curves = task_curves(strategy, params, tasks, steps, batch_size=4)
    assert curves.shape == (4, 6)
    for row, s in zip(curves, steps, strict=True):
        assert torch.allclose(row, task_scores(strategy, params, tasks, steps=s), rtol=1e-6)
    assert not torch.equal(curves[0], curves[-1])  # adaptation changed the predictions


def test_a_folder_run_evaluated_from_elsewhere_says_its_path_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from metalearner.errors import DataError

    for c in range(8):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(3):
            Image.new("L", (10, 10), 25 * c + i).save(tmp_path / "data" / f"c{c}" / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # train where the data is, with a relative data.path
    cfg = load_config(
        overrides=[
            *("data.dataset=folder", "data.path=data", "data.ways=2", "data.queries=1"),
            *("data.meta_train_classes=4", "data.val_classes=2", "model.width=4", "model.depth=2"),
            *("strategy=protonet", "strategy_config.train_ways=2", "steps=2", "val_every=2"),
            *("val_tasks=2", "threads=1"),
        ]
    )
    meta_train(cfg, tmp_path / "run", quiet=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"data\.path data is relative to the folder training ran"):
        evaluate(tmp_path / "run", num_tasks=2)
    result = evaluate(tmp_path / "run", num_tasks=2, data_path=Path("../data"))
    assert result.metric == "accuracy" and result.num_tasks == 2


def test_a_split_of_a_dataset_without_splits_is_refused(tmp_path: Path) -> None:
    from metalearner.errors import ConfigError

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("data:\n  dataset: sinusoid\n")
    with pytest.raises(ConfigError, match="A sinusoid run has no splits") as err:
        evaluate(tmp_path / "run", split="pubmed")
    assert "vinyals" not in str(err.value)
    with pytest.raises(ConfigError, match="--path is for runs trained on a folder or table"):
        evaluate(tmp_path / "run", data_path=tmp_path)
