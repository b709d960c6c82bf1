"""Meta-training: the one outer loop for every strategy, and the only place parameters change.

Each outer step draws a meta-batch of tasks from the training split, asks the strategy for
meta-gradients (DESIGN.md rule 2), clips them, checks them for NaN/inf and lets the optimiser
step. Every ``val_every`` steps the run is scored on its fixed validation tasks and saved
(``checkpoints/latest``, and ``checkpoints/best`` when the score improved). When the run ends,
the adaptation (steps, a transfer head's step size) is chosen on the validation tasks for each
checkpoint and stored in it (:mod:`metalearner.training.adaptation`). A run trained on its
validation classes too (``data.train_on_val``) keeps its last checkpoint as the best and chooses
no adaptation: its validation tasks are of seen classes. What the phases share, and how a run
is set up or restored, is :mod:`metalearner.training.run`.

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

from metalearner.errors import MetalearnerError
from metalearner.evaluation.evaluator import summarize, task_scores
from metalearner.runs.config import RunConfig
from metalearner.runs.devices import precision, threads
from metalearner.runs.distributed import Backend, joined
from metalearner.runs.folder import BEST, LATEST, TrainState, append_metrics, save_state
from metalearner.training.adaptation import choose_adaptations
from metalearner.training.optimizer import lr_factor
from metalearner.training.progress import Horizon, TrainingProgress, score_text
from metalearner.training.resume import rng_states
from metalearner.training.run import Run, set_up


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
            the caller passes the run folder's own config, or one that differs from it only in
            settings a resumed run may change (:func:`~.resume.extended_config`: more steps
            extend a finished run), which config.yaml then states.
        run_dir: the run folder (created unless ``resume``).
        resume: continue from ``checkpoints/latest``: step, parameters, optimiser state and
            every RNG state are restored.
        data_dir: where the dataset is (default ``$METALEARNER_DATA``; on resume, where the run
            found it).
        quiet: no progress at all: no bar (drawn only when stderr is a terminal), no progress
            lines (printed every ``cfg.progress_every`` seconds, at each validation and at the
            end, only when stdout is not a terminal), no note of where a resume continues from,
            no line of the adaptation chosen at the end.
        stop_at: stop (with a checkpoint) once this many steps are done, as if interrupted
            (the adaptation is chosen only when the run ends: its steps or budget done).
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
        run = set_up(cfg, Path(run_dir), resume=resume, data_dir=data_dir, group=group, hold=hold)
        # However training ends (done, budget, Ctrl-C, diverged): curves.png, trackers' files.
        hold.enter_context(run.tracker)
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        if cfg.time_budget is not None and run.elapsed >= cfg.time_budget:
            end = run.step  # resumed after its budget was spent: nothing left to do
        with TrainingProgress(
            Horizon(cfg.steps, cfg.time_budget), run.folder.name or str(run.folder),
            start=run.step, spent=run.elapsed, tasks_per_step=cfg.meta_batch or 1,
            every=cfg.progress_every, notes=run.notes, quiet=quiet or not group.is_main,
        ) as bar:  # fmt: skip
            first = run.step
            while run.step < end:
                metrics = _outer_step(run)
                if cfg.time_budget is not None and run.elapsed >= cfg.time_budget:
                    end = run.step  # the budget is used up: finish this step as the last one
                due = cfg.val_every_seconds is not None and (
                    run.elapsed - run.validated >= cfg.val_every_seconds
                )
                record = (
                    _validate(run)
                    if run.step % cfg.val_every == 0 or run.step == end or due
                    else {}
                )
                _log(run, record)
                shown = None
                if record:
                    _save(run)
                    score = record[f"val_{run.metric}"]
                    shown = score_text(run.metric, score)
                    if on_validation is not None:
                        on_validation(run.step, score)
                loss = float(metrics["loss"])
                bar.update(run.step, run.elapsed, loss=loss, val=shown, validated=bool(record))
        over = cfg.time_budget is not None and run.elapsed >= cfg.time_budget
        if run.step >= cfg.steps or over:
            for line in choose_adaptations(run, fresh=run.step > first):
                if not quiet and group.is_main:
                    print(line, flush=True)
        final = {k: v.detach().cpu() for k, v in run.params.items()}
        return TrainResult(run.folder, run.step, final, run.best, run.metric)


def _outer_step(run: Run) -> dict[str, float]:
    """Phase 2: sample a meta-batch, take its meta-gradients, step the optimiser; returns the
    step's metrics."""
    cfg, strategy, group = run.cfg, run.exp.strategy, run.group
    tick = time.perf_counter()
    base_lr = cfg.optimizer.lr or 0.0  # resolved from the strategy, never None here
    factor = lr_factor(
        cfg.optimizer, run.step, cfg.steps, spent=run.elapsed, budget=cfg.time_budget
    )
    for settings in run.optimizer.param_groups:
        settings["lr"] = base_lr * factor
    # Every rank draws the whole meta-batch (same generator, or mini-batch number) and keeps
    # its share.
    batch = run.exp.training_batch(run.step, cfg.meta_batch or 1, run.tasks_rng)
    if strategy.ordered:  # a fresh order of each task's examples (Reptile)
        batch = batch.with_order(run.tasks_rng)
    batch = group.share(batch)
    if not strategy.host_batches:  # a CUDA graph copies it in
        batch = batch.to(run.device)
    with precision(cfg.precision, run.device, autocast=not strategy.applies_precision):
        grads, metrics = strategy.meta_grads(run.params, batch)
    grads, metrics = group.mean(grads, metrics)
    norm = _global_norm(grads)
    if not (math.isfinite(metrics["loss"]) and math.isfinite(norm)):
        raise TrainingDivergedError(_diverged(run.folder, run.step + 1, metrics["loss"], norm))
    if cfg.optimizer.clip is not None and norm > cfg.optimizer.clip:
        scale = cfg.optimizer.clip / (norm + 1e-6)
        grads = {k: g * scale for k, g in grads.items()}
    for k, p in run.params.items():
        p.grad = grads[k].to(p.dtype)
    run.optimizer.step()
    run.step += 1
    for k, v in {**metrics, "grad_norm": norm}.items():
        run.window.setdefault(k, []).append(float(v))
    run.elapsed += group.slowest(time.perf_counter() - tick)
    return metrics


def _validate(run: Run) -> dict[str, Any]:
    """Phase 3: score the fixed validation tasks; returns the metrics line's validation part.

    What the strategy computes from the training examples (SimpleShot's mean feature) is
    computed first, with the parameters as they are: the scores and the checkpoint that follow
    use it."""
    tick = time.perf_counter()
    _refresh_statistics(run)
    mine = task_scores(run.exp.strategy, run.params, run.my_val_tasks, device=run.device)
    val = summarize(run.group.gather(mine, len(run.val_tasks)))
    best = run.best
    improved = best is None or (
        val.mean > best["score"] if run.metric == "accuracy" else val.mean < best["score"]
    )
    run.improved = improved and math.isfinite(val.mean)  # nan, inf: a diverged adaptation
    if run.cfg.data.train_on_val:  # validation classes were trained on: keep the last, not
        run.improved = math.isfinite(val.mean)  # the best fit of seen classes
    if run.improved:
        run.best = {"score": val.mean, "step": run.step}
    run.validated = run.elapsed
    run.validating += time.perf_counter() - tick
    return {f"val_{run.metric}": val.mean, "val_ci95": val.ci95}


def _refresh_statistics(run: Run) -> None:
    """Writes :meth:`Strategy.statistics` into the parameters, the training examples given in
    chunks of a meta-batch (every rank computes the same)."""
    if run.exp.batches is None:
        return
    size = run.cfg.meta_batch or 1
    examples = (x.to(run.device) for x in run.exp.batches.examples(size))
    fresh = run.exp.strategy.statistics(run.params, examples)
    with torch.no_grad():
        for k, v in fresh.items():
            run.params[k].copy_(v)


def _log(run: Run, record: dict[str, Any]) -> None:
    """Phase 4: a metrics.jsonl line every ``log_every`` steps and at each validation, also
    given to the run's trackers (:mod:`metalearner.runs.trackers`).

    Logged before the checkpoint: a kill between the two leaves a line that the resumed run
    drops and logs again, never a step whose line is lost.
    """
    if not run.group.is_main or not (record or run.step % run.cfg.log_every == 0):
        return
    times = {
        "time": round(run.elapsed, 3),
        "wall": round(time.perf_counter() - run.started, 3),
        "validating": round(run.validating, 3),
        "saving": round(run.saving, 3),
    }
    line = _record(run.step, times, run.window, run.metric, record, run.optimizer)
    append_metrics(run.folder, line)
    run.tracker.log(run.step, line)
    run.window = {}


def _save(run: Run) -> None:
    """Phase 5: checkpoints after a validation: ``best`` if it improved, then ``latest``."""
    state = TrainState(
        run.step, run.params, run.optimizer.state_dict(), rng_states(run.tasks_rng), run.best,
        run.elapsed,
    )  # fmt: skip
    if not run.group.is_main:
        return
    # Best first: latest names this step as the best, so a kill between the two must leave
    # the older latest, whose resume redoes the step and writes best.
    tick = time.perf_counter()
    if run.improved:
        save_state(run.folder / BEST, state, run.cfg, run.info, run.metric)
    save_state(run.folder / LATEST, state, run.cfg, run.info, run.metric)
    run.saving += time.perf_counter() - tick


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
    # time: seconds in outer steps over all sessions (what budgets count); wall: this session's;
    # validating, saving: this session's seconds in validations (this line's included) and in
    # checkpoints (written after their line: the ones before it), so that where the wall time
    # went is read from the last line.
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
