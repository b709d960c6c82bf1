"""Meta-training: the one outer loop for every strategy, and the only place parameters change.

Each outer step draws a meta-batch of tasks from the training split, asks the strategy for
meta-gradients (DESIGN.md rule 2), clips them, checks them for NaN/inf and lets the optimiser
step. Every ``val_every`` steps the run is scored on its fixed validation tasks and saved
(``checkpoints/latest``, and ``checkpoints/best`` when the score improved).

Randomness comes only from explicit generators whose states are checkpointed, and CPU kernels
run in deterministic mode, so a run killed at any moment and resumed ends with parameters
bit-identical to a run never interrupted.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Nichol et al., "On First-Order Meta-Learning Algorithms", 2018 (Reptile's outer SGD step on
    the pseudo-gradient θ − φ, annealed linearly). Snell et al., "Prototypical Networks for
    Few-shot Learning", NeurIPS 2017 (Adam, step halved every 2000 episodes).
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017
    (cosine schedule).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metalearner.data.registry import dataset
from metalearner.errors import ConfigError, MetalearnerError
from metalearner.evaluation.evaluator import summarize, task_scores
from metalearner.runs.checkpoint import Checkpoint, checkpoint_exists
from metalearner.runs.config import RunConfig, to_dict
from metalearner.runs.devices import deterministic, precision, threads, torch_device
from metalearner.runs.distributed import Backend, Group, joined
from metalearner.runs.experiment import build_experiment, seeded, task_stream
from metalearner.runs.folder import (
    BEST,
    LATEST,
    TrainState,
    append_metrics,
    check_resumable,
    create_run,
    load_state,
    run_lock,
    save_state,
    truncate_metrics,
)
from metalearner.training.optimizer import lr_factor, make_optimizer
from metalearner.training.progress import TrainingProgress


class TrainingDivergedError(MetalearnerError):
    """The loss or the meta-gradient became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`meta_train`.

    Attributes:
        run_dir: the run folder.
        step: outer steps completed.
        params: the final meta-parameters (on CPU).
        best: the best validation score and its step, or ``None`` if never validated.
        metric: ``"accuracy"`` or ``"mse"``.
    """

    run_dir: Path
    step: int
    params: dict[str, Tensor]
    best: dict[str, float] | None
    metric: str


def meta_train(
    cfg: RunConfig,
    run_dir: Path | str,
    *,
    resume: bool = False,
    data_dir: Path | None = None,
    quiet: bool = False,
    stop_at: int | None = None,
    on_validation: Callable[[int, float], None] | None = None,
    backend: Backend = "auto",
) -> TrainResult:
    """Meta-trains ``cfg``'s strategy, writing the run folder as it goes.

    Args:
        cfg: the resolved run config (:func:`metalearner.runs.config.load_config`); on ``resume``
            the caller passes the run folder's own config.
        run_dir: the run folder (created unless ``resume``).
        resume: continue from ``checkpoints/latest``: step, parameters, optimiser state and
            every RNG state are restored.
        data_dir: where the dataset is (default ``$METALEARNER_DATA``; on resume, where the run
            found it).
        quiet: no progress bar (it is also off when stderr is not a terminal).
        stop_at: stop (with a checkpoint) once this many steps are done, as if interrupted.
        on_validation: called with (step, validation score) after each validation, once its
            checkpoint and metrics are written; it may raise to stop training there (a
            hyperparameter search prunes a poor trial this way). Under torchrun every rank
            calls it with the same score.
        backend: under torchrun (``WORLD_SIZE`` > 1), the ``torch.distributed`` backend:
            ``"gloo"``, ``"nccl"`` or ``"auto"`` (NCCL for CUDA runs). Each rank computes the
            meta-gradients of its share of every meta-batch, the ranks average them, and rank 0
            alone writes the run folder (:mod:`metalearner.runs.distributed`).

    Returns:
        The final state (see :class:`TrainResult`).

    Raises:
        TrainingDivergedError: the loss or a meta-gradient became NaN or infinite.
        ConfigError, DataError: bad settings or missing data.

    Example:
        >>> cfg = load_config(overrides=["data.dataset=sinusoid", "steps=200"])
        >>> result = meta_train(cfg, "runs/sine")
    """
    with threads(cfg.threads), joined(cfg.device, backend) as group, ExitStack() as hold:
        return _train(
            cfg, Path(run_dir), resume, data_dir, quiet, stop_at, on_validation, group, hold
        )


def _train(
    cfg: RunConfig,
    folder: Path,
    resume: bool,
    data_dir: Path | None,
    quiet: bool,
    stop_at: int | None,
    on_validation: Callable[[int, float], None] | None,
    group: Group,
    hold: ExitStack,
) -> TrainResult:
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
    exp = build_experiment(cfg, data_dir=data_dir)
    metric = dataset(cfg.data.dataset).metric
    params = {k: v.to(device) for k, v in exp.strategy.init_params(seeded(cfg.seed)).items()}
    optimizer = make_optimizer(cfg.optimizer, list(params.values()))
    tasks_rng = task_stream(cfg.seed)
    state = TrainState(0, params, optimizer.state_dict(), {}, None, 0.0)
    if saved is not None:
        state = _restore(folder, saved, cfg, params, optimizer, tasks_rng, device, group.is_main)
    elif resume:
        # Stopped before its first checkpoint: nothing to restore, so it starts again.
        if group.is_main:
            truncate_metrics(folder, 0)
    elif group.is_main:
        create_run(folder, cfg)
    val_tasks = exp.val_tasks(cfg)
    my_val_tasks = group.tasks(val_tasks)
    info = {**exp.meta, "data_dir": str(data_dir.resolve()) if data_dir else None}
    info |= {"precision": cfg.precision, "device": cfg.device}
    step, best, elapsed = state.step, state.best, state.elapsed
    base_lr = cfg.optimizer.lr or 0.0  # resolved from the strategy, never None here
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    if cfg.time_budget is not None and elapsed >= cfg.time_budget:
        end = step  # resumed after its budget was spent: nothing left to do
    window: dict[str, list[float]] = {}
    started, last_val = time.perf_counter(), "-"
    validated = elapsed  # training seconds at the last validation
    with TrainingProgress(cfg.steps, step, quiet=quiet or not group.is_main) as bar:
        while step < end:
            tick = time.perf_counter()
            for settings in optimizer.param_groups:
                settings["lr"] = base_lr * lr_factor(cfg, step)
            # Every rank draws the whole meta-batch (same generator) and keeps its share.
            batch = exp.train.sample(cfg.meta_batch or 1, generator=tasks_rng)
            if exp.strategy.ordered:  # a fresh order of each task's examples (Reptile)
                batch = batch.with_order(tasks_rng)
            batch = group.share(batch)
            if not exp.strategy.host_batches:  # a CUDA graph copies it in
                batch = batch.to(device)
            with precision(cfg.precision, device, exp.strategy.config):
                grads, metrics = exp.strategy.meta_grads(params, batch)
            grads, metrics = group.mean(grads, metrics)
            norm = _global_norm(grads)
            if not (math.isfinite(metrics["loss"]) and math.isfinite(norm)):
                raise TrainingDivergedError(_diverged(folder, step + 1, metrics["loss"], norm))
            if cfg.optimizer.clip is not None and norm > cfg.optimizer.clip:
                scale = cfg.optimizer.clip / (norm + 1e-6)
                grads = {k: g * scale for k, g in grads.items()}
            for k, p in params.items():
                p.grad = grads[k].to(p.dtype)
            optimizer.step()
            step += 1
            for k, v in {**metrics, "grad_norm": norm}.items():
                window.setdefault(k, []).append(float(v))
            took = group.slowest(time.perf_counter() - tick)
            elapsed += took
            rate = batch.num_tasks * group.world / max(took, 1e-9)
            record: dict[str, Any] = {}
            if cfg.time_budget is not None and elapsed >= cfg.time_budget:
                end = step  # the budget is used up: finish this step as the last one
            due = cfg.val_every_seconds is not None and elapsed - validated >= cfg.val_every_seconds
            if step % cfg.val_every == 0 or step == end or due:
                mine = task_scores(exp.strategy, params, my_val_tasks, device=device)
                val = summarize(group.gather(mine, len(val_tasks)))
                record[f"val_{metric}"], record["val_ci95"] = val.mean, val.ci95
                improved = best is None or (
                    val.mean > best["score"] if metric == "accuracy" else val.mean < best["score"]
                )
                better = improved and math.isfinite(val.mean)  # nan, inf: a diverged adaptation
                if better:
                    best = {"score": val.mean, "step": step}
                last_val, validated = f"{val.mean:.4g}", elapsed
            if group.is_main and (record or step % cfg.log_every == 0):
                # Logged before the checkpoint: a kill between the two leaves a line that the
                # resumed run drops and logs again, never a step whose line is lost.
                times = {"time": round(elapsed, 3), "wall": round(time.perf_counter() - started, 3)}
                append_metrics(folder, _record(step, times, window, metric, record, optimizer))
                window = {}
            if record:
                state = TrainState(
                    step, params, optimizer.state_dict(), _rng_states(tasks_rng), best, elapsed
                )
                # Best first: latest names this step as the best, so a kill between the two
                # must leave the older latest, whose resume redoes the step and writes best.
                if better and group.is_main:
                    save_state(folder / BEST, state, cfg, info, metric)
                if group.is_main:
                    save_state(folder / LATEST, state, cfg, info, metric)
            if record and on_validation is not None:
                on_validation(step, record[f"val_{metric}"])
            bar.update(step, loss=float(metrics["loss"]), val=last_val, tasks_per_s=rate)
    final = {k: v.detach().cpu() for k, v in params.items()}
    return TrainResult(folder, step, final, best, metric)


def _restore(
    folder: Path,
    saved: tuple[TrainState, Checkpoint],
    cfg: RunConfig,
    params: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    rng: torch.Generator,
    device: torch.device,
    writer: bool,
) -> TrainState:
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


def _rng_states(tasks: torch.Generator) -> dict[str, Tensor]:
    # The global RNG is saved too: no code here should draw from it, but a strategy might.
    states = {"tasks": tasks.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _global_norm(grads: dict[str, Tensor]) -> float:
    total = sum((g.detach().double().square().sum() for g in grads.values()), torch.zeros(()))
    return float(total.sqrt())


def _record(
    step: int,
    times: dict[str, float],
    window: dict[str, list[float]],
    metric: str,
    extra: dict[str, Any],
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    # Training numbers are means over the steps since the last line: one step is too noisy.
    # time: seconds in outer steps over all sessions (what budgets count); wall: this session's.
    out: dict[str, Any] = {"step": step, **times}
    out["lr"] = optimizer.param_groups[0]["lr"]
    for k, values in window.items():
        out[k] = sum(values) / len(values)
    if metric == "mse":
        out["mse"] = out["loss"]  # a regression strategy's loss is the query MSE
    return out | extra


def _diverged(folder: Path, step: int, loss: float, norm: float) -> str:
    latest = folder / LATEST
    if latest.exists():
        where = f"the last good checkpoint is {latest}"
    else:
        where = "no checkpoint was written yet"
    return (
        f"Training diverged at step {step} (loss {loss}, gradient norm {norm}); {where}; "
        "lower optimizer.lr, set optimizer.clip, or use precision float32."
    )
