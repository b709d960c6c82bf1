"""The state of an RL run and its checkpoint: θ, Adam's moments, the RNG, the time spent.

Written as the supervised runs' checkpoints are (:mod:`metalearner.runs.checkpoint`: safetensors and
JSON, atomic, checksummed); the generator's state is a tensor of the checkpoint, so a resumed
run draws the same tasks, reset seeds and action noise as one never interrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metalearner.errors import DataError
from metalearner.functional.optim import adam
from metalearner.rl.config import RLConfig, read_config, to_dict
from metalearner.rl.families import get_family
from metalearner.rl.policy import Params, init_policy
from metalearner.rl.ppo import AdamState
from metalearner.runs.checkpoint import Checkpoint, damaged, load_checkpoint, save_checkpoint
from metalearner.runs.checkpoint_schema import check_tensors
from metalearner.runs.folder import CONFIG, LATEST, check_resumable, has_checkpoint

# What a resumed run may change in its config.yaml: how long and on how many threads it runs,
# how often it saves, and how it is scored; not what is learned, from which tasks, or how.
RESUMABLE = frozenset({"iterations", "time_budget", "save_every", "threads", "eval_steps",
                       "test_tasks", "baselines"})  # fmt: skip


@dataclass
class State:
    """Everything a resumed run needs: iteration, θ, Adam's moments, the RNG, seconds spent."""

    iteration: int
    params: Params
    adam: AdamState
    generator: torch.Generator
    elapsed: float


def save_state(folder: Path, cfg: RLConfig, state: State) -> None:
    """Writes ``state`` as the run's ``checkpoints/latest``, atomically."""
    tensors: dict[str, Tensor] = {f"params/{k}": v for k, v in state.params.items()}
    tensors |= {f"adam/{k}": v for k, v in state.adam.items()}
    tensors["rng/train"] = state.generator.get_state()
    family = get_family(cfg.env)
    meta = {
        "kind": "rl",
        "env": cfg.env,
        "method": cfg.method,
        "config": to_dict(cfg),
        "step": state.iteration,
        "elapsed": state.elapsed,
        "obs_dim": family.obs_dim,
        "act_dim": family.act_dim,
        "param_names": list(state.params),
    }
    save_checkpoint(folder / LATEST, tensors, meta)


def load_policy(folder: Path) -> tuple[RLConfig, Params, dict[str, Any]]:
    """The config, θ and checkpoint metadata of an RL run folder's latest checkpoint.

    Raises:
        DataError: the folder is not an RL run, or it has no checkpoint yet.
    """
    cfg, ckpt = _load(folder)
    _check(ckpt, cfg)
    params = ckpt.group("params")
    return cfg, {k: params[k] for k in ckpt.meta["param_names"]}, ckpt.meta


def _load(folder: Path) -> tuple[RLConfig, Checkpoint]:
    cfg = read_config(folder / CONFIG)
    if not has_checkpoint(folder):
        raise DataError(f"{folder} has no checkpoint yet; train it first (or resume it).")
    ckpt = load_checkpoint(folder / LATEST)
    if ckpt.meta.get("kind") != "rl" or "param_names" not in ckpt.meta:
        raise DataError(f"{ckpt.path} is not an RL checkpoint; give a `metalearner rl` run.")
    return cfg, ckpt


def _check(ckpt: Checkpoint, cfg: RLConfig) -> None:
    """Refuses a checkpoint whose fields or tensors are not what :func:`save_state` writes for
    ``cfg``'s policy: names, shapes and dtypes of θ, Adam's state and the generator's state."""
    meta, path = ckpt.meta, ckpt.path
    family = get_family(cfg.env)
    expected = init_policy(
        family.obs_dim, family.act_dim, cfg.hidden, generator=torch.Generator().manual_seed(0),
        init_log_std=cfg.init_log_std,
    )  # fmt: skip
    if meta.get("param_names") != list(expected):
        raise damaged(path, "its param_names are not the policy's")
    step, elapsed = meta.get("step"), meta.get("elapsed", 0.0)
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 10**12:
        raise damaged(path, f"step is {step!r}, not a whole number of iterations")
    if not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        raise damaged(path, f"elapsed is {elapsed!r}, not a number of seconds")
    check_tensors(path, "params", ckpt.group("params"), expected)
    check_tensors(path, "adam", ckpt.group("adam"), adam(cfg.ppo_lr).init(expected))
    rng = {k: v for k, v in ckpt.group("rng").items()}
    check_tensors(path, "rng", rng, {"train": torch.Generator().get_state()})


def restore_state(folder: Path, cfg: RLConfig) -> State:
    """The state of a run folder's latest checkpoint, which must have been trained with ``cfg``.

    Raises:
        ConfigError: its config.yaml was edited since (beyond :data:`RESUMABLE`).
        DataError: no usable checkpoint.
    """
    _, ckpt = _load(folder)
    check_resumable(folder, ckpt.meta.get("config"), to_dict(cfg), RESUMABLE)
    _check(ckpt, cfg)  # the config trained, so its policy's shapes
    params = ckpt.group("params")
    generator = torch.Generator()
    generator.set_state(ckpt.tensors["rng/train"])
    elapsed = float(ckpt.meta.get("elapsed", 0.0))  # finite: checked on load
    names = ckpt.meta["param_names"]
    step = int(ckpt.meta["step"])
    return State(step, {k: params[k] for k in names}, ckpt.group("adam"), generator, elapsed)
