"""The contract every strategy meets, as plain checks and as a pytest test class to subclass.

A strategy is held to a toy problem of its task kind (:mod:`.toys`): its meta-gradients match
its parameters and are finite, 30 meta-steps on toy tasks lower the query loss after
adaptation (unless it declares ``meta_learns = False``: then they change nothing), the same
seed gives the same parameters and another seed others, its predictors have the tasks' shape
and leave the parameters alone, its parameters take the model's dtype, and tasks of a kind it
does not declare are refused with a ``ConfigError``.

With pytest, subclass :class:`StrategyContract` in a test file::

    from metalearner.testing import ContractCase, StrategyContract

    class TestMyStrategy(StrategyContract):
        case = ContractCase("my-strategy", settings={"inner_lr": 0.1})

or give it many cases with an autouse fixture (as tests/test_strategies.py does for the
registry). Without pytest, ``check_strategy("my-strategy")`` runs every check and raises
``AssertionError`` at the first that fails.

This is the model of Optuna's ``optuna.testing.pytest_samplers``: the tests ship with the
package so that a strategy written outside it is checked exactly as the built-in ones are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from metalearner import functional as fx
from metalearner.errors import ConfigError
from metalearner.nn.backbones import Network, build_model
from metalearner.strategies import Params, Strategy, available, build, get_strategy
from metalearner.tasks import TaskBatch, TaskSource
from metalearner.testing.toys import (
    TOY_SETTINGS,
    image_batch,
    regression_batch,
    tiny_conv,
    toy_model,
    toy_regression_model,
    toy_regression_source,
    toy_source,
    toy_text_model,
    toy_text_source,
)

Family = Literal["image", "text", "regression"]


class NotApplicable(Exception):  # noqa: N818 - reads as what it says: the check does not apply
    """A check that does not apply to a case (a classifier's predictions for a regressor)."""


@dataclass(frozen=True)
class ContractCase:
    """One strategy on one toy task family, with the settings it runs there.

    Attributes:
        name: the registered strategy.
        family: ``"image"`` (8x8 patterns, conv4), ``"text"`` (sentences, textcnn) or
            ``"regression"`` (sinusoids, the 40-40 MLP).
        settings: its strategy settings there; ``None``: ``TOY_SETTINGS``' entry, if any.
    """

    name: str
    family: Family = "image"
    settings: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.name}-{self.family}"

    def strategy(self, ways: int = 3) -> Strategy:
        """The strategy on this family's toy model."""
        return build(self.name, self.model(ways), self.strategy_settings())

    def model(self, ways: int = 3, *, dtype: torch.dtype = torch.float32) -> Network:
        """This family's toy model, ``ways`` outputs for classification."""
        if self.family == "regression":
            return toy_regression_model(dtype=dtype)
        if self.family == "text":
            return toy_text_model(ways, dtype=dtype)
        return toy_model(ways, dtype=dtype)

    def tasks(self, ways: int = 3) -> TaskSource:
        """This family's toy tasks."""
        if self.family == "regression":
            return toy_regression_source()
        return toy_text_source(ways) if self.family == "text" else toy_source(ways)

    def strategy_settings(self) -> Mapping[str, Any]:
        """``settings``, or the toy settings of a built-in strategy."""
        return self.settings if self.settings is not None else TOY_SETTINGS.get(self.name, {})


def families(name: str) -> tuple[Family, ...]:
    """The toy families strategy ``name`` is held to: images and sentences for a classifier,
    sinusoids for a strategy that only regresses."""
    if "classification" in get_strategy(name).task_kinds:
        return ("image", "text")
    return ("regression",)


def contract_cases(names: tuple[str, ...] | None = None) -> list[ContractCase]:
    """A case per strategy (all registered ones by default) and family it is held to."""
    return [ContractCase(n, f) for n in names or available() for f in families(n)]


def query_loss(strategy: Strategy, params: Params, tasks: TaskBatch) -> float:
    """Mean query loss over ``tasks`` after ``strategy.adapt`` on each support set."""
    losses = [
        fx.task_loss(
            strategy.adapt(params, tasks.support_x[t], tasks.support_y[t])(tasks.query_x[t]),
            tasks.query_y[t],
        )
        for t in range(tasks.num_tasks)
    ]
    return float(torch.stack(losses).mean())


def meta_train_toy(case: ContractCase, steps: int, seed: int) -> tuple[Strategy, Params]:
    """``steps`` Adam steps (lr 1e-2) on meta-batches of 4 toy tasks; the strategy and θ."""
    strategy = case.strategy()
    params = {k: v.requires_grad_() for k, v in strategy.init_params(seed).items()}
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    source, gen = case.tasks(), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        grads, _ = strategy.meta_grads(params, source.sample(4, generator=gen))
        for k, v in params.items():
            v.grad = grads[k]
        opt.step()
    return strategy, {k: v.detach() for k, v in params.items()}


# ---------------------------------------------------------------- the checks


def check_meta_grads(case: ContractCase) -> None:
    """Meta-gradients have the parameters' keys, shapes and dtypes; they and the metrics
    (``"loss"`` among them, plain floats) are finite."""
    strategy = case.strategy()
    assert isinstance(strategy, Strategy)
    assert dataclasses.is_dataclass(strategy.config)
    params = strategy.init_params(0)
    batch = case.tasks().sample(2, generator=torch.Generator().manual_seed(0))
    grads, metrics = strategy.meta_grads(params, batch)
    assert grads.keys() == params.keys()
    assert all(grads[k].shape == v.shape and grads[k].dtype == v.dtype for k, v in params.items())
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())
    assert "loss" in metrics and all(isinstance(v, float) for v in metrics.values())
    assert torch.isfinite(torch.tensor(list(metrics.values()))).all()


def check_dtype(case: ContractCase) -> None:
    """Parameters take the model's dtype (the float64 gradient checks need every one)."""
    for dtype in (torch.float32, torch.float64):
        strategy = build(case.name, case.model(dtype=dtype), case.strategy_settings())
        assert {v.dtype for v in strategy.init_params(0).values()} == {dtype}, dtype


def check_descent(case: ContractCase) -> None:
    """30 meta-steps lower the mean query loss after adaptation on held-out toy tasks by 10%;
    a strategy that declares ``meta_learns = False`` leaves its parameters as they were."""
    held_out = case.tasks().sample(16, generator=torch.Generator().manual_seed(99))
    strategy, start = meta_train_toy(case, steps=0, seed=0)
    _, trained = meta_train_toy(case, steps=30, seed=0)
    if not strategy.meta_learns:
        assert all(torch.equal(start[k], trained[k]) for k in start)
        return
    before, after = query_loss(strategy, start, held_out), query_loss(strategy, trained, held_out)
    assert after < 0.9 * before, (before, after)


def check_determinism(case: ContractCase) -> None:
    """The same seed gives the same parameters after meta-training; another seed others."""
    _, a = meta_train_toy(case, steps=3, seed=5)
    _, b = meta_train_toy(case, steps=3, seed=5)
    _, c = meta_train_toy(case, steps=3, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed matters (init or tasks)


def check_classification(case: ContractCase) -> None:
    """A classifier's predictor gives ``[Q, N]`` finite logits for a 5-way task and leaves θ
    alone; a strategy that does not classify refuses labelled tasks with a ConfigError."""
    if "classification" not in get_strategy(case.name).task_kinds:

        def attempt() -> object:
            strategy = build(case.name, tiny_conv(), case.strategy_settings())
            return strategy.meta_grads(strategy.init_params(0), image_batch())

        _refused(attempt)
        return
    if case.family == "regression":
        raise NotApplicable("predictions are checked on the classification families")
    strategy = case.strategy(ways=5)
    params = strategy.init_params(0)
    theta = {k: v.clone() for k, v in params.items()}
    batch = case.tasks(ways=5).sample(1, generator=torch.Generator().manual_seed(0))
    predict = strategy.adapt(params, batch.support_x[0], batch.support_y[0], steps=1)
    out = predict(batch.query_x[0])
    assert out.shape == (15, 5) and bool(torch.isfinite(out).all())
    assert all(torch.equal(params[k], theta[k]) for k in theta)  # adaptation left θ alone
    assert all(not v.requires_grad for v in params.values())


def check_regression(case: ContractCase) -> None:
    """A regressor's predictions have the targets' shape; a strategy that does not regress
    refuses regression tasks with a ConfigError."""
    batch = regression_batch(tasks=2, dim=1)
    net = build_model("mlp", (1,), 1, generator=0, dtype=torch.float64)
    if "regression" not in get_strategy(case.name).task_kinds:

        def attempt() -> object:
            strategy = build(case.name, net, case.strategy_settings())
            return strategy.meta_grads(strategy.init_params(0), batch)

        _refused(attempt)
        return
    strategy = build(case.name, net, case.strategy_settings())
    params = strategy.init_params(0)
    grads, metrics = strategy.meta_grads(params, batch)
    assert grads.keys() == params.keys() and metrics["loss"] >= 0
    predict = strategy.adapt(params, batch.support_x[0], batch.support_y[0])
    assert predict(batch.query_x[0]).shape == batch.query_y[0].shape


CHECKS: tuple[Callable[[ContractCase], None], ...] = (
    check_meta_grads,
    check_dtype,
    check_descent,
    check_determinism,
    check_classification,
    check_regression,
)


def check_strategy(case: ContractCase | str) -> list[str]:
    """Runs every check on ``case`` (a strategy's name: each family it is held to).

    Returns:
        Why the checks that do not apply were left out.

    Raises:
        AssertionError: at the first check that fails.
    """
    cases = contract_cases((case,)) if isinstance(case, str) else [case]
    skipped = []
    for c in cases:
        for check in CHECKS:
            try:
                check(c)
            except NotApplicable as why:
                skipped.append(f"{c} {check.__name__}: {why}")
    return skipped


def _refused(attempt: Callable[[], object]) -> None:
    try:
        attempt()
    except ConfigError:
        return
    raise AssertionError("tasks of a kind the strategy does not declare ran without ConfigError")


# ---------------------------------------------------------------- the pytest face


class StrategyContract:
    """The contract as pytest tests: subclass it and set ``case`` (see the module doc).

    The class imports nothing from pytest; pytest collects a subclass named ``Test...``.

    Attributes:
        case: the strategy (a :class:`ContractCase`, or a registered name for its first
            family with its toy settings).
    """

    case: ContractCase | str

    def _case(self) -> ContractCase:
        case = self.case
        return ContractCase(case, families(case)[0]) if isinstance(case, str) else case

    def _run(self, check: Callable[[ContractCase], None]) -> None:
        try:
            check(self._case())
        except NotApplicable as why:
            import pytest  # only when run by pytest: the package does not depend on it

            pytest.skip(str(why))

    def test_meta_grads_match_params_and_metrics_are_finite(self) -> None:
        self._run(check_meta_grads)

    def test_params_take_the_models_dtype(self) -> None:
        self._run(check_dtype)

    def test_meta_training_lowers_the_query_loss(self) -> None:
        self._run(check_descent)

    def test_is_deterministic_with_a_seed(self) -> None:
        self._run(check_determinism)

    def test_classification(self) -> None:
        self._run(check_classification)

    def test_regression(self) -> None:
        self._run(check_regression)
