"""The outer loop: run folder contents, exact resume, schedules, clipping and the NaN guard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import metalearner.training.loop as train_module
import metalearner.training.run as run_module
from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import RunConfig, load_config
from metalearner.runs.folder import (
    BEST,
    append_metrics,
    create_run,
    load_state,
    read_metrics,
    read_run_config,
    run_lock,
)
from metalearner.strategies.maml import MAML
from metalearner.strategies.reptile import Reptile
from metalearner.tasks import TaskBatch
from metalearner.tasks.batch import ORDER
from metalearner.training.loop import TrainingDivergedError, lr_factor, meta_train

SINE = [
    "data.dataset=sinusoid",
    "data.shots=5",
    "data.queries=5",
    "val_tasks=4",
    "meta_batch=4",
    "threads=1",
]


def sine(*extra: str) -> RunConfig:
    return load_config(overrides=[*SINE, "strategy_config.inner_lr=0.01", *extra])


def test_a_run_folder_holds_config_metrics_and_checkpoints(tmp_path: Path) -> None:
    cfg = sine("steps=12", "val_every=5", "log_every=2")
    result = meta_train(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    assert result.step == 12 and result.metric == "mse"
    assert read_run_config(run) == cfg
    lines = read_metrics(run)
    assert [r["step"] for r in lines] == [2, 4, 5, 6, 8, 10, 12]
    assert {"time", "loss", "mse", "lr"} <= set(lines[0])
    assert "val_mse" in lines[2] and "val_ci95" in lines[2]
    latest = load_checkpoint(run / "checkpoints/latest")
    assert latest.meta["step"] == 12 and latest.meta["strategy"] == "maml"
    assert latest.meta["backbone"]["name"] == "mlp" and latest.meta["input_shape"] == [1]
    assert latest.meta["config"]["steps"] == 12 and latest.meta["precision"] == "float32"
    assert set(latest.group("rng")) >= {"tasks", "torch"}
    assert latest.group("optim")  # Adam's moments travel with the parameters
    params = latest.group("params")
    assert all(torch.equal(params[k], result.params[k]) for k in result.params)
    assert result.best is not None
    best = load_checkpoint(run / "checkpoints/best")
    assert best.meta["step"] == result.best["step"]


@pytest.mark.parametrize(
    "extra",
    [
        ("strategy=maml", "optimizer.schedule=cosine", "optimizer.clip=0.5"),
        ("strategy=reptile", "optimizer.lr=0.5", "strategy_config={}"),
    ],
)
def test_a_stopped_and_resumed_run_ends_bit_identical(tmp_path: Path, extra: tuple[str]) -> None:
    overrides = [*SINE, "steps=17", "val_every=4", *extra]
    if "strategy=maml" in extra:
        overrides.append("strategy_config.inner_lr=0.01")
    cfg = load_config(overrides=overrides)
    whole = meta_train(cfg, tmp_path / "whole", quiet=True)
    part = meta_train(cfg, tmp_path / "part", quiet=True, stop_at=9)
    assert part.step == 9
    resumed = meta_train(read_run_config(tmp_path / "part"), tmp_path / "part", resume=True)
    assert resumed.step == 17
    for k, v in whole.params.items():
        assert torch.equal(v, resumed.params[k]), k
    steps = [r["step"] for r in read_metrics(tmp_path / "part")]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_schedules_are_pure_functions_of_the_step() -> None:
    cos = sine("steps=100", "optimizer.schedule=cosine")
    assert lr_factor(cos.optimizer, 0, 100) == 1.0
    assert lr_factor(cos.optimizer, 50, 100) == pytest.approx(0.5)
    lin = sine("steps=100", "optimizer.schedule=linear")
    assert lr_factor(lin.optimizer, 75, 100) == pytest.approx(0.25)
    step = sine("optimizer.schedule=step", "optimizer.decay_every=10", "optimizer.decay_rate=0.5")
    factors = [lr_factor(step.optimizer, s, step.steps) for s in (0, 9, 10, 25)]
    assert factors == [1.0, 1.0, 0.5, 0.25]
    # RFS's cuts after epochs 60 and 80 (of 600 steps), each milestone a factor of the base lr.
    fixed = sine("optimizer.schedule=step", "optimizer.milestones=[[36000, 0.1], [48000, 0.01]]")
    factors = [lr_factor(fixed.optimizer, s, 60000) for s in (0, 35999, 36000, 47999, 48000)]
    assert factors == [1.0, 1.0, 0.1, 0.1, 0.01]
    # Its decay_every is unused, so not derived from steps: more steps still resume the run.
    longer = sine("steps=600", "optimizer.schedule=step", "optimizer.milestones=[[36, 0.1]]")
    assert longer.optimizer.decay_every is None


def test_a_runs_sgd_steps_with_its_momentum_nesterov_and_weight_decay(tmp_path: Path) -> None:
    sgd = ["steps=2", "val_every=2", "optimizer.name=sgd", "optimizer.lr=0.01"]
    sgd += ["optimizer.momentum=0.9", "optimizer.nesterov=true"]
    result = meta_train(sine(*sgd, "optimizer.weight_decay=0.1"), tmp_path / "run", quiet=True)
    ckpt = load_checkpoint(tmp_path / "run/checkpoints/latest")
    (group,) = ckpt.meta["optimizer"]["param_groups"]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 0.1)
    buffers = list(ckpt.group("optim"))  # SGD's state: one momentum buffer a parameter
    assert len(buffers) == len(result.params)
    assert all(name.endswith("momentum_buffer") for name in buffers)
    # The same two steps without the decay land elsewhere: the penalty reached the update.
    plain = meta_train(sine(*sgd), tmp_path / "plain", quiet=True)
    assert all(not torch.equal(v, plain.params[k]) for k, v in result.params.items())


def test_nan_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = run_module.build_experiment

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        exp = real(*args, **kwargs)
        inner = exp.strategy.meta_grads
        calls = {"n": 0}

        def meta_grads(params: dict[str, torch.Tensor], batch: TaskBatch) -> Any:
            calls["n"] += 1
            grads, metrics = inner(params, batch)
            if calls["n"] == 7:
                metrics = {**metrics, "loss": math.nan}
            return grads, metrics

        exp.strategy.meta_grads = meta_grads  # type: ignore[method-assign]
        return exp

    monkeypatch.setattr(run_module, "build_experiment", poisoned)
    with pytest.raises(TrainingDivergedError) as err:
        meta_train(sine("steps=10", "val_every=3"), tmp_path / "run", quiet=True)
    message = str(err.value)
    assert "step 7" in message and "checkpoints/latest" in message and "optimizer.lr" in message
    meta = json.loads((tmp_path / "run/checkpoints/latest/meta.json").read_text())
    assert meta["step"] == 6


def test_bfloat16_precision_trains(tmp_path: Path) -> None:
    for strategy in ("maml", "reptile"):
        cfg = load_config(
            overrides=[*SINE, f"strategy={strategy}", "steps=3", "precision=bfloat16"]
        )
        result = meta_train(cfg, tmp_path / strategy, quiet=True)
        assert all(torch.isfinite(v).all() for v in result.params.values())


def test_a_time_budget_stops_early_with_a_validated_checkpoint(tmp_path: Path) -> None:
    cfg = sine("steps=1000000", "val_every=100000", "time_budget=0.5")
    result = meta_train(cfg, tmp_path / "run", quiet=True)
    assert 0 < result.step < 1_000_000
    latest = load_checkpoint(tmp_path / "run/checkpoints/latest")
    assert latest.meta["step"] == result.step  # saved at the step the budget ran out
    assert result.best is not None and result.best["step"] == result.step
    with pytest.raises(ConfigError, match="time_budget"):
        sine("time_budget=0")


def test_validation_by_the_clock_is_not_charged_to_the_budget(tmp_path: Path) -> None:
    # 400 validation tasks make each validation cost about as much as the whole budget.
    cfg = sine("steps=1000000", "val_every=100000", "time_budget=0.6", "val_every_seconds=0.2",
               "val_tasks=400")  # fmt: skip
    seen: list[tuple[int, float]] = []
    result = meta_train(cfg, tmp_path / "run", quiet=True, on_validation=lambda *a: seen.append(a))
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    validated = [r for r in lines if "val_mse" in r]
    assert len(validated) >= 3 and [r["step"] for r in validated] == [s for s, _ in seen]
    assert [r["val_mse"] for r in validated] == [v for _, v in seen]
    last = lines[-1]
    assert 0.6 <= last["time"] < 0.6 + 0.5  # training seconds: the budget and one step at most
    assert last["wall"] > last["time"]  # validation took wall time the budget did not count
    # Where that wall time went: outer steps, validations and checkpoints, each counted apart.
    assert last["validating"] > 0 and last["saving"] > 0
    assert last["time"] + last["validating"] + last["saving"] <= last["wall"]
    spent = [r["validating"] for r in validated]
    assert spent == sorted(spent) and spent[0] > 0  # sums over the session, each line's own in
    assert load_checkpoint(tmp_path / "run/checkpoints/latest").meta["elapsed"] == pytest.approx(
        last["time"], abs=1e-3
    )
    assert result.step == last["step"]
    # Resuming a run whose budget is spent takes no further step.
    again = meta_train(cfg, tmp_path / "run", resume=True, quiet=True)
    assert again.step == result.step
    assert (tmp_path / "run/metrics.jsonl").read_text().count("\n") == len(lines)
    with pytest.raises(ConfigError, match="val_every_seconds"):
        sine("val_every_seconds=0")


def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed_or_replaced(
    tmp_path: Path,
) -> None:
    cfg = sine("steps=6", "val_every=3")
    whole = meta_train(cfg, tmp_path / "whole", quiet=True)
    # What a kill (or a divergence) before the first checkpoint leaves: config and a log line.
    run = tmp_path / "run"
    create_run(run, cfg)
    append_metrics(run, {"step": 2, "loss": 1.0})
    resumed = meta_train(read_run_config(run), run, resume=True, quiet=True)
    assert all(torch.equal(v, resumed.params[k]) for k, v in whole.params.items())
    assert [r["step"] for r in read_metrics(run)] == [3, 6]  # the stale line is gone
    # A new run with another config takes over such a folder, but never one with a checkpoint.
    stuck = tmp_path / "stuck"
    create_run(stuck, sine("strategy_config.inner_lr=0.5"))
    meta_train(cfg, stuck, quiet=True)
    assert read_run_config(stuck) == cfg
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        meta_train(cfg, stuck, quiet=True)


def test_a_validation_logged_just_before_a_kill_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train_module.save_state

    def killed_after_saving(path: Path, state: Any, *args: Any) -> None:
        real(path, state, *args)
        if state.step == 8:  # the checkpoint is on disk; the process dies right after
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_state", killed_after_saving)
    cfg = sine("steps=12", "val_every=4", "log_every=100")
    with pytest.raises(KeyboardInterrupt):
        meta_train(cfg, tmp_path / "run", quiet=True)
    monkeypatch.setattr(train_module, "save_state", real)
    meta_train(read_run_config(tmp_path / "run"), tmp_path / "run", resume=True, quiet=True)
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "val_mse" in r] == [4, 8, 12]


def test_a_kill_between_the_best_and_latest_checkpoints_leaves_the_best_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = sine("steps=12", "val_every=4", "log_every=100")
    whole = meta_train(cfg, tmp_path / "whole", quiet=True)
    assert whole.best is not None
    real, killed = train_module.save_state, []

    def killed_between(path: Path, state: Any, *args: Any) -> None:
        real(path, state, *args)
        if state.step == whole.best["step"] and not killed:  # one of the two is on disk
            killed.append(path.name)
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_state", killed_between)
    with pytest.raises(KeyboardInterrupt):
        meta_train(cfg, tmp_path / "run", quiet=True)
    monkeypatch.setattr(train_module, "save_state", real)
    meta_train(cfg, tmp_path / "run", resume=True, quiet=True)
    best, _ = load_state(tmp_path / "run" / BEST)
    expected, _ = load_state(tmp_path / "whole" / BEST)
    assert best.step == expected.step == whole.best["step"]
    assert all(torch.equal(best.params[k], expected.params[k]) for k in best.params)


def test_a_resume_refuses_an_edited_config_that_changes_what_is_learned(tmp_path: Path) -> None:
    run = tmp_path / "run"
    meta_train(sine("steps=8", "val_every=4"), run, quiet=True, stop_at=4)
    original = (run / "config.yaml").read_text()
    for was, now, name in (("name: adam", "name: sgd", "optimizer.name"),
                           ("shots: 5", "shots: 3", "data.shots")):  # fmt: skip
        assert was in original, was
        (run / "config.yaml").write_text(original.replace(was, now))
        with pytest.raises(ConfigError, match=rf"sets {name} to .*put that back to resume"):
            meta_train(read_run_config(run), run, resume=True, quiet=True)
    # When, how long and in what precision it runs may change: a run is extended by raising
    # its steps, and MAML (whose strategy_config follows precision) finishes in bfloat16.
    assert "precision: float32" in original and original.count("precision:") == 1
    edited = original.replace("steps: 8", "steps: 10").replace("float32", "bfloat16")
    (run / "config.yaml").write_text(edited)
    assert meta_train(read_run_config(run), run, resume=True, quiet=True).step == 10


def test_a_validation_that_is_not_finite_is_never_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train_module.task_scores
    calls = {"n": 0}

    def diverging_first(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        scores = real(*args, **kwargs)
        return scores * math.nan if calls["n"] == 1 else scores

    monkeypatch.setattr(train_module, "task_scores", diverging_first)
    result = meta_train(sine("steps=6", "val_every=3"), tmp_path / "run", quiet=True)
    assert result.best is not None and result.best["step"] == 6
    assert math.isfinite(result.best["score"])


def test_a_folder_another_process_trains_in_is_neither_taken_over_nor_resumed(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    create_run(run, sine())  # a run training now, before its first checkpoint
    append_metrics(run, {"step": 1, "loss": 1.0})
    before = {f: (run / f).read_text() for f in ("config.yaml", "metrics.jsonl")}
    with run_lock(run):  # what the training process holds (flock: per open file, not process)
        for resume in (False, True):
            with pytest.raises(ConfigError, match="being trained by another process"):
                meta_train(sine("seed=7"), run, resume=resume, quiet=True)
    assert {f: (run / f).read_text() for f in before} == before
    meta_train(sine("steps=3"), run, quiet=True)  # that process gone: the folder is free
    assert read_run_config(run).steps == 3


def spy_on_batches(monkeypatch: pytest.MonkeyPatch, strategy: type) -> list[TaskBatch]:
    """Records each meta-batch ``strategy.meta_grads`` is given by the training loop."""
    seen: list[TaskBatch] = []
    real = strategy.meta_grads

    def recording(self: Any, params: Any, batch: TaskBatch) -> Any:
        seen.append(batch)
        return real(self, params, batch)

    monkeypatch.setattr(strategy, "meta_grads", recording)
    return seen


def test_the_training_tasks_are_drawn_apart_from_the_initialisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With one generator seed for both, the first amplitudes were 0.1 + 4.9 u for the very
    # uniforms u that drew the first layer's weights (bound 1): the tasks mirrored the init.
    seen = spy_on_batches(monkeypatch, MAML)
    result = meta_train(sine("steps=1", "val_every=1", "seed=3"), tmp_path / "run", quiet=True)
    first = result.params["features.0.weight"].flatten()[:4]  # one step moved them a little
    mirrored = 0.1 + 4.9 * (first + 1) / 2
    assert not torch.allclose(seen[0].info["amplitude"], mirrored, atol=0.05)


def test_reptile_gets_a_fresh_order_of_each_tasks_examples_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_batches(monkeypatch, Reptile)
    meta_train(sine("strategy=reptile", "strategy_config={}", "steps=3", "val_every=3"),
               tmp_path / "run", quiet=True)  # fmt: skip
    orders = [b.info[ORDER] for b in seen]
    assert len(orders) == 3 and all(o.shape == (4, 10) for o in orders)
    assert all(torch.equal(o.sort(1).values, torch.arange(10).expand(4, -1)) for o in orders)
    assert not torch.equal(orders[0], orders[1])
