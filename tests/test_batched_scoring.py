"""Scoring a batch of tasks at once gives each task the score of adapting to it alone.

The evaluator scores tasks through each strategy's fastest path (batched head training, the
query set embedded once for a whole curve, no autograd where adaptation takes no gradient). The
reference here is the plain per-task path, written out independently of the evaluator: adapt
to one task's support set with ``strategy.adapt`` (afresh for each number of steps), predict its
query set, score it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from metalearner import functional as fx
from metalearner.benchmark import BenchmarkPlan, load_plan, scoring
from metalearner.benchmark.plan import QUICK_TASKS
from metalearner.benchmark.suite import build_suite
from metalearner.benchmark.training import Trained
from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import summarize, task_curves, task_scores
from metalearner.nn.backbones import build_model, init_params
from metalearner.nn.stacked import stacked_call, stacks
from metalearner.runs.devices import threads
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.strategies import Params, Strategy
from metalearner.strategies.reptile import Reptile
from metalearner.tasks import EpisodeSampler, TaskSet
from metalearner.tasks.batch import fingerprint
from metalearner.testing import ContractCase
from metalearner.testing.toys import toy_regression_source, toy_source

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli
from omniglot_fixture import write_fake_omniglot, write_fake_runs

# Each family of adaptation: prototypes (no steps), a new head on frozen features (linear,
# cosine, centroids), gradient steps on every weight (MAML, Reptile, scratch).
CLASSIFIERS = ["protonet", "finetune", "baselinepp", "nearest-centroid", "maml", "reptile",
               "scratch"]  # fmt: skip
TASKS, BATCH = 7, 3  # batches of 3, 3 and 1: a short last batch
# A fake Omniglot for the cross-domain protocol (as tests/test_benchmark.py's): 7 background
# alphabets (the lake split: 5 for validation, 2 for training), 2 evaluation ones.
BACKGROUND = {f"Bg{i}": 2 for i in range(7)}
EVALUATION = {"EvalA": 3, "EvalB": 3}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: one thread is fastest, and a busy machine does not make threads wait.
    with threads(1):
        yield


def reference_scores(
    strategy: Strategy, params: Params, tasks: TaskSet, steps: int | None
) -> Tensor:
    """Each task adapted alone (``steps``: the strategy's default when ``None``), then scored."""
    out = []
    for t in range(len(tasks)):
        task = tasks.batch(t, t + 1)
        predict = strategy.adapt(params, task.support_x[0], task.support_y[0], steps=steps)
        with torch.no_grad():
            pred = predict(task.query_x[0]).float()
        target = task.query_y[0]
        if target.dtype.is_floating_point:
            out.append((pred.reshape(target.shape) - target).square().mean())
        else:
            out.append((pred.argmax(-1) == target).float().mean())
    return torch.stack(out).double()


def image_tasks(shots: int = 2) -> TaskSet:
    """Fixed 3-way tasks of the toy patterns, with 4 queries per class."""
    source = toy_source()
    sampler = EpisodeSampler(source.data, source.classes, ways=3, shots=shots, queries=4)
    return sampler.fixed(TASKS, seed=11)


def trained_params(case: ContractCase) -> tuple[Strategy, Params]:
    """The strategy and parameters after a few meta-steps: scores away from chance, so that
    a wrong batching shows."""
    strategy = case.strategy()
    params = strategy.init_params(torch.Generator().manual_seed(0))
    source = case.tasks()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = source.sample(2, generator=g)
        if strategy.ordered:
            batch = batch.with_order(g)
        grads, _ = strategy.meta_grads(params, batch)
        params = {k: v - 0.01 * grads[k] for k, v in params.items()}
    return strategy, params


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_task_scores_equal_each_task_adapted_alone(name: str) -> None:
    strategy, params = trained_params(ContractCase(name))
    for shots in (1, 2):
        tasks = image_tasks(shots)
        got = task_scores(strategy, params, tasks, batch_size=BATCH)
        expected = reference_scores(strategy, params, tasks, None)
        assert got.shape == (TASKS,)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_score_curves_equal_each_step_count_adapted_afresh(name: str) -> None:
    strategy, params = trained_params(ContractCase(name))
    tasks, steps = image_tasks(), [0, 1, 3, 4]
    got = task_curves(strategy, params, tasks, steps, batch_size=BATCH)
    assert got.shape == (len(steps), TASKS)
    for row, s in zip(got, steps, strict=True):
        torch.testing.assert_close(
            row, reference_scores(strategy, params, tasks, s), atol=1e-5, rtol=0
        )
    # An explicit step count gives the curve's point for it.
    at_three = task_scores(strategy, params, tasks, steps=3, batch_size=BATCH)
    torch.testing.assert_close(at_three, got[2], atol=1e-5, rtol=0)


def test_regression_scores_equal_each_task_adapted_alone() -> None:
    # The MAML paper's sinusoid step size (the Omniglot default, 0.4, diverges here).
    case = ContractCase("maml", "regression", settings={"inner_lr": 0.01, "eval_steps": 3})
    strategy, params = trained_params(case)
    tasks = toy_regression_source().fixed(TASKS, seed=3)
    got = task_scores(strategy, params, tasks, batch_size=BATCH)
    torch.testing.assert_close(
        got, reference_scores(strategy, params, tasks, None), rtol=1e-5, atol=1e-7
    )
    curve = task_curves(strategy, params, tasks, [0, 2], batch_size=BATCH)
    torch.testing.assert_close(
        curve[1], reference_scores(strategy, params, tasks, 2), rtol=1e-5, atol=1e-7
    )


def test_a_task_set_in_two_sections_is_scored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The label-noise sweep at p = 0 holds the curve's tasks: its scores are the curve's last
    point, taken without adapting again, and equal to scoring it afresh."""
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    write_fake_runs(tmp_path, runs=2, ways=3)
    small = ("model.width=8", "model.depth=2", "data.queries=2", "strategy_config.eval_steps=3")
    plan = BenchmarkPlan(
        dataset="omniglot", ways=2, shots=1, queries=2, strategies=("finetune",),
        budget="3steps", tasks=4, sweep_tasks=3, sweep_shots=(1, 2), label_noise=(0.0, 0.5),
        cross_domain=True, val_tasks=2, overrides=small,
    )  # fmt: skip
    cfg = plan.run_config("finetune")
    suite = build_suite(plan, {"finetune": cfg}, tmp_path)
    assert fingerprint(suite.noise[0.0]) == fingerprint(suite.sweep)
    scored: list[str] = []

    def counted(strategy: Strategy, params: Params, tasks: TaskSet, **options: object) -> Tensor:
        scored.append(fingerprint(tasks))
        return task_scores(strategy, params, tasks, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "task_scores", counted)
    result = scoring.score_strategy(
        Trained("finetune", cfg, None), suite, metric="accuracy", data_dir=tmp_path
    )
    # Every other set once (here K = 1 of the shots sweep is the curve's tasks too).
    sets = [suite.test, *suite.shots.values(), *suite.noise.values(), *suite.cross.values()]
    others = {fingerprint(tasks) for tasks in sets} - {fingerprint(suite.sweep)}
    assert sorted(scored) == sorted(others)
    assert result.noise[0.0] == result.step_curve[-1]
    exp = build_experiment(cfg, data_dir=tmp_path)
    params = exp.strategy.init_params(seeded(cfg.seed))
    alone = summarize(task_scores(exp.strategy, params, suite.noise[0.0]), 3)
    assert result.noise[0.0] == alone
    assert result.scoring_seconds > 0


@pytest.mark.slow  # a benchmark as a user runs it: 7 s on an idle core, more on a busy one
def test_quick_scores_the_main_table_alone_and_says_so(tmp_path: Path) -> None:
    quick = ("benchmark", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
             "--budget", "3steps", "--set", "threads=1", "--set", "val_tasks=5", "-q",
             "--out", "b", "--quick")  # fmt: skip
    done = run_cli(*quick, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "b" / "results" / "maml.json").read_text())["result"]
    assert len(result["scores"]) == QUICK_TASKS
    assert result["step_curve"] == [] and result["shots"] == {} and result["noise"] == {}
    report = (tmp_path / "b" / "report.md").read_text()
    assert "sweeps: none (--quick)" in report
    assert "Not run: --quick scores the main table alone" in report


def test_quick_refuses_a_sweep_setting_and_takes_given_tasks() -> None:
    with pytest.raises(ConfigError, match="quick runs no sweeps, so sweep_shots has nothing"):
        load_plan(dataset="sinusoid", strategies="maml", quick=True, sweep_shots="1,5")
    assert load_plan(dataset="sinusoid", strategies="maml", quick=True, tasks=30).tasks == 30
    assert "quick" not in load_plan(dataset="sinusoid", strategies="maml").to_dict()


def test_reptile_adapts_a_batch_of_conv4_tasks_together_as_each_alone() -> None:
    # The grouped path (nn/stacked.py): the logits themselves, not only the scores, match the
    # per-task loop after every number of steps, with minibatches (2 shots: 6 support
    # examples, batches of 5, a wrapped slice) and without, in both BatchNorm modes.
    strategy, params = trained_params(ContractCase("reptile"))
    assert stacks(strategy.model)
    for size, norm in ((None, "transductive"), (5, "transductive"), (5, "inductive")):
        strategy.config = dataclasses.replace(strategy.config, eval_batch_size=size)
        strategy.norm = norm
        batch = image_tasks(2).batch(0, TASKS)
        got = strategy.predict_tasks(params, batch, steps=[0, 1, 4])
        expected = super(Reptile, strategy).predict_tasks(params, batch, steps=[0, 1, 4])
        assert got.shape == expected.shape == (3, TASKS, 12, 3)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_stacked_call_is_each_task_under_its_own_weights() -> None:
    net = build_model("conv4", (1, 28, 28), 5, generator=0, width=8)
    fn = fx.functional(net)
    g = torch.Generator().manual_seed(3)
    per_task = [init_params(net, generator=g) for _ in range(3)]
    stacked = {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}
    x = torch.randn(3, 4, 1, 28, 28, generator=g)
    expected = torch.stack([fn(p, xt) for p, xt in zip(per_task, x, strict=True)])
    torch.testing.assert_close(stacked_call(net, stacked, x), expected, atol=1e-5, rtol=1e-5)
    assert not stacks(build_model("mlp", (3,), 5, generator=0))
