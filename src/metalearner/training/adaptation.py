"""Phase 6 of meta-training: the adaptation each checkpoint of a finished run is scored with.

When a run ends (its steps or its time budget done), the adaptation (a MAML run's inner steps,
a transfer head's step size) is chosen on the validation tasks for ``checkpoints/best`` and
``checkpoints/latest`` and stored in each (:mod:`metalearner.evaluation.choice`), so that
``evaluate`` and ``adapt`` use what validation chose, never what the test tasks would favour.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (the number of inner steps at test time as a setting of the learner).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from metalearner.evaluation.choice import (
    AdaptationChoice,
    choose_adaptation,
    store_choice,
    stored_choice,
)
from metalearner.evaluation.evaluator import gathered_curves
from metalearner.runs.checkpoint import checkpoint_exists, load_checkpoint
from metalearner.runs.folder import BEST, LATEST, load_state
from metalearner.training.run import Run


def choose_adaptations(run: Run, *, fresh: bool) -> list[str]:
    """Phase 6, when the run ends: the adaptation chosen on the validation tasks for each
    checkpoint (best, then latest; once where they are one step) and stored in it, unless it
    holds a choice for its step already; returns a line for each choice made.

    Args:
        run: the finished run.
        fresh: this session wrote latest (and best, if of this step) at this step. A best of an
            earlier step was written at an earlier validation and is read from the folder.

    Returns:
        One line for each choice made, to print.
    """
    strategy = run.exp.strategy
    lines: list[str] = []
    chosen: dict[int, AdaptationChoice] = {}  # by step: best and latest may be one state
    if strategy.adaptation_grid() is None:
        return lines
    if run.cfg.data.train_on_val:
        return ["No adaptation was chosen: the validation classes were trained on "
                "(data.train_on_val); the configured adaptation stays."]  # fmt: skip
    best = None if run.best is None else int(run.best["step"])
    for name, step in ((BEST, best), (LATEST, run.step)):
        path = run.folder / name
        # Written by this session at this step: it holds no choice, and every rank knows that
        # without reading a folder rank 0 may still be writing (all ranks score, or none).
        written = fresh and step == run.step
        if step is None or not (written or checkpoint_exists(path)):
            continue
        if not written:
            held = stored_choice(load_checkpoint(path).meta, run.cfg.strategy)
            if held is not None and held.step == step:
                continue
        choice = chosen.get(step)
        if choice is None:
            tick = time.perf_counter()
            params = run.params if step == run.step else _params_of(path, run.device)
            curves = gathered_curves(params, run.val_tasks, group=run.group, device=run.device)
            found = choose_adaptation(
                strategy, curves, name=run.cfg.strategy, step=step, metric=run.metric
            )
            if found is None:
                continue
            chosen[step] = choice = found
            where = "" if name == BEST or best is None else f" for {name}"
            lines.append(f"{choice.line(where)}, in {time.perf_counter() - tick:.1f} s")
        if run.group.is_main:
            store_choice(path, choice)
    return lines


def _params_of(path: Path, device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in load_state(path)[0].params.items()}
