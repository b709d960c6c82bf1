"""Noisy support labels: fixed tasks in which a fraction of the support examples are mislabeled.

Few-shot data is often labelled in a hurry; a learner that collapses when one of five labels is
wrong is of little use. Exactly ``round(p · S)`` of a task's ``S`` support slots are corrupted:
the slot labelled ``j`` holds an image of another class ``c`` of the task (uniform over the other
classes) instead of one of ``j``, which is how a mislabeled example looks to the learner. Every
label keeps its K examples, so an N-way K-shot task stays one (flipping a label outright would
leave a 1-shot class with no example at all). The wrong images are fresh and distinct: the
last ``spares`` queries of each class are held out for them (as many as the most corrupted slots
that name one class, :meth:`NoisyLabels.spares_needed`), so no support image is also a query
and no image fills two slots. Query labels stay clean; which slots are corrupted is drawn once
from ``seed``, the same for every strategy.

References:
    Song et al., "Learning from Noisy Labels with Deep Neural Networks: A Survey", IEEE TNNLS
    2022 (symmetric label noise). Liang et al., "Few-shot Learning with Noisy Labels", CVPR 2022.
"""

from __future__ import annotations

import dataclasses

import torch

from metalearner.errors import ConfigError
from metalearner.tasks.batch import TaskBatch, TaskSet


class NoisyLabels:
    """``tasks`` with a fraction ``p`` of each task's support slots mislabeled (see module doc).

    ``tasks`` must be N-way episodes laid out as :class:`~metalearner.tasks.EpisodeSampler`
    makes them (queries grouped by class) with more than ``spares`` queries per class: the last
    ``spares`` of each class are the images corrupted slots take, each a different one, and are
    removed from the query set, so the tasks seen at every ``p`` (0 included) have the same
    queries when built with the same ``spares``.

    Example:
        >>> spares = NoisyLabels.spares_needed(200, ways=5, shots=1, p=0.2, seed=7)
        >>> tasks = EpisodeSampler(data, split.test, ways=5, shots=1, queries=15 + spares)
        >>> noisy = NoisyLabels(tasks.fixed(200, seed=1), p=0.2, seed=7, spares=spares)
    """

    def __init__(self, tasks: TaskSet, p: float, *, seed: int, spares: int | None = None) -> None:
        probe = tasks.batch(0, 1)
        if not probe.is_classification or probe.ways is None:
            raise ConfigError("Label noise needs classification tasks, not regression.")
        ways, size = probe.ways, probe.support_y.shape[1]
        self.tasks, self.p, self.ways = tasks, p, ways
        self.queries = probe.query_y.shape[1] // ways  # per class, before the spares go
        self._flip, self._offset = _draw(len(tasks), size, ways, p, seed)
        wrong = (probe.support_y[0] + self._offset) % ways  # the layout is every task's
        needed = _most_per_class(self._flip, wrong, ways)
        self.spares = needed if spares is None else spares
        if ways < 2 or self.spares < needed or self.queries <= self.spares:
            held = max(needed, self.spares)
            raise ConfigError(
                f"Label noise {p} needs at least 2 classes and {held + 1} queries per class: "
                f"{held} held out as the mislabeled images (one per corrupted slot that names "
                f"the class; {self.spares} asked for) and one to score."
            )

    @staticmethod
    def spares_needed(num_tasks: int, *, ways: int, shots: int, p: float, seed: int) -> int:
        """The held-out images per class that ``NoisyLabels(tasks, p, seed=seed)`` takes from
        ``num_tasks`` N-way K-shot episodes: the most corrupted slots that name one class."""
        flip, offset = _draw(num_tasks, ways * shots, ways, p, seed)
        labels = torch.arange(ways).repeat_interleave(shots)
        return _most_per_class(flip, (labels + offset) % ways, ways)

    def __len__(self) -> int:
        return len(self.tasks)

    def batch(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1``: corrupted support slots, queries without the spares."""
        full = self.tasks.batch(start, stop)
        t, n, q, h = full.num_tasks, self.ways, self.queries, self.spares
        qx = full.query_x.reshape(t, n, q, *full.query_x.shape[2:])
        pool = qx[:, :, q - h :].reshape(t, n * h, *qx.shape[3:])  # [T, N·h, ...] unseen images
        flip = self._flip[start:stop]
        wrong = (full.support_y + self._offset[start:stop]) % n  # [T, S] the image's true class
        # The i-th corrupted slot that names class c takes c's i-th spare: no image twice.
        named = torch.nn.functional.one_hot(wrong, n) * flip[..., None]
        rank = (named.cumsum(1) - 1).gather(2, wrong[..., None]).squeeze(2).clamp(min=0)
        index = wrong * h + rank
        swapped = pool.gather(
            1, index.view(t, -1, *([1] * (pool.dim() - 2))).expand(-1, -1, *pool.shape[2:])
        )
        mask = flip.view(t, -1, *([1] * (pool.dim() - 2)))
        return dataclasses.replace(
            full,
            support_x=torch.where(mask, swapped, full.support_x),
            query_x=qx[:, :, : q - h].reshape(t, n * (q - h), *qx.shape[3:]),
            query_y=full.query_y.reshape(t, n, q)[:, :, : q - h].reshape(t, n * (q - h)),
        )


def _draw(n: int, size: int, ways: int, p: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of ``size`` slots of each of ``n`` tasks are corrupted, and each slot's class
    offset (1..N−1, each equally likely), all from ``seed``."""
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"Label noise {p} is not a fraction; use 0 <= p <= 1.")
    g = torch.Generator().manual_seed(seed)
    # The `flips` smallest of i.i.d. uniforms pick a uniformly random subset of slots.
    order = torch.rand(n, size, generator=g).argsort(dim=1)
    flip = torch.zeros(n, size, dtype=torch.bool)
    flip.scatter_(1, order[:, : round(p * size)], True)
    return flip, torch.randint(1, max(ways, 2), (n, size), generator=g)


def _most_per_class(flip: torch.Tensor, wrong: torch.Tensor, ways: int) -> int:
    """The largest number of corrupted slots of one task that name the same class (at least 1,
    so that every p of a sweep holds out the same queries)."""
    named = torch.nn.functional.one_hot(wrong, ways) * flip[..., None]
    return max(int(named.sum(1).max()), 1) if flip.numel() else 1
