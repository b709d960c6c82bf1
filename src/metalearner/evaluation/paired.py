"""Paired comparison of two score lists on the same tasks: the mean difference, its 95% CI.

Because every strategy (and the no-training floor) meets the identical test tasks, the right
test is paired: the per-task differences ``d_i = a_i − b_i`` remove the variation between tasks
(an easy task is easy for both), which is far larger than the variation between strategies.
Reported: the mean difference with its 95% confidence interval (Student's t, n − 1 degrees of
freedom), the two-sided p-value of the paired t-test, and how many tasks each side won.

References:
    Student, "The probable error of a mean", Biometrika 1908 (the t distribution).
    Dietterich, "Approximate Statistical Tests for Comparing Supervised Classification Learning
    Algorithms", Neural Computation 1998 (paired tests on the same test items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Paired:
    """``a`` against ``b`` on the same ``n`` tasks.

    Attributes:
        a, b: strategy names.
        n: tasks compared.
        mean: mean of ``a − b`` per task.
        ci95: half-width of its 95% confidence interval.
        p: two-sided p-value of the paired t-test (``p_holm`` after Holm's adjustment).
        wins, ties, losses: tasks where ``a`` scored higher, the same, lower.
    """

    a: str
    b: str
    n: int
    mean: float
    ci95: float
    p: float
    wins: int
    ties: int
    losses: int
    p_holm: float = math.nan

    def verdict(self, *, higher_is_better: bool = True, alpha: float = 0.05) -> str:
        """``"a better"``, ``"b better"`` or ``"no difference shown"`` at level ``alpha``."""
        p = self.p_holm if not math.isnan(self.p_holm) else self.p
        if p >= alpha or self.mean == 0:
            return "no difference shown"
        a_ahead = (self.mean > 0) == higher_is_better
        return f"{self.a if a_ahead else self.b} better"


def paired(a: str, b: str, scores_a: Sequence[float], scores_b: Sequence[float]) -> Paired:
    """The paired comparison of two per-task score lists (same tasks, same order).

    Raises:
        ValueError: the lists differ in length or hold fewer than two tasks.
    """
    if len(scores_a) != len(scores_b) or len(scores_a) < 2:
        raise ValueError("paired() needs two score lists of the same length, at least 2.")
    d = [x - y for x, y in zip(scores_a, scores_b, strict=True)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    if se == 0:  # every task differs by the same amount (often: by nothing)
        p, half = (1.0 if mean == 0 else 0.0), 0.0
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
        half = float(stats.t.ppf(0.975, n - 1)) * se
    wins = sum(x > 0 for x in d)
    losses = sum(x < 0 for x in d)
    return Paired(a, b, n, mean, half, p, wins, n - wins - losses, losses)
