"""Training every strategy of a benchmark under the same budget, resumably, one or more at once.

Each strategy trains into ``<out>/<strategy>/``, a normal run folder (``evaluate`` and ``adapt``
work on it). A folder already there is resumed, or skipped when its budget is spent, so a killed
benchmark run again loses nothing. A strategy that learns nothing (``scratch``) is not trained; a
strategy whose training is another's (``nearest-centroid`` is ``finetune``'s pretraining) reuses
that run. With ``workers > 1`` strategies train in separate processes, each on an equal share of
the CPU threads, so a wall-clock budget buys each the same compute.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import checkpoint_exists
from metalearner.runs.config import RunConfig
from metalearner.runs.folder import CONFIG, LATEST, load_state, read_run_config, run_lock
from metalearner.strategies import get_strategy

from .stages import Stages


@dataclass(frozen=True)
class Trained:
    """Where a strategy's training ended.

    Attributes:
        strategy: its name.
        cfg: its resolved run config.
        folder: its run folder, or ``None`` for a strategy that is not trained.
        steps: outer steps done.
        seconds: seconds spent in outer steps (what the budget counts).
        threads: CPU threads it trained on.
    """

    strategy: str
    cfg: RunConfig
    folder: Path | None
    steps: int = 0
    seconds: float = 0.0
    threads: int = 0


def train_all(
    configs: dict[str, RunConfig],
    out: Path,
    *,
    stages: Stages,
    data_dir: Path | None = None,
    workers: int = 1,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Trained]:
    """Trains (or resumes, or skips) every strategy's run, each run of :func:`to_train` a
    stage of ``stages`` (``training``); see the module doc."""
    runs = run_folders(configs, out)
    cores = torch.get_num_threads()
    threads = max(cores // workers, 1) if workers > 1 else cores
    todo = to_train(configs, out)
    for name in sorted(n for n, run in runs.items() if run == out / n and n not in todo):
        log(f"{name}: trained already ({runs[name]})")
    if workers > 1 and len(todo) > 1:
        _train_parallel(configs, todo, data_dir, workers, threads, stages, log)
    else:
        for name, folder in todo.items():
            stages.start(name, "training", f"into {folder}")
            _train_one(configs[name], folder, data_dir, threads, quiet)
            stages.end(name, "training")
    result: dict[str, Trained] = {}
    for name, cfg in configs.items():
        run = runs[name]
        if run is None:
            result[name] = Trained(name, cfg, None)
            continue
        state, _ = load_state(run / LATEST)
        # The run's own threads setting, where it has one, is what it trained on.
        result[name] = Trained(name, cfg, run, state.step, state.elapsed, cfg.threads or threads)
    return result


def run_folders(configs: Mapping[str, RunConfig], out: Path) -> dict[str, Path | None]:
    """Each strategy's run folder: its own, the run whose training it shares, or ``None`` for
    a strategy that trains nothing."""
    runs: dict[str, Path | None] = {}
    for name, cfg in configs.items():
        owner = _shares_training(name, cfg, configs)
        if owner is not None:
            runs[name] = out / owner
        else:
            runs[name] = out / name if get_strategy(cfg.strategy).meta_learns else None
    return runs


def to_train(configs: Mapping[str, RunConfig], out: Path) -> dict[str, Path]:
    """The runs still to train (none yet, or not to their budget), by strategy.

    Raises:
        ConfigError: a run folder holds a run with other settings.
    """
    return {
        name: run
        for name, run in run_folders(configs, out).items()
        if run == out / name and not _finished(configs[name], run)
    }


def check_trainable(configs: Mapping[str, RunConfig], data_dir: Path | None) -> None:
    """Builds each run and takes one meta-gradient on one task, so a strategy that does not fit
    the data (ProtoNets on regression, say) or missing data fails before anything is written.

    Raises:
        ConfigError, DataError: the first run that cannot train, in the strategy's own words.
    """
    from metalearner.runs.devices import precision, torch_device
    from metalearner.runs.experiment import build_experiment, seeded

    for cfg in configs.values():
        device = torch_device(cfg.device)
        exp = build_experiment(cfg, data_dir=data_dir)
        params = {k: v.to(device) for k, v in exp.strategy.init_params(seeded(cfg.seed)).items()}
        batch = exp.train.sample(1, generator=seeded(cfg.seed)).to(device)
        with precision(cfg.precision, device, autocast=not exp.strategy.applies_precision):
            exp.strategy.meta_grads(params, batch)


def _shares_training(name: str, cfg: RunConfig, configs: Mapping[str, RunConfig]) -> str | None:
    """The strategy whose run ``name`` can use as its own: same config but the strategy name."""
    owner = get_strategy(cfg.strategy).trains_as
    if owner is None or owner not in configs:
        return None
    same = dataclasses.replace(cfg, strategy=owner) == configs[owner]
    return owner if same else None


def _finished(cfg: RunConfig, folder: Path) -> bool:
    if not checkpoint_exists(folder / LATEST):
        return False
    _same_settings(cfg, folder)  # before any worker starts: a clash fails at once
    state, _ = load_state(folder / LATEST)
    spent = cfg.time_budget is not None and state.elapsed >= cfg.time_budget
    return spent or state.step >= cfg.steps


def train_or_resume(
    cfg: RunConfig, folder: Path, *, data_dir: Path | None = None, quiet: bool = False
) -> None:
    """Trains ``cfg`` into ``folder``, resuming the run there (a run whose budget is spent stays as
    it is); a folder killed before its first checkpoint starts over.

    Raises:
        ConfigError: ``folder`` holds a run with other settings, or another process trains in it.
    """
    from metalearner.training.loop import meta_train

    # Decided and cleared under the run's lock: a run another process is training (before its
    # first checkpoint, say) is refused here, never mistaken for a killed one and cleared. If
    # another process takes the folder between this lock and meta_train's, meta_train refuses.
    with run_lock(folder):
        resume = checkpoint_exists(folder / LATEST)
        if resume:
            _same_settings(cfg, folder)
        else:
            (folder / CONFIG).unlink(missing_ok=True)  # killed before its first checkpoint
    meta_train(cfg, folder, resume=resume, data_dir=data_dir, quiet=quiet)


def _same_settings(cfg: RunConfig, folder: Path) -> None:
    if read_run_config(folder) != cfg:
        raise ConfigError(
            f"{folder} holds a run with other settings than the ones asked for; choose another "
            "--out or delete that folder."
        )


def _train_one(
    cfg: RunConfig, folder: Path, data_dir: Path | None, threads: int, quiet: bool
) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train_or_resume(cfg, folder, data_dir=data_dir, quiet=quiet)
    finally:
        torch.set_num_threads(previous)


def _train_parallel(
    configs: dict[str, RunConfig],
    todo: dict[str, Path],
    data_dir: Path | None,
    workers: int,
    threads: int,
    stages: Stages,
    log: Callable[[str], None],
) -> None:
    # spawn: a fresh interpreter per worker (fork after torch's threads start is unsafe).
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            pool.submit(_train_one, configs[n], f, data_dir, threads, True): n
            for n, f in todo.items()
        }
        log(f"training {', '.join(todo)}: {workers} at a time, {threads} thread(s) each")
        # The pool starts the runs in the order given, the next one as one ends.
        queued = list(todo)
        for name in queued[:workers]:
            stages.start(name, "training", f"into {todo[name]}")
        for ended, future in enumerate(concurrent.futures.as_completed(futures)):
            future.result()  # a worker's error is raised here, as it was raised there
            stages.end(futures[future], "training")
            if ended + workers < len(queued):
                name = queued[ended + workers]
                stages.start(name, "training", f"into {todo[name]}")
