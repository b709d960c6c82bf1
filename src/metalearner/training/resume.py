"""What a resumed run restores: parameters, the optimiser's state and every RNG state; and
what a resumed run may change.

A run killed at any moment and resumed from ``checkpoints/latest`` ends bit-identical to one
never interrupted: the step, the parameters, the optimiser's moments, the task generator's and
the global RNG's states all come back, and ``metrics.jsonl`` loses the lines logged after it.

A finished run is trained longer by resuming it with more ``steps`` (or a larger
``time_budget``): it goes on from its checkpoint as a run of the new length would from that
step. A step-size schedule that spans ``steps`` (cosine, linear) is therefore recomputed over
the new total, so the step size jumps at the resume from the end of the old schedule to the new
schedule's value at that step; :func:`resume_notes` says by how much. A constant or stepwise
schedule depends on the step alone: extending such a run equals training it that long at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from metalearner.config.yaml_files import read_saved_yaml
from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import Checkpoint, damaged
from metalearner.runs.checkpoint_schema import check_tensors
from metalearner.runs.config import RunConfig, load_config, to_dict, to_yaml
from metalearner.runs.folder import (
    CONFIG,
    TrainState,
    changed_setting,
    check_resumable,
    read_run_config,
    truncate_metrics,
    write_atomic,
)
from metalearner.training.optimizer import lr_factor
from metalearner.training.progress import clock_text, score_text


def restore(
    folder: Path,
    saved: tuple[TrainState, Checkpoint],
    cfg: RunConfig,
    params: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    rng: torch.Generator,
    device: torch.device,
    writer: bool,
) -> TrainState:
    """Puts a run back where ``saved`` (a checkpoint read by ``load_state``) left it.

    Args:
        folder: the run folder.
        saved: the training state and the checkpoint it was read from.
        cfg: the config the run resumes with (its ``config.yaml``).
        params: the freshly built parameters, overwritten in place.
        optimizer: the optimiser over ``params``, given its saved state.
        rng: the task generator, given its saved state.
        device: where the run trains (a CUDA RNG state is restored there only).
        writer: whether this process writes the run folder (rank 0).

    Raises:
        ConfigError: ``cfg`` changed a setting a resumed run may not change (anything but
            :data:`RESUMABLE`), or asks for fewer steps than the run has done.
        DataError: the checkpoint's tensors or optimiser settings are not this run's ("damaged
            or replaced").
    """
    state, ckpt = saved
    check_resumable(folder, ckpt.meta.get("config"), to_dict(cfg), RESUMABLE)
    if cfg.steps < state.step:
        raise ConfigError(
            f"steps is {cfg.steps}, but {folder} has done {state.step} steps already; give "
            f"steps {state.step} or more."
        )
    # The config is the one trained, so the model is too: other tensors are damage.
    check_tensors(ckpt.path, "params", state.params, params)
    if list(state.params) != list(params):
        raise damaged(ckpt.path, "its param_names are not in the model's order")
    _check_optimizer(ckpt.path, state, params, optimizer)
    fresh = {"tasks": rng.get_state(), "torch": torch.get_rng_state()}
    check_tensors(ckpt.path, "rng", {k: state.rng[k] for k in fresh}, fresh)
    cuda = state.rng.get("cuda")
    if cuda is not None and (cuda.dtype != torch.uint8 or cuda.dim() != 1):
        raise damaged(ckpt.path, "rng/cuda is not a generator state")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state.params[k])
    optimizer.load_state_dict(state.optimizer)
    rng.set_state(state.rng["tasks"])
    torch.set_rng_state(state.rng["torch"])
    if "cuda" in state.rng and device.type == "cuda":
        torch.cuda.set_rng_state(state.rng["cuda"])
    if writer:
        truncate_metrics(folder, state.step)
        record_config(folder, cfg)
    return state


def record_config(folder: Path, cfg: RunConfig) -> None:
    """Rewrites ``config.yaml`` as ``cfg`` where a resumed run changed it (``--set steps=N``), so
    the folder states what the run now is; an unchanged one is left as it is, comments and all.
    """
    file = folder / CONFIG
    if not file.is_file() or read_run_config(folder) != cfg:
        write_atomic(file, to_yaml(cfg))


def extended_config(folder: Path, overrides: Sequence[str]) -> RunConfig:
    """The config a run resumes with: its ``config.yaml`` with ``--set`` changes of the
    settings that leave what is learned as it is (:data:`RESUMABLE`).

    Args:
        folder: the run folder.
        overrides: ``dotted.key=value`` strings (``["steps=40000", "time_budget=null"]``).

    Raises:
        DataError: ``folder`` is not a run folder.
        ConfigError: an override changes what the run learns (the message lists what may
            change), or is not a valid setting.

    Example:
        >>> cfg = extended_config(Path("runs/sine"), ["steps=40000"])  # then meta_train(resume)
    """
    trained = read_run_config(folder)
    if not overrides:
        return trained
    cfg = load_config(base=read_saved_yaml(folder / CONFIG), overrides=overrides)
    changed = changed_setting(to_dict(trained), to_dict(cfg), RESUMABLE)
    if changed is not None:
        name = changed[0]
        raise ConfigError(
            f"A resumed run may change only {', '.join(sorted(RESUMABLE))}, not {name} (it "
            f"changes what the run learns); start a new run with another --out to change {name}."
        )
    return cfg


def resume_notes(
    folder: Path, saved: tuple[TrainState, Checkpoint], cfg: RunConfig, metric: str
) -> list[str]:
    """What a resumed run says once: where it continues from, and what it will not do.

    The lines: ``resuming <folder> from step X of N (best <score> at step S) after <time> of
    training``; then, where it applies, that it has nothing left to train (and how to extend
    it), or how a schedule spanning ``steps`` changes the step size now that they changed.

    Args:
        folder: the run folder.
        saved: the training state and the checkpoint it was read from.
        cfg: the config the run resumes with.
        metric: the validation metric's name.
    """
    state, ckpt = saved
    best = state.best
    score = "no finite validation score yet"
    if best is not None:
        score = f"best {score_text(metric, best['score'])} at step {int(best['step'])}"
    notes = [
        f"resuming {folder} from step {state.step} of {cfg.steps} ({score}) after "
        f"{clock_text(state.elapsed)} of training"
    ]
    if state.step >= cfg.steps:
        notes.append(
            f"{folder} has done its {cfg.steps} steps: nothing to train; extend it with --set "
            "steps=N."
        )
    elif cfg.time_budget is not None and state.elapsed >= cfg.time_budget:
        notes.append(
            f"{folder} has spent its time_budget of {cfg.time_budget:g} s: nothing to train; "
            "extend it with --set time_budget=SECONDS (or null)."
        )
    trained = ckpt.meta.get("config")
    steps = trained.get("steps") if isinstance(trained, dict) else None
    if isinstance(steps, int) and steps != cfg.steps and state.step < cfg.steps:
        was = lr_factor(cfg.optimizer, state.step, steps)
        now = lr_factor(cfg.optimizer, state.step, cfg.steps)
        if was != now:
            notes.append(
                f"note: optimizer.schedule {cfg.optimizer.schedule} spans steps, so it now runs "
                f"over {cfg.steps}: the step size goes from {was:.3g} to {now:.3g} × "
                f"optimizer.lr at step {state.step}."
            )
    return notes


def _check_optimizer(
    path: Path, state: TrainState, params: dict[str, Tensor], optimizer: torch.optim.Optimizer
) -> None:
    """The saved optimiser state must be this optimiser's: its groups' settings of the JSON
    types it gives them, a step count (one number) and per-parameter tensors of the parameter's
    shape and dtype."""
    fresh = optimizer.state_dict()["param_groups"]
    saved = state.optimizer["param_groups"]
    if len(saved) != len(fresh):
        raise damaged(path, f"it has {len(saved)} optimiser groups, the run has {len(fresh)}")
    for have, want in zip(saved, fresh, strict=True):
        # Settings of another torch version may be missing (torch fills in its defaults) or
        # extra (ignored); those both know must have the type this optimiser gives them.
        for key in have.keys() & want.keys() - {"params"}:
            if not _same_type(have[key], want[key]):
                raise damaged(path, f"its optimiser setting {key} is {have[key]!r}")
    shapes = list(params.values())
    for idx, entries in state.optimizer["state"].items():
        for name, value in entries.items():
            scalar = name == "step" and value.numel() == 1 and value.is_floating_point()
            like = shapes[idx]
            if not scalar and (value.shape != like.shape or value.dtype != like.dtype):
                raise damaged(
                    path,
                    f"optim/{idx}/{name} is {str(value.dtype).removeprefix('torch.')} "
                    f"{list(value.shape)}, its parameter {list(like.shape)}",
                )


def _same_type(have: object, want: object) -> bool:
    if isinstance(want, bool) or want is None:
        return have is None or isinstance(have, bool)  # None, or set: flags like foreach
    if isinstance(want, (int, float)):
        return isinstance(have, (int, float)) and not isinstance(have, bool)
    if isinstance(want, (tuple, list)):
        return (
            isinstance(have, (tuple, list))
            and len(have) == len(want)
            and all(_same_type(h, w) for h, w in zip(have, want, strict=True))
        )
    return isinstance(have, type(want))


# What a resumed run may change (in its config.yaml, or with --set): when and where it runs,
# how long, what it reports, and where its data now lies; not what is learned, from which
# tasks, or how. Raising steps extends a finished run (a schedule spanning steps then spans the
# new total: resume_notes says so).
RESUMABLE = frozenset(
    {"steps", "time_budget", "val_every", "val_every_seconds", "log_every", "progress_every",
     "test_tasks", "precision", "strategy_config.precision", "device", "threads", "data.path",
     "log"}
)  # fmt: skip


def rng_states(tasks: torch.Generator) -> dict[str, Tensor]:
    """The RNG states a checkpoint keeps: the task generator's, the global CPU one's, CUDA's."""
    # The global RNG is saved too: no code here should draw from it, but a strategy might.
    states = {"tasks": tasks.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states
