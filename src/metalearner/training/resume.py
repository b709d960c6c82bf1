"""What a resumed run restores: parameters, the optimiser's state and every RNG state.

A run killed at any moment and resumed from ``checkpoints/latest`` ends bit-identical to one
never interrupted: the step, the parameters, the optimiser's moments, the task generator's and
the global RNG's states all come back, and ``metrics.jsonl`` loses the lines logged after it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import Checkpoint
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
            but :data:`RESUMABLE`), or the checkpoint holds another model's parameters.
    """
    state, ckpt = saved
    check_resumable(folder, ckpt.meta.get("config"), to_dict(cfg), RESUMABLE)
    if list(state.params) != list(params):
        raise ConfigError(
            f"{ckpt.path} holds parameters of another model; resume it with its own config.yaml."
        )
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
