"""One trial: choose a strategy and its hyperparameters, train under the trial budget, and
return the best score on the fixed validation tasks. The test tasks are never touched here.

Every trial trains into ``trials/<number>/``, a normal run folder, reporting each validation to
the pruner, which may stop it there. A trial whose training diverges, or whose adaptation gives
no finite validation score, fails (and the search goes on): a step size that blows up is an
answer, not a crash. A trial cut off (Ctrl-C, a killed worker: see :mod:`.recovery`) is queued
again with its run folder, and its rerun resumes that run from its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from metalearner.benchmark.plan import parse_budget
from metalearner.evaluation.evaluator import summarize, task_scores
from metalearner.runs.checkpoint import checkpoint_exists, load_checkpoint
from metalearner.runs.config import RunConfig
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.runs.folder import LATEST, read_metrics
from metalearner.strategies import get_strategy
from metalearner.training.loop import TrainingDivergedError, meta_train

from .plan import SearchPlan
from .progress import TrialProgress
from .recovery import PROCESS, WORKER, carried, this_process
from .space import Fixed, Param, candidates, default_space, narrow

RUN = "run"  # user attribute: the trial's run folder, relative to the search folder


def trial_config(plan: SearchPlan, trial: optuna.Trial, budget: str) -> RunConfig:
    """Draws the strategy, then its hyperparameters; the run config they make."""
    strategy = trial.suggest_categorical("strategy", list(plan.strategies))
    values = {p.name: p.suggest(trial, strategy) for p in space_of(plan, strategy)}
    return config_of(plan, strategy, values, budget)


def space_of(plan: SearchPlan, strategy: str) -> list[Param | Fixed]:
    """``strategy``'s searched settings, around its preset, narrowed by ``plan.space``. The
    budget does not change the space, so the trial budget's config serves for both."""
    base = plan.base_config(strategy, plan.trial_budget)
    return narrow(default_space(strategy, base), plan.space.get(strategy, {}), strategy)


def config_of(plan: SearchPlan, strategy: str, values: dict[str, Any], budget: str) -> RunConfig:
    """``strategy``'s run config with searched ``values`` (name → value) under ``budget``."""
    keys = {p.name: p.key for p in space_of(plan, strategy)}
    return plan.with_values(strategy, budget, {keys[n]: v for n, v in values.items()})


def first_values(plan: SearchPlan, strategy: str) -> dict[str, Any]:
    """A value of each of ``strategy``'s settings: the low end of each range, the first choice,
    the fixed values (a cheap point of the space, to check that a run can start)."""
    return {p.name: candidates(p)[0] for p in space_of(plan, strategy)}


def values_of(trial: optuna.trial.FrozenTrial) -> tuple[str, dict[str, Any]]:
    """A finished trial's strategy and its values by name (searched and fixed)."""
    strategy = str(trial.params["strategy"])
    prefix = f"{strategy}."
    found = {**trial.user_attrs, **trial.params}
    return strategy, {k[len(prefix) :]: v for k, v in found.items() if k.startswith(prefix)}


class Objective:
    """The function Optuna maximises (accuracy) or minimises (MSE): see the module doc."""

    def __init__(
        self, plan: SearchPlan, out: Path, data_dir: Path | None, progress: TrialProgress
    ) -> None:
        self.plan, self.out, self.data_dir, self.progress = plan, out, data_dir, progress

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Optuna marks the trial failed; queue its values and run folder, so that the
            # search continued later resumes it (as recovery.rerun does for a trial whose
            # process was killed).
            trial.study.enqueue_trial(dict(trial.params), user_attrs=carried(trial.user_attrs))
            raise

    def _run(self, trial: optuna.Trial) -> float:
        # First of all, the process running the trial: from here on, a kill leaves a trial that
        # the next search (or another worker on this machine) knows to be cut off.
        process = this_process()
        trial.set_user_attr(PROCESS, process)
        trial.set_user_attr(WORKER, process["pid"])  # which process ran it (parallel searches)
        cfg = trial_config(self.plan, trial, self.plan.trial_budget)
        # A rerun of a cut-off trial carries its run folder: resumed there, not trained anew.
        rerun = RUN in trial.user_attrs
        run = str(trial.user_attrs[RUN]) if rerun else f"trials/{trial.number:04d}"
        folder = self.out / run
        trial.set_user_attr(RUN, run)
        if not get_strategy(cfg.strategy).meta_learns:
            # Nothing to train: score θ₀ (meta_train builds its own experiment otherwise).
            what = f"scoring its initial parameters on {cfg.val_tasks} validation tasks"
            self.progress.started(trial, cfg.strategy, what)
            exp = build_experiment(cfg, data_dir=self.data_dir)
            params = exp.strategy.init_params(seeded(cfg.seed))
            return summarize(task_scores(exp.strategy, params, exp.val_tasks(cfg))).mean
        resume = rerun and checkpoint_exists(folder / LATEST)
        budget = parse_budget(self.plan.trial_budget).describe()
        what = f"{'resuming' if resume else 'training'} {budget} into {folder}"
        self.progress.started(trial, cfg.strategy, what)
        validations = _validations_done(folder) if resume else 0

        def report(step: int, score: float) -> None:
            nonlocal validations
            validations += 1  # the n-th validation comes at the same fraction of every budget
            trial.report(score, validations)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation {score:.4g} at step {step}")

        result = meta_train(
            cfg, folder, resume=resume, data_dir=self.data_dir, quiet=True, on_validation=report
        )
        if result.best is None:  # the last step always validates: none of them was finite
            raise TrainingDivergedError(
                f"trial {trial.number}: no validation score was finite (the adaptation diverged)"
            )
        return float(result.best["score"])


def _validations_done(folder: Path) -> int:
    """The validations a run folder's latest checkpoint has behind it (each saves one), so a
    resumed trial reports its n-th validation as the n-th."""
    step = load_checkpoint(folder / LATEST).meta.get("step", 0)
    return sum(1 for r in read_metrics(folder) if r.get("step", 0) <= step and "val_ci95" in r)
