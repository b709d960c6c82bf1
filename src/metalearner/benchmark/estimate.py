"""What a benchmark or a search will take, measured on this machine before it starts.

Each strategy is built once and timed: an outer step (a meta-gradient on one task after a
warm-up, times the meta-batch) and adaptation to a few validation tasks with its initial
parameters, or, for a run already trained that is only scored, with its best checkpoint adapting
as chosen on validation (a transfer head fitted on random features, or the configured 100 steps
where validation chose 5, can take many times longer than on the trained model). The budgets
and the numbers of tasks do the rest: validation, testing and a benchmark's scoring adapt to
every task at that pace. None of it is exact (a meta-batch is cheaper per task than one task
alone, a sweep's task may cost more than a validation task); it says up front whether a command
takes minutes or hours, and the stage lines (:mod:`.stages`) correct it as the real times come
in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearner.runs.config import RunConfig
from metalearner.runs.devices import precision, threads, torch_device
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.strategies import Params, Strategy
from metalearner.tasks import TaskSet

from .plan import BenchmarkPlan
from .scoring import trained_state
from .stages import Stage, duration
from .suite import TaskSuite
from .training import Trained

SAMPLE = 4  # validation tasks timed


@dataclass(frozen=True)
class Rates:
    """What one strategy's run costs on this machine, in seconds.

    Attributes:
        setup: loading its data and building it.
        step: one outer step; 0 for a strategy that trains nothing, or a run only scored.
        task: adapting to one validation task and scoring its queries, on the run's threads.
        scoring: the same on the threads of this process, where a benchmark scores.
    """

    setup: float
    step: float
    task: float
    scoring: float


def measure(cfg: RunConfig, data_dir: Path | None, trained: Path | None = None) -> Rates:
    """Times ``cfg``'s strategy on its data, on the threads and device its run would use.

    Args:
        cfg: the run's resolved config.
        data_dir: where its data is.
        trained: the folder of its run where that is trained already (it is then only scored):
            adaptation is timed with the run's best checkpoint, adapting as chosen on validation
            when the run ended, as scoring will adapt.
    """
    with threads(cfg.threads):
        began = time.perf_counter()
        device = torch_device(cfg.device)
        exp = build_experiment(cfg, data_dir=data_dir)
        strategy, params = timed_model(cfg, exp.strategy, trained)
        params = {k: v.to(device) for k, v in params.items()}
        setup = time.perf_counter() - began
        step = 0.0
        if strategy.meta_learns and trained is None:  # a trained run is only scored
            # One task, times the meta-batch; a mini-batch of examples is timed whole.
            size = cfg.meta_batch or 1
            timed = size if strategy.labeled_batches else 1
            batch = exp.training_batch(0, timed, seeded(cfg.seed)).to(device)
            with precision(cfg.precision, device, autocast=not strategy.applies_precision):
                strategy.meta_grads(params, batch)  # the first call pays for warming up
                began = time.perf_counter()
                strategy.meta_grads(params, batch)
            step = (time.perf_counter() - began) * size / timed
        tasks = exp.val_source.fixed(min(SAMPLE, cfg.val_tasks), seed=cfg.val_seed)
        task = _pace(strategy, params, tasks, device)
    # The run's threads may not be this process's: a tiny model is many times faster on one.
    scoring = task if cfg.threads is None else _pace(strategy, params, tasks, device)
    return Rates(setup, step, task, scoring)


def timed_model(
    cfg: RunConfig, strategy: Strategy, trained: Path | None
) -> tuple[Strategy, Params]:
    """The strategy and parameters whose pace is measured: the initialisation, or ``trained``'s
    best checkpoint with the adaptation chosen for it (:func:`.scoring.trained_state`)."""
    if trained is None:
        return strategy, strategy.init_params(seeded(cfg.seed))
    params, adapting, _ = trained_state(Trained(cfg.strategy, cfg, trained), strategy)
    return adapting, params


def _pace(strategy: Strategy, params: Params, tasks: TaskSet, device: torch.device) -> float:
    """Seconds per task of adapting to ``tasks`` and scoring their queries, after a first time
    that pays for warming up (RFS's first L-BFGS fit took 10 times its later ones: 0.19 s a task
    against 0.016, which made a benchmark's estimate of its scoring 7 minutes for 27 s)."""
    from metalearner.evaluation.evaluator import task_scores

    task_scores(strategy, params, tasks, device=device)
    began = time.perf_counter()
    task_scores(strategy, params, tasks, device=device)
    return (time.perf_counter() - began) / len(tasks)


def training_seconds(cfg: RunConfig, rates: Rates) -> float:
    """Wall seconds to train ``cfg`` from its start: its outer steps, up to its time budget,
    and its validations, which the budget does not count (one only, if it trains nothing)."""
    stepping = cfg.steps * rates.step
    if cfg.time_budget is not None:
        stepping = min(stepping, cfg.time_budget)
    steps = stepping / rates.step if rates.step > 0 else 0.0
    validations = steps / cfg.val_every
    if cfg.val_every_seconds:
        validations = max(validations, stepping / cfg.val_every_seconds)
    return rates.setup + stepping + (math.floor(validations) + 1) * cfg.val_tasks * rates.task


def testing_seconds(rates: Rates, tasks: int) -> float:
    """Seconds to score a run on ``tasks`` test tasks."""
    return rates.setup + tasks * rates.task


def scoring_seconds(suite: TaskSuite, rates: Rates) -> float:
    """Seconds to score a run on all of ``suite`` (on this process's threads), every task (of
    the curves and sweeps too) at the pace of adapting to a validation task."""
    return rates.setup + _size(suite) * rates.scoring


def benchmark_stages(
    plan: BenchmarkPlan,
    configs: Mapping[str, RunConfig],
    suite: TaskSuite,
    *,
    train: Collection[str],
    score: Collection[str],
    trained: Mapping[str, Path] | None = None,
    data_dir: Path | None,
) -> list[Stage]:
    """The stages left of a benchmark, timed: ``train``'s training, then ``score``'s scoring
    (of the runs in ``trained``, already trained, timed with their trained models)."""
    done = trained or {}
    rates = {
        name: measure(configs[name], data_dir, done.get(name))
        for name in configs
        if name in {*train, *score}
    }
    share = 1 / plan.workers if len(train) > 1 else 1.0  # runs trained side by side
    stages = [
        Stage(name, "training", "trained", training_seconds(configs[name], rates[name]), share)
        for name in configs
        if name in train
    ]
    stages += [
        Stage(name, "scoring", "scored", scoring_seconds(suite, rates[name]))
        for name in configs
        if name in score
    ]
    return stages


def benchmark_plan_line(plan: BenchmarkPlan, suite: TaskSuite) -> str:
    """``plan: 6 strategies (…), 10 min of training each, 1 at a time; scored on …``."""
    sweeps = _size(suite) - len(suite.test)
    return (
        f"plan: {len(plan.strategies)} strategies ({', '.join(plan.strategies)}), "
        f"{plan.parsed_budget().describe()} each, {plan.workers} at a time; scored on "
        f"{len(suite.test)} test tasks and {sweeps} tasks of the curves and sweeps"
    )


def estimate_line(stages: Sequence[Stage]) -> str:
    """``estimate: about 1.2 h in all: training about 1.0 h, scoring about 12.0 min (…)``."""
    if not stages:
        return "estimate: nothing left to do"
    kinds: dict[str, float] = {}
    for s in stages:
        kinds[s.doing] = kinds.get(s.doing, 0.0) + s.seconds * s.share
    parts = ", ".join(f"{doing} about {duration(seconds)}" for doing, seconds in kinds.items())
    return (
        f"estimate: about {duration(sum(kinds.values()))} in all: {parts} (timed on this "
        "machine; the stage lines correct it as they go)"
    )


def _size(suite: TaskSuite) -> int:
    sets = [suite.test, suite.sweep, *suite.shots.values(), *suite.noise.values()]
    return sum(len(t) for t in [*sets, *suite.cross.values()])
