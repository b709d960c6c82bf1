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
are kept in the database, and a trial cut off mid-way is failed and run again, resuming its run
folder (:mod:`.recovery`), whether the search starts again at once or days later.

One command searches in a folder at a time: it holds the folder's lock (``.lock``) from start to
end, and a second command on the same folder is refused before it touches anything there, so
the winner is trained once. The worker processes of ``--workers N`` belong to the command that
started them; machines sharing a study through ``--storage`` each search into a folder of
their own.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from metalearner.benchmark.plan import parse_budget
from metalearner.benchmark.training import check_trainable, train_or_resume
from metalearner.config.plans import check_same_plan, keep_plan, same_plan
from metalearner.errors import ConfigError, MetalearnerError
from metalearner.evaluation.evaluator import EvalResult, evaluate
from metalearner.runs.config import stated_once, to_yaml
from metalearner.runs.folder import run_lock
from metalearner.training.loop import TrainingDivergedError

from .first_trials import queue_first_trials
from .objective import Objective, config_of, first_values, values_of
from .plan import SearchPlan
from .progress import TrialProgress, estimate_line, estimate_search, plan_line, say, winner_stages
from .recovery import recover
from .study import check_storage, finished, open_study, storage_url

PLAN_FILE = "search.yaml"
DOING = "used for a search"  # the refusal: "<out> is being used for a search by another process"
FREE = {"workers", "trials"}  # what a rerun may change


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
    """Searches (:func:`search_trials`), retrains and tests the winner (:func:`finish`), holding
    ``out``'s lock from start to end (see the module doc)."""
    with run_lock(out, DOING):
        _search_trials(plan, out, data_dir=data_dir, log=log)
        return _finish(plan, out, data_dir=data_dir, command=command, log=log)


def search_trials(
    plan: SearchPlan, out: Path, *, data_dir: Path | None = None, log: Callable[[str], None] = print
) -> optuna.Study:
    """Runs trials until the study has ``plan.trials`` finished ones; validation only.

    A new plan is checked in full before anything is written (:func:`check_plan`); the plan
    file is written once it is known good.

    Raises:
        ConfigError, DataError: the plan cannot run, ``out`` holds a search with another plan,
            or another process is searching in ``out``.
    """
    with run_lock(out, DOING):
        return _search_trials(plan, out, data_dir=data_dir, log=log)


def _search_trials(
    plan: SearchPlan, out: Path, *, data_dir: Path | None, log: Callable[[str], None]
) -> optuna.Study:
    plan_file, settings = out / PLAN_FILE, plan.to_dict()
    replaced = plan_file.is_file() and not same_plan(plan_file, settings, free=FREE)
    if replaced and _trial_runs(out):
        check_same_plan(plan_file, settings, free=FREE, what="search")  # refused at once
    if replaced or not plan_file.is_file():
        check_plan(plan, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    quiet_failures()
    study = open_study(plan, out)
    # More trials or workers continue the same study; a folder whose study (under any name)
    # ran no trial holds no work yet.
    started = bool(study.trials) or _trial_runs(out)
    keep_plan(plan_file, settings, free=FREE, what="search", started=started)
    if replaced and plan.storage is None and not study.trials:
        # This folder's own study, made for another plan (its direction, say) by an earlier
        # attempt that ran no trial: made afresh. (A shared database's study is left alone.)
        optuna.delete_study(study_name=plan.study_name, storage=storage_url(plan, out))
        study = open_study(plan, out)
    cut_off = recover(study)
    if cut_off:
        log(f"trial(s) {', '.join(map(str, cut_off))} cut off by a kill: queued to run again")
    if finished(study) == 0 and not study.trials:
        for start in plan.start:  # the user's first trials, e.g. the paper's settings
            strategy = start["strategy"]
            params = {f"{strategy}.{k}": v for k, v in start.items() if k != "strategy"}
            study.enqueue_trial({"strategy": strategy, **params}, skip_if_exists=True)
    left = plan.trials - finished(study)
    if left <= 0:
        log(f"study has its {plan.trials} trials already")
        return study
    queue_first_trials(plan, study)  # every listed strategy once before the sampler's choices
    log(plan_line(plan))
    estimate = estimate_search(plan, data_dir)
    log(estimate_line(estimate, left, plan.workers))
    log(f"running {left} trial(s) with {plan.workers} worker(s); study {plan.study_name}")
    if plan.workers == 1:
        progress = TrialProgress(plan, estimate, log=log)
        _work(plan, out, data_dir, 0, torch.get_num_threads(), progress)
    else:
        _work_in_parallel(plan, out, data_dir, TrialProgress(plan, estimate, log=say))
    return open_study(plan, out)


def _trial_runs(out: Path) -> bool:
    """Whether ``out`` holds the run folder of a trial (of this study or of one renamed since)."""
    trials = out / "trials"
    return trials.is_dir() and any(trials.iterdir())


def check_plan(plan: SearchPlan, data_dir: Path | None) -> None:
    """Everything a trial would find wrong, found before any trial: the storage answers, and
    each strategy builds and takes a meta-gradient on the data (at its space's low ends)."""
    check_trainable(
        {s: config_of(plan, s, first_values(plan, s), plan.trial_budget) for s in plan.strategies},
        data_dir,
    )
    if plan.storage is not None:
        check_storage(plan.storage)  # a bad URL, a missing driver, no server: said here


def _work_in_parallel(
    plan: SearchPlan, out: Path, data_dir: Path | None, progress: TrialProgress
) -> None:
    """``plan.workers`` processes of :func:`_work`; Ctrl-C stops them all (their trials are run
    again when the search continues, as after a kill)."""
    threads = max(torch.get_num_threads() // plan.workers, 1)
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        plan.workers, mp_context=context, initializer=_as_worker, initargs=(os.getpid(),)
    )
    try:
        jobs = [
            pool.submit(_work, plan, out, data_dir, w, threads, progress)
            for w in range(plan.workers)
        ]
        for job in concurrent.futures.as_completed(jobs):
            job.result()
    except BaseException:
        # Ctrl-C, or a worker's error that ends the search: stop the others now (each ignores
        # Ctrl-C), rather than waiting for their trials; a trial cut off runs again later.
        processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _as_worker(parent: int) -> None:
    """In a worker process: Ctrl-C is the parent's to handle (it stops the workers), and the
    worker ends with its parent, killed or not, rather than go on with the study unseen (its
    trial is then cut off, and run again when the search continues)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the line above could take effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent ends


def _work(
    plan: SearchPlan,
    out: Path,
    data_dir: Path | None,
    worker: int,
    threads: int,
    progress: TrialProgress,
) -> None:
    """One worker: trials until the study as a whole has enough finished ones."""
    torch.set_num_threads(threads)
    quiet_failures()
    study = open_study(plan, out, worker=worker)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(
        Objective(plan, out, data_dir, progress),
        n_trials=max(plan.trials - finished(study), 0),
        callbacks=[progress, _recover, optuna.study.MaxTrialsCallback(plan.trials, states=states)],
        catch=(TrainingDivergedError,),
    )


def _recover(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
    """After each trial, before the next: a trial of another search cut off on this machine
    (one study shared through --storage) is queued again now, not after the heartbeat's grace,
    so this worker may run it."""
    recover(study)


class _OneLineFailures(logging.Filter):
    """Optuna logs every failed trial with its traceback. A user's error or Ctrl-C ends the
    search and the command line says it in one sentence, so its record goes; a diverged trial,
    which the search survives, keeps its one line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TrainingDivergedError):
            record.exc_info, record.exc_text = None, None
        elif isinstance(error, MetalearnerError | KeyboardInterrupt):
            return False
        # "Trial 3 failed with value None.": the line before said why.
        return not (isinstance(record.msg, str) and " failed with value " in record.msg)


def quiet_failures() -> None:
    """Optuna's logging at warnings, failed trials in one line (see :class:`_OneLineFailures`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _OneLineFailures) for f in logger.filters):
        logger.addFilter(_OneLineFailures())


def finish(
    plan: SearchPlan,
    out: Path,
    *,
    data_dir: Path | None = None,
    command: str = "metalearner search",
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Retrains the best trial's configuration with ``plan.budget``, tests it once, reports."""
    with run_lock(out, DOING):
        return _finish(plan, out, data_dir=data_dir, command=command, log=log)


def _finish(
    plan: SearchPlan,
    out: Path,
    *,
    data_dir: Path | None,
    command: str,
    log: Callable[[str], None],
) -> SearchResult:
    from .report import write_search_report

    study = open_study(plan, out)
    try:
        best = study.best_trial
    except ValueError:
        raise ConfigError(
            f"No trial of the search finished (their runs are in {out / 'trials'}); search "
            "again into another --out with a wider space or a larger --trial-budget."
        ) from None
    strategy, values = values_of(best)
    # Each setting once, the value that applies: best.yaml, and the run best/ trains, say the same.
    cfg = stated_once(config_of(plan, strategy, values, plan.budget))
    folder = out / "best"
    (out / "best.yaml").write_text(
        f"# The best of {len(study.trials)} trials of {plan.study_name} (trial {best.number}, "
        f"validation {plan.metric} {best.value:.4g}); train it: `metalearner train best.yaml`.\n"
        + to_yaml(cfg, once=True)
    )
    who = f"trial {best.number} ({strategy})"
    stages = winner_stages(plan, cfg, who, data_dir=data_dir, log=log)
    stages.start(who, "retraining", f"with {parse_budget(plan.budget).describe()} into {folder}")
    train_or_resume(cfg, folder, data_dir=data_dir, quiet=True)
    stages.end(who, "retraining")
    stages.start(who, "testing", f"on {plan.tasks} tasks")
    test = evaluate(folder, num_tasks=plan.tasks, data_dir=data_dir)  # the one test evaluation
    stages.end(who, "testing")
    report = write_search_report(plan, study, best, test, out, command=command)
    return SearchResult(study, best, test, report)
