"""A score over tasks: each task's score, then their mean with its 95% confidence interval.

Every number the package reports over tasks (a strategy's, and the no-training floor's) is made
here, so that they are comparable: accuracy for labels, mean squared error for regression, and
the papers' ``1.96 · sd / √n`` interval over tasks.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (600 test tasks). Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017
    (95% confidence intervals over test episodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Score:
    """A mean over tasks with its 95% confidence half-width, after ``steps`` adaptation steps."""

    steps: int | None
    mean: float
    ci95: float


def format_score(metric: str, score: Score, num_tasks: int) -> str:
    """``accuracy 98.12% ± 0.31 (600 tasks)`` or ``mse 0.512 ± 0.031 (600 tasks)``."""
    if metric == "accuracy":
        return f"accuracy {100 * score.mean:.2f}% ± {100 * score.ci95:.2f} ({num_tasks} tasks)"
    return f"mse {score.mean:.4g} ± {score.ci95:.2g} ({num_tasks} tasks)"


def query_scores(predictions: Tensor, targets: Tensor) -> Tensor:
    """``[P, T]`` score of each task: accuracy for labels, mean squared error for regression.

    Args:
        predictions: ``[P, T, Q, N]`` logits, or ``[P, T, Q]`` (or ``[P, T, Q, 1]``) outputs.
        targets: ``[T, Q]`` labels or regression targets.
    """
    pred = predictions.detach().float()
    if targets.dtype.is_floating_point:
        pred = pred.reshape(pred.shape[0], *targets.shape)
        return (pred - targets).square().mean(-1)
    return (pred.argmax(-1) == targets).float().mean(-1)


def summarize(scores: Tensor, steps: int | None = None) -> Score:
    """Mean and ``1.96 · sd / √n`` (sample standard deviation; 0 for a single task)."""
    n = scores.numel()
    sd = float(scores.std(unbiased=True)) if n > 1 else 0.0
    return Score(steps=steps, mean=float(scores.mean()), ci95=1.96 * sd / math.sqrt(n))
