"""``metalearner search``: run the study to its number of trials, then retrain the winner.

Folder layout (``out``)::

    search.yaml         the plan, as run
    study.db            the Optuna study (unless --storage names another database)
    trials/<number>/    one normal run folder per trained trial
    best/               the winner retrained with the full budget, then scored once on the
                        test tasks (eval.json): `evaluate` and `adapt` work on it
    best.yaml           the winning run config, ready for `metalearner train best.yaml`
    search_report.md, search_report.html, figures/

Killing the search and running the same command again continues the study: finished trials
are kept in the database, and a trial cut off mid-way is run again.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from metalearner.benchmark.training import train_or_resume
from metalearner.config import to_yaml
from metalearner.errors import ConfigError
from metalearner.evaluate import EvalResult, evaluate
from metalearner.plans import keep_plan
from metalearner.train import TrainingDivergedError

from .objective import Objective, config_of, values_of
from .plan import SearchPlan
from .study import finished, open_study

PLAN_FILE = "search.yaml"


@dataclass(frozen=True)
class SearchResult:
    """The study, the winner's trial and test score, and the report."""

    study: optuna.Study
    best: optuna.trial.FrozenTrial
    test: EvalResult
    report: Path


def run_search(
    plan: SearchPlan,
    out: Path,
    *,
    data_dir: Path | None = None,
    command: str = "metalearner search",
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Searches (:func:`search_trials`), retrains and tests the winner (:func:`finish`)."""
    search_trials(plan, out, data_dir=data_dir, log=log)
    return finish(plan, out, data_dir=data_dir, command=command, log=log)


def search_trials(
    plan: SearchPlan, out: Path, *, data_dir: Path | None = None, log: Callable[[str], None] = print
) -> optuna.Study:
    """Runs trials until the study has ``plan.trials`` finished ones; validation only."""
    out.mkdir(parents=True, exist_ok=True)
    # More trials or workers continue the same study.
    keep_plan(out / PLAN_FILE, plan.to_dict(), free={"workers", "trials"}, what="search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(plan, out)
    if finished(study) == 0 and not study.trials:
        for start in plan.start:  # the user's first trials, e.g. the paper's settings
            strategy = start["strategy"]
            params = {f"{strategy}.{k}": v for k, v in start.items() if k != "strategy"}
            study.enqueue_trial({"strategy": strategy, **params}, skip_if_exists=True)
    left = plan.trials - finished(study)
    if left <= 0:
        log(f"study has its {plan.trials} trials already")
        return study
    log(f"running {left} trial(s) with {plan.workers} worker(s); study {plan.study_name}")
    if plan.workers == 1:
        _work(plan, out, data_dir, 0, torch.get_num_threads())
    else:
        threads = max(torch.get_num_threads() // plan.workers, 1)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(plan.workers, mp_context=context) as pool:
            jobs = [
                pool.submit(_work, plan, out, data_dir, w, threads) for w in range(plan.workers)
            ]
            for job in concurrent.futures.as_completed(jobs):
                job.result()
    return open_study(plan, out)


def _work(plan: SearchPlan, out: Path, data_dir: Path | None, worker: int, threads: int) -> None:
    """One worker: trials until the study as a whole has enough finished ones."""
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(plan, out, worker=worker)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(
        Objective(plan, out, data_dir),
        n_trials=max(plan.trials - finished(study), 0),
        callbacks=[optuna.study.MaxTrialsCallback(plan.trials, states=states)],
        catch=(TrainingDivergedError,),
    )


def finish(
    plan: SearchPlan,
    out: Path,
    *,
    data_dir: Path | None = None,
    command: str = "metalearner search",
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Retrains the best trial's configuration with ``plan.budget``, tests it once, reports."""
    from .report import write_search_report

    study = open_study(plan, out)
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError(
            "No trial of the search finished; widen the space, raise --trial-budget, or look "
            f"at the failed trials' runs in {out / 'trials'}."
        ) from None
    strategy, values = values_of(best)
    cfg = config_of(plan, strategy, values, plan.budget)
    folder = out / "best"
    (out / "best.yaml").write_text(
        f"# The best of {len(study.trials)} trials of {plan.study_name} (trial {best.number}, "
        f"validation {plan.metric} {best.value:.4g}); train it: `metalearner train best.yaml`.\n"
        + to_yaml(cfg)
    )
    log(f"retraining trial {best.number} ({strategy}) with {plan.budget} into {folder}")
    train_or_resume(cfg, folder, data_dir=data_dir, quiet=True)
    test = evaluate(folder, num_tasks=plan.tasks, data_dir=data_dir)  # the one test evaluation
    report = write_search_report(plan, study, best, test, out, command=command)
    return SearchResult(study, best, test, report)
