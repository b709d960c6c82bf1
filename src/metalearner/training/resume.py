"""What a resumed run restores: parameters, the optimiser's state and every RNG state.

A run killed at any moment and resumed from ``checkpoints/latest`` ends bit-identical to one
never interrupted: the step, the parameters, the optimiser's moments, the task generator's and
the global RNG's states all come back, and ``metrics.jsonl`` loses the lines logged after it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from metalearner.runs.checkpoint import Checkpoint, damaged
from metalearner.runs.checkpoint_schema import check_tensors
from metalearner.runs.config import RunConfig, to_dict
from metalearner.runs.folder import TrainState, check_resumable, truncate_metrics


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
        ConfigError: ``config.yaml`` changed a setting a resumed run may not change (anything
            but :data:`RESUMABLE`).
        DataError: the checkpoint's tensors or optimiser settings are not this run's ("damaged
            or replaced").
    """
    state, ckpt = saved
    check_resumable(folder, ckpt.meta.get("config"), to_dict(cfg), RESUMABLE)
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
    return state


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


# What a resumed run may change in its config.yaml: when and where it runs, how long, and
# where its data now lies; not what is learned, from which tasks, or how.
RESUMABLE = frozenset(
    {"steps", "time_budget", "val_every", "val_every_seconds", "log_every", "test_tasks",
     "precision", "strategy_config.precision", "device", "threads", "data.path"}
)  # fmt: skip


def rng_states(tasks: torch.Generator) -> dict[str, Tensor]:
    """The RNG states a checkpoint keeps: the task generator's, the global CPU one's, CUDA's."""
    # The global RNG is saved too: no code here should draw from it, but a strategy might.
    states = {"tasks": tasks.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states
