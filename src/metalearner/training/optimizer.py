"""The outer optimiser and its step-size schedule: pure functions of the config and the step.

A schedule that depends only on the step number lets a resumed run follow it exactly.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (constant Adam). Nichol et al., "On First-Order Meta-Learning Algorithms", 2018 (Reptile's
    outer SGD step, annealed linearly). Snell et al., "Prototypical Networks for Few-shot
    Learning", NeurIPS 2017 (Adam, halved every 2000 episodes). Loshchilov & Hutter, "SGDR:
    Stochastic Gradient Descent with Warm Restarts", ICLR 2017 (cosine schedule). Lee et al.,
    "Meta-Learning with Differentiable Convex Optimization", CVPR 2019, and Tian et al.,
    "Rethinking Few-Shot Image Classification", ECCV 2020 (SGD with momentum and weight decay,
    its step size cut at fixed epochs: ``milestones``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metalearner.runs.config import OptimizerConfig


def lr_factor(
    opt: OptimizerConfig,
    step: int,
    steps: int,
    *,
    spent: float = 0.0,
    budget: float | None = None,
) -> float:
    """Multiplier of the base step size before outer step ``step`` (0-based) of ``steps``.

    A schedule that spans the run (cosine, linear) spans whichever of ``steps`` and the time
    ``budget`` (seconds, of which ``spent`` are used) ends it first: under a benchmark's time
    budget the steps are set beyond reach, and a schedule over them would barely move. Such a
    run's step sizes then depend on the clock, as its last step already did.
    """
    frac = step / max(steps, 1)
    if budget:
        frac = min(max(frac, spent / budget), 1.0)
    if opt.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if opt.schedule == "linear":
        return 1.0 - frac
    if opt.schedule == "step" and opt.milestones:  # the last milestone reached
        return next((f for at, f in reversed(opt.milestones) if step >= at), 1.0)
    if opt.schedule == "step":
        return float(opt.decay_rate ** (step // (opt.decay_every or 1)))
    return 1.0


def make_optimizer(opt: OptimizerConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    """SGD (plain: Reptile's outer step; with momentum, Nesterov's or not, and weight decay:
    the ResNet-12 papers') or Adam over ``params``."""
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr or 0.0, momentum=opt.momentum, nesterov=opt.nesterov,
            weight_decay=opt.weight_decay,
        )  # fmt: skip
    return torch.optim.Adam(
        params, lr=opt.lr or 0.0, betas=opt.betas, weight_decay=opt.weight_decay
    )
