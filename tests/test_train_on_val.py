"""``data.train_on_val``: the validation classes train too (Snell et al.'s "trainval" models).

Training draws from train + validation classes; the validation tasks are then of seen classes,
so the run keeps its last checkpoint (never the best fit of those classes) and chooses no
adaptation on them; a dataset validating on anything but held-out classes refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_runner import run_cli
from metalearner.errors import ConfigError
from metalearner.evaluation.choice import stored_choice
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.runs.folder import BEST, LATEST
from metalearner.search import SearchPlan
from metalearner.tasks import EpisodeSampler
from metalearner.training.loop import meta_train
from omniglot_fixture import write_fake_omniglot

BACKGROUND = {f"Bg{i}": 2 for i in range(7)}
EVALUATION = {"EvalA": 3, "EvalB": 3}
TINY = ["data.dataset=omniglot", "data.split=lake", "data.ways=2", "data.queries=3",
        "val_tasks=4", "test_tasks=4", "model.width=8", "model.depth=2"]  # fmt: skip


@pytest.fixture
def omniglot(tmp_path: Path) -> Path:
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    return tmp_path


def test_training_draws_from_the_validation_classes_too_and_validation_is_unchanged(
    omniglot: Path,
) -> None:
    plain_cfg = load_config(overrides=[*TINY, "data.rotations=false"])
    cfg = load_config(overrides=[*TINY, "data.rotations=false", "data.train_on_val=true"])
    plain, ours = (build_experiment(c, data_dir=omniglot) for c in (plain_cfg, cfg))
    assert isinstance(plain.train, EpisodeSampler) and isinstance(ours.train, EpisodeSampler)
    val = set(ours.meta["split"]["val"])
    assert val and not val & set(plain.train.classes.tolist())
    assert set(ours.train.classes.tolist()) == set(plain.train.classes.tolist()) | val
    drawn = ours.training_batch(0, 200, torch.Generator().manual_seed(0)).classes
    assert drawn is not None and val & set(drawn.flatten().tolist())
    for mine, theirs in ((ours.val_tasks(cfg), plain.val_tasks(plain_cfg)),
                         (ours.test_tasks(cfg), plain.test_tasks(plain_cfg))):  # fmt: skip
        assert torch.equal(mine.batch(0, 4).query_x, theirs.batch(0, 4).query_x)
    rotated = build_experiment(load_config(overrides=[*TINY, "data.train_on_val=true"]),
                               data_dir=omniglot)  # fmt: skip
    assert isinstance(rotated.train, EpisodeSampler)
    assert len(rotated.train.classes) == 4 * len(ours.train.classes)  # each rotation a class


def test_the_run_keeps_its_last_checkpoint_not_the_best_on_seen_classes(omniglot: Path) -> None:
    """At every validation the best checkpoint is this step's, though scores on 4 two-way tasks
    go down or stay as often as they rise."""
    sets = ["strategy=protonet", "strategy_config.train_ways=2", "steps=24", "val_every=2"]
    cfg = load_config(overrides=[*TINY, *sets, "data.train_on_val=true"])
    folder = omniglot / "run"
    seen: list[int] = []

    def best_is_now(step: int, score: float) -> None:
        assert load_checkpoint(folder / BEST).meta["step"] == step
        seen.append(step)

    result = meta_train(cfg, folder, data_dir=omniglot, quiet=True, on_validation=best_is_now)
    assert seen == list(range(2, 25, 2))
    assert result.best is not None and result.best["step"] == result.step == 24


def test_no_adaptation_is_chosen_on_validation_classes_that_were_trained_on(
    omniglot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = ["strategy=maml", "steps=2", "val_every=2", "meta_batch=2", "data.train_on_val=true"]
    cfg = load_config(overrides=[*TINY, *sets])
    meta_train(cfg, omniglot / "run", data_dir=omniglot)
    assert "No adaptation was chosen: the validation classes were trained on" in (
        capsys.readouterr().out
    )
    for name in (BEST, LATEST):
        assert stored_choice(load_checkpoint(omniglot / "run" / name).meta, "maml") is None


def test_datasets_without_validation_classes_refuse_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sinusoid validates on regression tasks"):
        load_config(overrides=["data.dataset=sinusoid", "data.train_on_val=true"])
    with pytest.raises(ConfigError, match=r"fewrel validates on held-out examples of its class"):
        load_config(overrides=["data.dataset=fewrel", "data.train_on_val=true"])
    result = run_cli("train", "--preset", "sinusoid-k5-maml", "--set", "data.train_on_val=true",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: data.train_on_val adds validation classes to training, but sinusoid validates "
        "on regression tasks; unset data.train_on_val."
    ]
    assert not any(tmp_path.iterdir())


def test_a_search_refuses_it_since_it_chooses_on_the_validation_classes() -> None:
    with pytest.raises(ConfigError, match=r"search without it, then train the chosen settings"):
        SearchPlan(strategies=("protonet",), overrides=("data.train_on_val=true",))
