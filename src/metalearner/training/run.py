"""What the outer loop carries from phase to phase, and phase 1: setting a run up.

:func:`set_up` locks the run folder before anything in it is read, builds the experiment
(data, strategy, task streams), then restores a run from ``checkpoints/latest`` (parameters,
optimiser, every RNG state) or creates its folder; :class:`Run` is what
:func:`metalearner.training.loop.meta_train`'s later phases read and advance.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (the outer loop over meta-batches of tasks).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metalearner.data.registry import dataset
from metalearner.runs.checkpoint import checkpoint_exists
from metalearner.runs.config import RunConfig
from metalearner.runs.devices import deterministic, torch_device
from metalearner.runs.distributed import Group
from metalearner.runs.experiment import Experiment, build_experiment, seeded, task_stream
from metalearner.runs.folder import (
    LATEST,
    TrainState,
    create_run,
    load_state,
    run_lock,
    truncate_metrics,
)
from metalearner.runs.trackers import Trackers, open_trackers
from metalearner.tasks.batch import TaskSet
from metalearner.training.optimizer import make_optimizer
from metalearner.training.resume import record_config, restore, resume_notes


@dataclass
class Run:
    """What the outer loop carries from phase to phase: the run's pieces and where it stands."""

    cfg: RunConfig
    folder: Path
    exp: Experiment
    group: Group
    device: torch.device
    params: dict[str, Tensor]
    optimizer: torch.optim.Optimizer
    tasks_rng: torch.Generator
    val_tasks: TaskSet
    my_val_tasks: TaskSet
    metric: str
    info: dict[str, Any]  # what every checkpoint records beside the parameters
    step: int
    best: dict[str, float] | None
    elapsed: float  # seconds in outer steps, over all sessions (what a budget counts)
    validated: float = 0.0  # ``elapsed`` at the last validation
    improved: bool = False  # whether the last validation set a new best
    window: dict[str, list[float]] = field(default_factory=dict)  # metrics since the last line
    started: float = field(default_factory=time.perf_counter)
    validating: float = 0.0  # seconds this session spent validating
    saving: float = 0.0  # seconds this session spent writing checkpoints
    notes: list[str] = field(default_factory=list)  # said once: where a resume continues from
    tracker: Trackers = field(default_factory=Trackers)  # where metrics lines go besides the log


def set_up(
    cfg: RunConfig, folder: Path, *, resume: bool, data_dir: Path | None, group: Group,
    hold: ExitStack,
) -> Run:  # fmt: skip
    """Phase 1: lock the folder, build the experiment, then restore the run or create it.

    Args:
        cfg: the resolved run config.
        folder: the run folder (created here unless ``resume``).
        resume: continue from ``checkpoints/latest`` when it exists (a run stopped before its
            first checkpoint starts again).
        data_dir: where the dataset is; ``None``: where a resumed run found it, else
            ``$METALEARNER_DATA``.
        group: this process's place among the ranks; rank 0 alone locks and writes the folder.
        hold: what is held until training ends (the folder's lock).

    Returns:
        The run at its first step to take.
    """
    device = group.device(torch_device(cfg.device).type)
    group.check_meta_batch(cfg.meta_batch or 1)
    deterministic()
    # Taken before the folder is read and held until training ends: no second process trains
    # here meanwhile (a failure before create_run leaves no folder behind).
    if group.is_main:
        hold.enter_context(run_lock(folder))
    saved = load_state(folder / LATEST) if resume and checkpoint_exists(folder / LATEST) else None
    if saved is not None and data_dir is None:
        recorded = saved[1].meta.get("data_dir")
        data_dir = Path(recorded) if recorded else None  # where the run found its data
    # A resumed run's parameters are its checkpoint's: model.weights or model.init_from, where
    # it started from, are not read again (they may have changed or gone since).
    exp = build_experiment(cfg, data_dir=data_dir, start=saved is None)
    params = {k: v.to(device) for k, v in exp.strategy.init_params(seeded(cfg.seed)).items()}
    optimizer = make_optimizer(cfg.optimizer, list(params.values()))
    tasks_rng = task_stream(cfg.seed)
    # The global generator too (dropout, a user's module drawing noise): a run started twice
    # writes the same checkpoints, every tensor of them; a resume restores it from the run.
    torch.manual_seed(cfg.seed)
    state = TrainState(0, params, optimizer.state_dict(), {}, None, 0.0)
    notes: list[str] = []
    if saved is not None:
        state = restore(folder, saved, cfg, params, optimizer, tasks_rng, device, group.is_main)
        notes = resume_notes(folder, saved, cfg, dataset(cfg.data.dataset).metric)
    elif resume:
        # Stopped before its first checkpoint: nothing to restore, so it starts again.
        if group.is_main:
            truncate_metrics(folder, 0)
            record_config(folder, cfg)
    elif group.is_main:
        create_run(folder, cfg)
    val_tasks = exp.val_tasks(cfg)
    info = {**exp.meta, "data_dir": str(data_dir.resolve()) if data_dir else None}
    if saved is not None and "start" in saved[1].meta:
        info["start"] = saved[1].meta["start"]  # what the run started from, as first recorded
    info |= {"precision": cfg.precision, "device": cfg.device}
    # Opened last, once the folder is this run's; rank 0 alone writes the folder.
    tracker = open_trackers(cfg.log, folder, start=state.step) if group.is_main else Trackers()
    return Run(
        cfg, folder, exp, group, device, params, optimizer, tasks_rng, val_tasks,
        group.tasks(val_tasks), dataset(cfg.data.dataset).metric, info, state.step, state.best,
        state.elapsed, validated=state.elapsed, tracker=tracker, notes=notes,
    )  # fmt: skip
