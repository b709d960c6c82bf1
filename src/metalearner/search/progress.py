"""What a search will take, said before it starts, and a line as each trial starts and ends
(and as the winner is retrained and tested).

The estimate is timed on this machine (:mod:`metalearner.benchmark.estimate`): a trial of each
strategy at its paper's settings under the trial budget, the winner's retraining under the full
budget and its test, each the mean over the strategies (which one wins is not known yet). Once
trials have finished, what is left is counted from their real durations instead. Lines are
plain text, in a log file as in a terminal; with several workers each prints its own trials.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from metalearner.benchmark.estimate import measure, testing_seconds, training_seconds
from metalearner.benchmark.plan import parse_budget
from metalearner.benchmark.stages import Stage, Stages, duration
from metalearner.runs.config import RunConfig

from .plan import SearchPlan


@dataclass(frozen=True)
class SearchEstimate:
    """Seconds of a search's parts on this machine: one trial, the retraining, the test."""

    trial: float
    retrain: float
    test: float


def estimate_search(plan: SearchPlan, data_dir: Path | None) -> SearchEstimate:
    """Times each of ``plan``'s strategies (see the module doc)."""
    trials, retrains, tests = [], [], []
    for strategy in plan.strategies:
        cfg = plan.base_config(strategy, plan.trial_budget)
        rates = measure(cfg, data_dir)
        trials.append(training_seconds(cfg, rates))
        retrains.append(training_seconds(plan.base_config(strategy, plan.budget), rates))
        tests.append(testing_seconds(rates, plan.tasks))
    return SearchEstimate(*(statistics.fmean(x) for x in (trials, retrains, tests)))


def plan_line(plan: SearchPlan) -> str:
    """``plan: 40 trials over maml, protonet (…), 2 min of training each, …``."""
    return (
        f"plan: {plan.trials} trials over {', '.join(plan.strategies)} (each first at its "
        f"paper's settings), {parse_budget(plan.trial_budget).describe()} each, {plan.workers} "
        f"at a time, sampler {plan.sampler}, pruner {plan.pruner}; the winner retrained with "
        f"{parse_budget(plan.budget).describe()} and tested on {plan.tasks} tasks"
    )


def estimate_line(estimate: SearchEstimate, trials: int, workers: int) -> str:
    """``estimate: about 50 min in all: trials about 40 min (40 × 2.0 min / 2 workers), …``."""
    per = f" / {workers} workers" if workers > 1 else ""
    running = trials * estimate.trial / workers
    total = running + estimate.retrain + estimate.test
    return (
        f"estimate: about {duration(total)} in all: trials about {duration(running)} "
        f"({trials} × {duration(estimate.trial)}{per}), retraining about "
        f"{duration(estimate.retrain)}, test about {duration(estimate.test)} (timed on this "
        "machine; the trial lines correct it as they go)"
    )


def winner_stages(
    plan: SearchPlan, cfg: RunConfig, who: str, *, data_dir: Path | None,
    log: Callable[[str], None],
) -> Stages:  # fmt: skip
    """The winner's retraining (``cfg``) and its test, timed on this machine."""
    rates = measure(cfg, data_dir)
    return Stages(
        [Stage(who, "retraining", "retrained", training_seconds(cfg, rates)),
         Stage(who, "testing", "tested", testing_seconds(rates, plan.tasks))],
        log=log,
    )  # fmt: skip


class TrialProgress:
    """A line as each trial starts (:meth:`started`) and ends (called by Optuna after each
    trial), with the time it took and what is left of the search.

    Picklable where ``log`` is (a worker process gets its own copy).
    """

    def __init__(
        self,
        plan: SearchPlan,
        estimate: SearchEstimate,
        *,
        log: Callable[[str], None],
    ) -> None:
        self.trials, self.workers, self.metric = plan.trials, plan.workers, plan.metric
        self.estimate, self.log = estimate, log

    def started(self, trial: optuna.Trial, strategy: str, what: str) -> None:
        """Says that ``trial`` of ``strategy`` starts ``what`` (``training 2 min into …``)."""
        self.log(
            f"trial {trial.number} ({strategy}): {what} (about "
            f"{duration(self._per_trial(trial.study))}; about {duration(self.left(trial.study))} "
            "left)"
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        strategy = trial.params.get("strategy", "?")
        took = trial.duration.total_seconds() if trial.duration is not None else 0.0
        self.log(
            f"trial {trial.number} ({strategy}): {self._outcome(trial)} in {duration(took)}; "
            f"{self._best(study)}{len(_finished(study))}/{self.trials} finished, about "
            f"{duration(self.left(study))} left"
        )

    def left(self, study: optuna.Study) -> float:
        """Seconds until the search has its trials, the winner retrained and tested."""
        trials = max(self.trials - len(_finished(study)), 0)
        return trials * self._per_trial(study) / self.workers + (
            self.estimate.retrain + self.estimate.test
        )

    def _per_trial(self, study: optuna.Study) -> float:
        """The mean duration of the finished trials, or the estimate before any."""
        took = [t.duration.total_seconds() for t in _finished(study) if t.duration is not None]
        return statistics.fmean(took) if took else self.estimate.trial

    def _outcome(self, trial: FrozenTrial) -> str:
        if trial.state == TrialState.COMPLETE:
            return f"validation {self.metric} {trial.value:.4g}"
        if trial.state == TrialState.PRUNED and trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            return f"pruned at validation {self.metric} {last:.4g}"
        return trial.state.name.lower()

    def _best(self, study: optuna.Study) -> str:
        try:
            return f"best {study.best_value:.4g} (trial {study.best_trial.number}); "
        except ValueError:  # no trial complete yet
            return ""


def say(line: str) -> None:
    """A worker process's log: a line on its standard output, which its command shares."""
    print(line, flush=True)


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
