"""Paired comparison of two strategies scored on the same tasks.

Because every strategy meets the identical test tasks, the right test is paired: the per-task
differences ``d_i = a_i − b_i`` remove the variation between tasks (an easy task is easy for
both), which is far larger than the variation between strategies. Reported: the mean difference
with its 95% confidence interval (Student's t, n − 1 degrees of freedom), the two-sided p-value of
the paired t-test, and how many tasks each side won. With many pairs, p-values are adjusted by
Holm's step-down method, so "A beats B" keeps its 5% error rate across the whole table.

References:
    Student, "The probable error of a mean", Biometrika 1908 (the t distribution).
    Holm, "A simple sequentially rejective multiple test procedure", Scandinavian Journal of
    Statistics 1979.
    Dietterich, "Approximate Statistical Tests for Comparing Supervised Classification Learning
    Algorithms", Neural Computation 1998 (paired tests on the same test items).
"""

from __future__ import annotations

from collections.abc import Sequence

# The paired test itself is evaluation's: ``metalearner evaluate`` compares a run with its
# no-training floor the same way (:mod:`metalearner.evaluation.floor`).
from metalearner.evaluation.paired import Paired, paired

__all__ = ["Paired", "all_pairs", "holm", "paired"]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (each capped at 1, never below an earlier one).

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    m, running = len(pvalues), 0.0
    out = [0.0] * m
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def all_pairs(scores: dict[str, Sequence[float]]) -> list[Paired]:
    """Every pair (in the given order) compared, with Holm-adjusted p-values over all pairs."""
    names = list(scores)
    pairs = [
        paired(a, b, scores[a], scores[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    ]
    adjusted = holm([p.p for p in pairs])
    return [Paired(**{**p.__dict__, "p_holm": q}) for p, q in zip(pairs, adjusted, strict=True)]
