"""A strategy written outside the package, as a user writes one, with no change to the package.

It subclasses ``Strategy``, declares what differs from the defaults (it only regresses; its
search space adds its inner step size), is registered by name, passes the shipped contract
(``metalearner.testing``), and then trains, evaluates, is searched over beside MAML and is
benchmarked beside MAML on sinusoid tasks, exactly as the built-in strategies are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn
from torch.func import grad_and_value

from metalearner import functional as fx
from metalearner.benchmark import run_benchmark
from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.errors import ConfigError
from metalearner.evaluation import evaluate
from metalearner.nn.backbones import init_params
from metalearner.runs.config import load_config
from metalearner.search import SearchPlan, run_search
from metalearner.search.space import default_space
from metalearner.strategies import (
    Params,
    Predictor,
    SearchParam,
    SpaceContext,
    Strategy,
    TaskKind,
    get_strategy,
    register,
    unregister,
)
from metalearner.strategies.space import log_range
from metalearner.tasks import TaskBatch
from metalearner.testing import ContractCase, StrategyContract, check_strategy
from metalearner.training import meta_train

NAME = "one-step-head"


@dataclass(frozen=True)
class OneStepHeadConfig:
    """The toy's settings; ``meta_lr`` and ``meta_batch_size`` are read as every strategy's."""

    inner_lr: float = 0.1  # the head's SGD step on a task's support set
    eval_steps: int = 1  # steps of it when adapting to a new task
    meta_lr: float = 1e-3
    meta_batch_size: int = 4


class OneStepHead(Strategy):
    """Learns features and a head from which one SGD step of the head fits a new task.

    ANIL with a first-order meta-gradient, written from scratch: the query loss's gradient at
    the adapted head (and the features as they are).

    References:
        Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness
        of MAML", ICLR 2020.
    """

    default_config: ClassVar[OneStepHeadConfig] = OneStepHeadConfig()
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("regression",)
    config: OneStepHeadConfig

    def __init__(self, model: nn.Module, config: OneStepHeadConfig) -> None:
        super().__init__(model, config)
        self._fn = fx.functional(model)

    @classmethod
    def search_space(cls, config: OneStepHeadConfig, context: SpaceContext) -> list[SearchParam]:
        inner = log_range("inner_lr", "strategy_config.inner_lr", config.inner_lr, 0.1, 10)
        return [inner, *super().search_space(config, context)]

    def init_params(self, generator: torch.Generator | int) -> Params:
        return init_params(self.model, generator=generator)

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        if batch.is_classification:
            raise ConfigError(f"Strategy {NAME!r} regresses; use it on sinusoid tasks.")
        theta = {k: v.detach() for k, v in params.items()}
        grads = {k: torch.zeros_like(v) for k, v in theta.items()}
        losses = []
        for t in range(batch.num_tasks):
            fast = self._fit_head(theta, batch.support_x[t], batch.support_y[t], steps=1)

            def query_loss(p: Params, t: int = t) -> Tensor:
                return fx.task_loss(self._fn(p, batch.query_x[t]), batch.query_y[t])

            g, loss = grad_and_value(query_loss)(fast)
            for k in grads:
                grads[k] += g[k] / batch.num_tasks
            losses.append(float(loss))
        return grads, {"loss": sum(losses) / len(losses)}

    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        theta = {k: v.detach() for k, v in params.items()}
        n = self.config.eval_steps if steps is None else steps
        fast = self._fit_head(theta, support_x, support_y, steps=n)

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return fx.predictions(self._fn(fast, x), support_y)

        return predict

    def _fit_head(self, p: Params, x: Tensor, y: Tensor, *, steps: int) -> Params:
        for _ in range(steps):
            g = torch.func.grad(lambda q: fx.task_loss(self._fn(q, x), y))(p)
            p = {k: v - self.config.inner_lr * g[k] if k.startswith("head.") else v
                 for k, v in p.items()}  # fmt: skip
        return {k: v.detach() for k, v in p.items()}


@pytest.fixture(autouse=True, scope="module")
def registered() -> Iterator[None]:
    """Registered as ``@register(NAME)`` on the class would, for this module's tests only:
    tests run after these that go through every registered strategy (some in subprocesses,
    where this file is not imported) do not meet it."""
    register(NAME)(OneStepHead)
    yield
    unregister(NAME)


class TestOneStepHeadContract(StrategyContract):
    case = ContractCase(NAME, family="regression")


def test_the_contract_runs_without_pytest_too() -> None:
    assert get_strategy(NAME) is OneStepHead
    assert check_strategy(NAME) == []  # every check applies to a regressor: none left out


TINY = ("threads=1",)
RUN = [f"strategy={NAME}", "data.dataset=sinusoid", "steps=20", "val_every=10", "val_tasks=10",
       "test_tasks=10", "log_every=5", *TINY]  # fmt: skip


def test_it_trains_and_evaluates_as_a_run(tmp_path: Path) -> None:
    cfg = load_config(overrides=RUN)
    # The outer loop's defaults and the search space come from what the class declares.
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-3 and cfg.meta_batch == 4
    assert [p.name for p in default_space(NAME, cfg)] == ["inner_lr", "meta_lr"]
    result = meta_train(cfg, tmp_path / "run", quiet=True)
    assert result.step == 20 and (tmp_path / "run" / "config.yaml").is_file()
    scored = evaluate(tmp_path / "run", num_tasks=10)
    assert scored.metric == "mse" and scored.num_tasks == 10
    # Adapted as chosen on validation, from a grid around the eval_steps its class declares.
    assert scored.adaptation is not None and scored.adaptation.configured == {"eval_steps": 1}
    assert [p.steps for p in scored.curve] == list(range(scored.score.steps + 1))


@pytest.mark.slow
def test_it_is_searched_over_and_benchmarked_beside_maml(tmp_path: Path) -> None:
    shared: dict[str, Any] = dict(dataset="sinusoid", shots=5, val_tasks=4, tasks=4, overrides=TINY)
    search = SearchPlan(
        strategies=(NAME, "maml"), trials=2, trial_budget="3steps", budget="3steps",
        start=({"strategy": NAME, "inner_lr": 0.05},), **shared,
    )  # fmt: skip
    found = run_search(search, tmp_path / "search", log=lambda _: None)
    tried = {t.params["strategy"] for t in found.study.trials}
    assert NAME in tried and found.test.metric == "mse"
    assert found.study.trials[0].params[f"{NAME}.inner_lr"] == 0.05
    bench = BenchmarkPlan(
        strategies=(NAME, "maml"), budget="3steps", sweep_tasks=4, sweep_shots=(5,),
        label_noise=(), **shared,
    )  # fmt: skip
    done = run_benchmark(bench, tmp_path / "bench", quiet=True, log=lambda _: None)
    assert {r.strategy for r in done.results} == {NAME, "maml"}
    assert (tmp_path / "bench" / NAME / "checkpoints" / "latest").is_dir()
    assert f"**{NAME}**" in done.report_md.read_text()  # a row of the report's tables
