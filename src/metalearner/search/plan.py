"""What a search explores and how: one :class:`SearchPlan`, from YAML and command-line options."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from metalearner.benchmark.plan import BenchmarkPlan, parse_budget
from metalearner.config.bounds import TASKS, THREADS, Range, check_bounds
from metalearner.config.plans import read_settings
from metalearner.config.settings import from_dict
from metalearner.data.registry import dataset
from metalearner.errors import ConfigError
from metalearner.runs.config import RunConfig, load_config, to_dict

from .space import Param, check_space, default_space, narrow

SAMPLERS = ("tpe", "gp", "cmaes", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class SearchPlan:
    """A search over strategies and their hyperparameters.

    Attributes:
        strategies: the strategies to choose among (the first, categorical, decision).
        trials: finished trials (complete or pruned) the search runs to, over all sessions.
        sampler: ``tpe`` (Bayesian optimisation), ``gp``, ``cmaes``, ``nsga2`` (evolutionary)
            or ``random``.
        pruner: ``median``, ``hyperband`` or ``none``: stops poor trials at a validation.
        trial_budget: each trial's training budget (``2m``, ``500steps``).
        budget: the winner's retraining budget, before its one test evaluation.
        workers: trials run at once in separate processes on this machine.
        storage: an Optuna storage URL (``postgresql://…``) shared by workers on several
            machines; ``None``: ``study.db`` (SQLite) in the search folder.
        space: per strategy, ranges to narrow, choices or fixed values (see :mod:`.space`).
        start: trials to run first, e.g. ``[{strategy: maml, inner_lr: 0.4}]`` (the rest of
            their parameters are drawn).
        overrides: ``key=value`` run settings for every trial (``model.width=32``).
    """

    dataset: str = "omniglot"
    path: str | None = None
    ways: int = 5
    shots: int = 1
    queries: int = 15
    strategies: tuple[str, ...] = ("maml", "fomaml", "metasgd", "anil", "reptile", "protonet")
    trials: Annotated[int, Range(1, 10**5)] = 40
    sampler: str = "tpe"
    pruner: str = "median"
    trial_budget: str = "2m"
    budget: str = "10m"
    seed: int = 0
    workers: Annotated[int, THREADS] = 1
    storage: str | None = None
    study_name: str = "metalearner"
    val_tasks: Annotated[int, TASKS] = 100
    tasks: Annotated[int, TASKS] = 600
    space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    start: tuple[Mapping[str, Any], ...] = ()
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"Unknown sampler {self.sampler!r}; use one of {', '.join(SAMPLERS)}."
            )
        if self.pruner not in PRUNERS:
            raise ConfigError(f"Unknown pruner {self.pruner!r}; use one of {', '.join(PRUNERS)}.")
        check_bounds(self)  # the counts, as declared above (also for a plan built in code)
        parse_budget(self.trial_budget)
        parse_budget(self.budget)
        self.benchmark_plan(self.trial_budget)  # checks strategies, data and shape
        unknown = sorted(set(self.space) - set(self.strategies))
        if unknown:
            raise ConfigError(
                f"space names {unknown[0]!r}, which is not among the searched strategies "
                f"({', '.join(self.strategies)})."
            )
        for trial in self.start:
            if not isinstance(trial, Mapping) or trial.get("strategy") not in self.strategies:
                strategy = trial.get("strategy") if isinstance(trial, Mapping) else trial
                raise ConfigError(
                    f"A start trial's strategy {strategy!r} is not searched; use "
                    f"one of {', '.join(self.strategies)}."
                )
        self._check_spaces()

    def _check_spaces(self) -> None:
        """Every strategy's space and start trials make valid run configs (see ``check_space``),
        so a bad range or value fails here, before any trial."""
        bench = self.benchmark_plan(self.trial_budget)
        for strategy in self.strategies:
            cfg = bench.run_config(strategy)
            if cfg.data.train_on_val:  # the trials would be compared on classes they learnt
                raise ConfigError(
                    "data.train_on_val trains on the validation classes a search chooses "
                    "on; search without it, then train the chosen settings with it."
                )
            base = to_dict(cfg)
            space = narrow(default_space(strategy, cfg), self.space.get(strategy, {}), strategy)

            def build(values: Mapping[str, Any], base: dict[str, Any] = base) -> RunConfig:
                return _apply(base, values)

            check_space(space, strategy, build)
            searched = {p.name: p.key for p in space if isinstance(p, Param)}
            for trial in self.start:
                if trial["strategy"] != strategy:
                    continue
                for name, value in trial.items():
                    if name == "strategy":
                        continue
                    if name not in searched:
                        raise ConfigError(
                            f"A start trial sets {name!r}, which is not a searched setting of "
                            f"{strategy}; use one of {', '.join(searched)}."
                        )
                    try:
                        build({searched[name]: value})
                    except ConfigError as err:
                        raise ConfigError(f"start trial {name} = {value!r}: {err}") from None

    @property
    def metric(self) -> str:
        """``accuracy`` (maximised) or ``mse`` (minimised)."""
        return dataset(self.dataset, setting="dataset").metric

    def benchmark_plan(self, budget: str) -> BenchmarkPlan:
        """The same strategies and tasks as a benchmark plan: one way to build run configs."""
        return BenchmarkPlan(
            dataset=self.dataset, path=self.path, ways=self.ways, shots=self.shots,
            queries=self.queries, strategies=self.strategies, budget=budget, tasks=self.tasks,
            seed=self.seed, val_tasks=self.val_tasks, overrides=self.overrides,
            label_noise=(), sweep_shots=(),
        )  # fmt: skip

    def base_config(self, strategy: str, budget: str) -> RunConfig:
        """``strategy``'s run config before the searched values (its preset or defaults)."""
        return self.benchmark_plan(budget).run_config(strategy)

    def with_values(self, strategy: str, budget: str, values: Mapping[str, Any]) -> RunConfig:
        """``strategy``'s run config with ``values`` (run config key → value) applied."""
        return _apply(to_dict(self.base_config(strategy, budget)), values)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON types."""
        out = dataclasses.asdict(self)
        out["strategies"] = list(self.strategies)
        out["overrides"] = list(self.overrides)
        out["start"] = [dict(t) for t in self.start]
        out["space"] = {k: dict(v) for k, v in self.space.items()}
        return out


def _apply(base: Mapping[str, Any], values: Mapping[str, Any]) -> RunConfig:
    """The run config ``base`` (left as it is) with ``values`` (run config key → value) set."""
    return load_config(base=copy.deepcopy(dict(base)), settings=values)


def load_search_plan(file: Path | None = None, **given: Any) -> SearchPlan:
    """A plan from a YAML file, then the options ``given`` (``None`` values ignored) on top.

    Raises:
        ConfigError: an unknown key or a bad value, naming it.
    """
    raw = read_settings(SearchPlan, file, given, "search")
    for key in ("strategies", "overrides", "start"):
        if key in raw and raw[key] is None:  # an empty YAML value: none
            raw[key] = []
    if not isinstance(raw.get("space", {}), Mapping) or not all(
        isinstance(v, Mapping) for v in raw.get("space", {}).values()
    ):
        raise ConfigError("space maps each strategy to its settings: {maml: {inner_lr: [0.1, 1]}}.")
    plan: SearchPlan = from_dict(SearchPlan, raw, "")  # the one settings parser
    return plan
