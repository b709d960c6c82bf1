"""The no-training floor: what the raw inputs alone score on the same tasks, beside every score.

A meta-learned model is worth its training only where it beats what needs none. The floor of a
classification task is a nearest class mean on the inputs exactly as the model receives them:
each class's support inputs are averaged, and a query goes to the class whose mean is nearest in
Euclidean distance. Its inputs are

- images: the model's tensors (pixels scaled to ``[0, 1]``, as :func:`metalearner.tasks.to_float`
  makes them), flattened;
- tables: the feature columns as the model receives them;
- sentences (``int64`` ids ``[3, L]``, :mod:`metalearner.data.text`): a bag of words, the count
  of each token id in the sentence (row 0), padding left out; the position rows are not words.

A regression task has no classes to average. Its floor is the mean of the task's support targets
predicted for every query point: what a model that learns nothing of the function's shape, only
its level, scores (for sinusoids, whose mean over a period is 0, about what predicting 0 scores: a
model must learn the wave to beat it).

The floor is scored task by task, on the very tasks of the model's score, so that the two are
compared pairwise: a model **beats the floor** when the 95% confidence interval of its mean
per-task improvement over the floor (accuracy: model − floor; MSE: floor − model) lies wholly
above 0 (the paired t interval of :func:`metalearner.evaluation.paired.paired`). Pairing removes
the variation between tasks, which both sides share, so a real gain shows even where the two
unpaired intervals overlap.

On Omniglot's test characters (Vinyals split, 600 tasks, 15 queries per class) the floor scores
44.6% 5-way 1-shot, 71.6% 5-way 5-shot and 25.0% 20-way 1-shot, near the raw-pixel nearest
neighbour of Vinyals et al. (41.7%, 63.2%, 26.7%); on FewRel's held-out wiki relations, 33.9%
5-way 1-shot and 51.8% 5-shot.

References:
    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017 (the
    nearest class mean, here on the raw inputs instead of a learned embedding). Mensink et al.,
    "Distance-Based Image Classification: Generalizing to New Classes at Near-Zero Cost", TPAMI
    2013 (the nearest class mean classifier). Vinyals et al., "Matching Networks for One Shot
    Learning", NeurIPS 2016, table 1 (a nearest neighbour on raw pixels beside every model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearner.data.text import PAD
from metalearner.evaluation.paired import paired
from metalearner.evaluation.scores import Score, format_score, query_scores, summarize
from metalearner.tasks import TaskBatch, TaskSet, iter_batches

FLOOR = {
    "accuracy": "nearest class mean on the inputs, no training",
    "mse": "the mean of the support targets, no training",
}
"""What the floor is, in words, by metric."""


def floor_predict(support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int) -> Tensor:
    """The floor's answer for tasks: ``[T, Q, N]`` scores or ``[T, Q]`` regression predictions.

    Args:
        support_x: ``[T, S, ...]`` support inputs as the model receives them.
        support_y: ``[T, S]`` labels ``0..N-1`` (int64), or regression targets.
        query_x: ``[T, Q, ...]`` query inputs.
        ways: ``N``, classes per task (ignored for regression).

    Returns:
        For labels, minus each query's Euclidean distance to each class's mean (the highest is
        the nearest; a class without support examples is never chosen); for targets, the mean
        of the task's support targets at every query.

    Example:
        >>> x = torch.tensor([[[0.0], [10.0]]])  # one task: class 0 at 0, class 1 at 10
        >>> floor_predict(x, torch.tensor([[0, 1]]), torch.tensor([[[9.0]]]), 2).argmax(-1)
        tensor([[1]])
    """
    if support_y.dtype.is_floating_point:
        mean = support_y.float().mean(1, keepdim=True)
        return mean.expand(-1, query_x.shape[1])
    if support_x.dtype == torch.int64:  # sentences: one task at a time (its own word list)
        tasks = [_bags(s, q) for s, q in zip(support_x, query_x, strict=True)]
        return torch.cat([
            _nearest_mean(s[None], y[None], q[None], ways)
            for (s, q), y in zip(tasks, support_y, strict=True)
        ])  # fmt: skip
    flat = support_x.flatten(2).float(), query_x.flatten(2).float()
    return _nearest_mean(flat[0], support_y, flat[1], ways)


def floor_task_scores(tasks: TaskSet, *, batch_size: int = 50) -> Tensor:
    """``[n]`` the floor's score of each task (accuracy or MSE), as :func:`task_scores` scores
    a model's: the same tasks, the same order, the same :func:`query_scores`."""
    out = []
    for batch in iter_batches(tasks, batch_size):
        predictions = floor_predict(batch.support_x, batch.support_y, batch.query_x, _ways(batch))
        out.append(query_scores(predictions[None], batch.query_y)[0])
    if not out:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(out).double()


@dataclass(frozen=True)
class FloorComparison:
    """A model's score set beside the floor's, on the same tasks.

    Attributes:
        mean, ci95: the floor's score over the tasks and its 95% half-width (as every score).
        difference: the model's mean improvement over the floor per task: accuracy points
            (fractions) above it, or MSE below it; negative where the model is worse.
        difference_ci95: the paired 95% half-width of ``difference``; ``None`` for a single
            task, where there is no interval.
        beats: whether ``difference − difference_ci95 > 0``: the model beats the floor by more
            than the interval.
    """

    mean: float
    ci95: float
    difference: float
    difference_ci95: float | None
    beats: bool

    @property
    def score(self) -> Score:
        """The floor's score (no adaptation steps)."""
        return Score(steps=None, mean=self.mean, ci95=self.ci95)

    def lines(self, metric: str, num_tasks: int, *, who: str = "the model") -> list[str]:
        """The floor's score and the verdict, for people: ``floor accuracy 61.20% ± 1.40 (600
        tasks): nearest class mean on the inputs, no training``, then :meth:`verdict`'s."""
        floor = f"floor {format_score(metric, self.score, num_tasks)}: {FLOOR[metric]}"
        return [floor, self.verdict(metric, who=who)]

    def gain(self, metric: str) -> str:
        """The model's gain over the floor: ``+37.10 ± 1.20 pts`` (accuracy) or ``0.42 ± 0.05
        lower mse`` (``higher`` where the model is worse)."""
        half = self.difference_ci95 or 0.0
        if metric == "accuracy":
            return f"{100 * self.difference:+.2f} ± {100 * half:.2f} pts"
        side = "lower" if self.difference >= 0 else "higher"
        return f"{abs(self.difference):.4g} ± {half:.2g} {side} mse"

    def verdict(self, metric: str, *, who: str = "the model", over: str = "tasks") -> str:
        """``the model beats the floor by …`` or ``the model does not beat the floor …``, the
        pairs being ``over`` (``tasks``, or a single task's ``query items``)."""
        gain = self.gain(metric)
        if self.difference_ci95 is None:
            return f"{who} does not beat the floor: {gain} on a single one of the {over}, too few"
        if self.beats:
            return f"{who} beats the floor by {gain} (paired 95% CI, same {over})"
        not_by = "does not beat the floor by more than the 95% CI"
        return f"{who} {not_by}: {gain} (paired, same {over})"


def compare_to_floor(
    scores: Sequence[float] | Tensor, floor: Sequence[float] | Tensor, *, metric: str
) -> FloorComparison:
    """Whether per-task ``scores`` beat the ``floor``'s on the same tasks (see the module doc).

    Args:
        scores: the model's score of each task.
        floor: the floor's score of the same tasks, in the same order.
        metric: ``accuracy`` (higher is better) or ``mse`` (lower is better).

    Raises:
        ValueError: the two lists differ in length, or are empty.

    Example:
        >>> c = compare_to_floor([0.9, 0.8, 1.0], [0.5, 0.4, 0.6], metric="accuracy")
        >>> round(c.difference, 2), c.beats
        (0.4, True)
    """
    model, base = _floats(scores), _floats(floor)
    if len(model) != len(base) or not model:
        raise ValueError("compare_to_floor() needs scores of the same tasks, at least one.")
    own = summarize(torch.tensor(base, dtype=torch.float64))
    # Oriented so that a positive difference is always the model's gain.
    gain, loss = (model, base) if metric == "accuracy" else (base, model)
    if len(model) < 2:
        return FloorComparison(own.mean, own.ci95, gain[0] - loss[0], None, False)
    p = paired("model", "floor", gain, loss)
    return FloorComparison(own.mean, own.ci95, p.mean, p.ci95, p.mean - p.ci95 > 0)


def _nearest_mean(support: Tensor, labels: Tensor, query: Tensor, ways: int) -> Tensor:
    """``[T, Q, N]`` minus the distance of each ``[T, Q, D]`` query to each class's mean of the
    ``[T, S, D]`` support (``labels`` ``[T, S]``)."""
    onehot = torch.nn.functional.one_hot(labels, ways).to(support.dtype)  # [T, S, N]
    counts = onehot.sum(1)  # [T, N]
    means = onehot.transpose(1, 2) @ support / counts.clamp(min=1)[..., None]
    # Not the ‖q‖² + ‖m‖² − 2q·m shortcut: it rounds near-equal distances into false ties.
    dist = torch.cdist(query, means, compute_mode="donot_use_mm_for_euclid_dist")
    return (-dist).masked_fill(counts[:, None, :] == 0, -math.inf)


def _bags(support: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """The bags of words of one task's ``[S, 3, L]`` and ``[Q, 3, L]`` sentences: ``[S, V]`` and
    ``[Q, V]`` counts over the ``V`` token ids the task's sentences hold, padding left out."""
    tokens = torch.cat([support, query])[:, 0, :]  # row 0: token ids
    words, index = torch.unique(tokens, return_inverse=True)
    bags = torch.zeros(len(tokens), len(words)).scatter_add_(1, index, torch.ones(index.shape))
    bags = bags[:, words != PAD]
    return bags[: len(support)], bags[len(support) :]


def _ways(batch: TaskBatch) -> int:
    """``N``: the batch's classes, or (tasks without class ids) its largest label + 1."""
    if batch.ways is not None:
        return batch.ways
    if batch.support_y.dtype.is_floating_point:
        return 0
    return int(torch.cat([batch.support_y.flatten(), batch.query_y.flatten()]).max()) + 1


def _floats(values: Sequence[float] | Tensor) -> list[float]:
    return values.tolist() if isinstance(values, Tensor) else [float(v) for v in values]
