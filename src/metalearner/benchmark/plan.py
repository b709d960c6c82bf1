"""What a benchmark compares and under which budget: one :class:`BenchmarkPlan`, YAML or flags.

Every strategy gets a run config built the same way: its paper's preset for the dataset and task
shape where one exists (``omniglot-5w1s-protonet``), else the MAML preset's data, model and
evaluation settings with the strategy's own defaults (the MAML variants keep MAML's inner-loop
settings). Every strategy learns and is tested on the MAML preset's classes, drawn its way
(:data:`TESTED_DATA`), even where its own paper's split differs. Then the benchmark's budget,
seed and task shape are imposed on all of them alike.

Example:
    >>> plan = BenchmarkPlan(dataset="omniglot", strategies=("maml", "protonet"), budget="10m")
    >>> plan.run_config("protonet").time_budget
    600.0
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from metalearner.config.bounds import EXAMPLES, SECONDS, STEPS, TASKS, THREADS, WAYS, check_bounds
from metalearner.config.plans import read_settings
from metalearner.config.presets import list_presets
from metalearner.config.settings import from_dict
from metalearner.config.yaml_files import parse_setting
from metalearner.data.registry import Dataset, dataset
from metalearner.errors import ConfigError
from metalearner.runs.config import RunConfig, load_config

# The strategy whose presets cover every dataset and task shape: a strategy without a preset
# of its own starts from this one's (its data, model and evaluation settings).
ANCHOR = "maml"
QUICK_TASKS = 100  # test tasks of a --quick benchmark unless given
# The data settings that decide which classes train and test and how test tasks are drawn:
# the anchor's, for every strategy (ProtoNets' preset keeps Vinyals et al.'s alphabets apart,
# MAML's shuffles the characters; compared strategies must share one).
TESTED_DATA = ("split", "test_rotations")
SWEEPS = ("sweep_tasks", "sweep_shots", "label_noise")  # what --quick does not run
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Budget:
    """Training budget per strategy: wall-clock seconds of outer steps, or a number of steps."""

    seconds: float | None = None
    steps: int | None = None

    def describe(self) -> str:
        """``10 min of training`` or ``2000 outer steps``."""
        if self.seconds is not None:
            s = self.seconds
            return f"{s / 60:g} min of training" if s >= 60 else f"{s:g} s of training"
        return f"{self.steps} outer steps"


def parse_budget(text: str) -> Budget:
    """``"10m"``, ``"90s"``, ``"1.5h"`` (time) or ``"2000steps"`` (outer steps).

    A bare number is refused: ``10`` could mean ten steps or ten minutes, and the two differ
    by orders of magnitude of compute.

    Raises:
        ConfigError: for anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|steps?)?\s*", str(text))
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"Budget {text!r} is not a duration or step count; "
            "write e.g. 10m, 90s, 1h or 2000steps."
        )
    if match.group(2) is None:
        raise ConfigError(
            f"Budget {text!r} has no unit; write {match.group(1)}steps for outer steps, or a "
            f"duration such as {match.group(1)}m, 90s or 1h."
        )
    number, unit = float(match.group(1)), match.group(2)
    # A budget becomes the runs' steps or time_budget: held to those settings' bounds.
    if unit.startswith("step"):
        if number != int(number):
            raise ConfigError(f"Budget {text!r}: a step count must be a whole number.")
        if number > STEPS.high:
            raise ConfigError(f"Budget {text!r} must be at most {STEPS.high} steps.")
        return Budget(steps=int(number))
    if number * _UNITS[unit] > SECONDS.high:
        raise ConfigError(
            f"Budget {text!r} must be at most {SECONDS.high} s ({SECONDS.high / 3600:.0f}h)."
        )
    return Budget(seconds=number * _UNITS[unit])


@dataclass(frozen=True)
class BenchmarkPlan:
    """One comparison: the strategies, the tasks they are scored on, the budget, the sections.

    Attributes:
        dataset: a registered dataset: ``omniglot``, ``fewrel``, ``folder`` (with ``path``) or
            ``sinusoid`` (see :mod:`metalearner.data.registry`).
        strategies: names from ``metalearner.strategies.available()``.
        budget: per strategy, e.g. ``10m`` or ``2000steps`` (see :func:`parse_budget`).
        tasks: fixed test tasks of the main table (the papers' 600).
        sweep_tasks: fixed test tasks of each point of the curves and sweeps.
        sweep_shots: K of the score-vs-shots figure (those the data has room for).
        label_noise: fractions of flipped support labels of the noise sweep (empty: off).
        quick: the main table alone, on fewer tasks (``QUICK_TASKS`` unless ``tasks`` is
            given to :func:`load_plan`): no score-vs-steps curve and no shots or label-noise
            sweep (the settings of those are then ignored); cross-domain still as asked.
        cross_domain: Omniglot: train on the background alphabets (``split: lake``) and add
            within-alphabet tasks and Lake's 20-way runs; FewRel: also score the wiki-trained
            models on the PubMed relations (``split: pubmed``). Costly: off by default.
        workers: strategies trained at once, each on ``cores / workers`` threads.
        overrides: ``key=value`` settings applied to every strategy's run config.
        strategy_overrides: per strategy, ``key=value`` settings applied after those.
    """

    dataset: str = "omniglot"
    path: str | None = None
    ways: Annotated[int, WAYS] = 5
    shots: Annotated[int, EXAMPLES] = 1
    queries: Annotated[int, EXAMPLES] = 15
    strategies: tuple[str, ...] = (
        "maml", "protonet", "reptile", "finetune", "baselinepp", "simpleshot", "rfs",
    )  # fmt: skip
    budget: str = "10m"
    tasks: Annotated[int, TASKS.at_least(2, "for a CI")] = 600
    sweep_tasks: Annotated[int, TASKS] = 200
    sweep_shots: Annotated[tuple[int, ...], EXAMPLES] = (1, 5, 10)
    label_noise: tuple[float, ...] = (0.0, 0.2, 0.4)
    quick: bool = False
    cross_domain: bool = False
    seed: int = 0
    val_tasks: Annotated[int, TASKS] = 100
    workers: Annotated[int, THREADS] = 1  # each trains on cores / workers threads
    overrides: tuple[str, ...] = ()
    strategy_overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from metalearner.strategies import available

        known = available()
        unknown = [s for s in self.strategies if s not in known]
        if unknown or not self.strategies:
            raise ConfigError(
                f"Unknown strategy {', '.join(unknown) or '(none given)'}; choose from "
                f"{', '.join(known)}."
            )
        if len(set(self.strategies)) != len(self.strategies):
            raise ConfigError("A strategy is listed twice; list each once.")
        check_bounds(self)  # the sizes and counts, as declared above
        if any(not 0 <= p <= 1 for p in self.label_noise):
            raise ConfigError("label_noise holds fractions: use values from 0 to 1.")
        entry = self.entry
        if self.cross_domain and entry.cross_domain is None:
            raise ConfigError(
                "cross_domain needs Omniglot (background vs evaluation alphabets) or FewRel "
                "(Wikipedia vs PubMed relations)."
            )
        if entry.needs_path and not self.path:
            raise ConfigError(f"dataset {self.dataset!r} needs path: {entry.path_is}.")
        parse_budget(self.budget)
        stray = [s for s in self.strategy_overrides if s not in self.strategies]
        if stray:
            raise ConfigError(
                f"strategy_overrides names {stray[0]!r}, which is not among the strategies "
                f"({', '.join(self.strategies)}); add it to strategies or remove its overrides."
            )
        for strategy in self.strategies:  # every setting checked before any work starts
            self.run_config(strategy)

    @property
    def entry(self) -> Dataset:
        """The dataset's registry entry.

        Raises:
            ConfigError: an unknown dataset, naming the known ones.
        """
        return dataset(self.dataset, setting="dataset")

    @property
    def metric(self) -> str:
        """``accuracy`` (higher is better) or ``mse`` (lower is better)."""
        return self.entry.metric

    def parsed_budget(self) -> Budget:
        """The budget as seconds or steps."""
        return parse_budget(self.budget)

    def run_config(self, strategy: str) -> RunConfig:
        """The resolved run config of ``strategy`` in this benchmark (see the module doc)."""
        overrides = [*self.overrides, *self.strategy_overrides.get(strategy, ())]
        return load_config(
            base=self._base(strategy), settings=self._shared_settings(), overrides=overrides
        )

    def _base(self, strategy: str) -> dict[str, Any]:
        presets = {p.name: p for p in list_presets()}
        own, anchor = self.preset_name(strategy), self._anchor(set(presets))
        if own in presets:
            raw = presets[own].load()
            if anchor in presets:
                tested = presets[anchor].load().get("data", {})
                data = raw.setdefault("data", {})
                for key in TESTED_DATA:
                    data.pop(key, None)
                    if key in tested:
                        data[key] = tested[key]
            return raw
        if anchor not in presets:
            data = {"dataset": self.dataset, "path": self.path}
            return {"strategy": strategy, "data": data}
        raw = presets[anchor].load()
        if raw.get("strategy") == strategy:
            return raw  # its own preset at a neighbouring K: every setting carries over
        from metalearner.strategies import get_strategy

        keep = get_strategy(strategy).anchor_settings  # the MAML variants keep its inner loop
        inner = raw.get("strategy_config", {})
        raw["strategy"] = strategy
        raw["strategy_config"] = {k: v for k, v in inner.items() if k in keep}
        raw.pop("optimizer", None)  # each strategy's own outer optimiser and batch
        raw.pop("meta_batch", None)
        return raw

    def _anchor(self, presets: set[str]) -> str:
        """The MAML preset the other strategies' settings start from: this task shape's, or
        for sinusoids of a K without one, the nearest K's (the MAML paper trained K = 5, 10
        and 20 with the same settings; Omniglot's defaults diverge on regression)."""
        name = self.preset_name(ANCHOR)
        if name in presets or not self.entry.regression:
            return name
        stem = self.entry.preset_stem
        found = (re.fullmatch(rf"{re.escape(stem)}-k(\d+)-{ANCHOR}", n) for n in presets)
        shots = [int(m.group(1)) for m in found if m]
        if not shots:
            return name
        return f"{stem}-k{min(shots, key=lambda k: (abs(k - self.shots), k))}-{ANCHOR}"

    def preset_name(self, strategy: str) -> str:
        """The name of ``strategy``'s preset for this dataset and task shape (it may not exist)."""
        stem = self.entry.preset_stem
        if self.entry.regression:  # regression tasks have K points and no ways
            return f"{stem}-k{self.shots}-{strategy}"
        return f"{stem}-{self.ways}w{self.shots}s-{strategy}"

    def _shared_settings(self) -> dict[str, Any]:
        """The run settings every strategy of the benchmark shares, by dotted name (the plan's
        own ``overrides`` go on top of them)."""
        budget = self.parsed_budget()
        settings: dict[str, Any] = {
            "seed": self.seed,
            "data.ways": self.ways,
            "data.shots": self.shots,
            "val_tasks": self.val_tasks,
            "test_tasks": self.tasks,
        }
        entry = self.entry
        if entry.needs_path:
            settings["data.path"] = self.path
        cross = entry.cross_domain
        if self.cross_domain and cross is not None and cross.train_split is not None:
            # Lake et al.'s protocol: upright characters of unseen alphabets, as its runs are.
            settings |= {"data.split": cross.train_split, "data.test_rotations": False}
        if budget.seconds is not None:
            # Enough steps that only the clock stops training; ~6 validations per run (each
            # costs wall time, not budget: 100 tasks of 50 steps take Reptile ~30 s on a core).
            settings |= {"time_budget": budget.seconds, "val_every_seconds": budget.seconds / 6}
        else:
            steps = budget.steps or 1
            settings |= {"steps": steps, "val_every": max(steps // 10, 1)}
        return settings

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON types, for the report and ``benchmark.yaml``."""
        out = dataclasses.asdict(self)
        if not self.quick:  # as written before --quick: earlier folders keep plan and scores
            del out["quick"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()} | {
            "strategy_overrides": {k: list(v) for k, v in self.strategy_overrides.items()}
        }


def load_plan(file: Path | None = None, **given: Any) -> BenchmarkPlan:
    """A plan from a YAML file (its keys are :class:`BenchmarkPlan`'s), then ``given`` on top.

    Raises:
        ConfigError: an unknown key or a bad value, naming it.
    """
    raw = read_settings(BenchmarkPlan, file, given, "benchmark")
    if raw.get("quick"):
        asked = [k for k in SWEEPS if k in raw]
        if asked:
            raise ConfigError(
                f"quick runs no sweeps, so {asked[0]} has nothing to set; drop one of the two."
            )
        raw.setdefault("tasks", QUICK_TASKS)
    for key in ("sweep_shots", "label_noise", "overrides"):
        if isinstance(raw.get(key), str):  # an option: "1,5,10"; a value parsed as YAML's
            raw[key] = [parse_setting(s.strip()) for s in raw[key].split(",") if s.strip()]
    for key in ("strategies", "sweep_shots", "label_noise", "overrides", "strategy_overrides"):
        if key in raw and raw[key] is None:  # an empty YAML value: none
            raw[key] = {} if key == "strategy_overrides" else []
    if isinstance(raw.get("strategy_overrides"), Mapping):
        raw["strategy_overrides"] = {k: v or [] for k, v in raw["strategy_overrides"].items()}
    plan: BenchmarkPlan = from_dict(BenchmarkPlan, raw, "")  # the one settings parser
    return plan
