"""Noisy support labels: fixed tasks in which a fraction of the support examples are mislabeled.

Few-shot data is often labelled in a hurry; a learner that collapses when one of five labels is
wrong is of little use. Exactly ``round(p · S)`` of a task's ``S`` support slots are corrupted:
the slot labelled ``j`` holds an image of another class ``c`` of the task (uniform over the other
classes) instead of one of ``j``, which is how a mislabeled example looks to the learner. Every
label keeps its K examples, so an N-way K-shot task stays one (flipping a label outright would
leave a 1-shot class with no example at all). The wrong images are fresh: one extra query per
class is drawn and held out for them, so no support image is also a query. Query labels stay
clean; which slots are corrupted is drawn once from ``seed``, the same for every strategy.

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
    makes them (queries grouped by class) with at least 2 queries per class: the last query of
    each class is the spare image a corrupted slot takes, and is removed from the query set, so
    the tasks seen at every ``p`` (0 included) have the same queries.

    Example:
        >>> tasks = EpisodeSampler(data, split.test, ways=5, shots=1, queries=16).fixed(200, seed=1)
        >>> noisy = NoisyLabels(tasks, p=0.2, seed=7)  # 1 of 5 support images is of another class
    """

    def __init__(self, tasks: TaskSet, p: float, *, seed: int) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"Label noise {p} is not a fraction; use 0 <= p <= 1.")
        probe = tasks.batch(0, 1)
        if not probe.is_classification or probe.ways is None:
            raise ConfigError("Label noise needs classification tasks, not regression.")
        ways, size = probe.ways, probe.support_y.shape[1]
        self.tasks, self.p, self.ways = tasks, p, ways
        self.queries = probe.query_y.shape[1] // ways  # per class, before the spare is removed
        if self.queries < 2 or ways < 2:
            raise ConfigError(
                "Label noise needs at least 2 classes and 2 queries per class (one is held out "
                "as the mislabeled image)."
            )
        n, flips = len(tasks), round(p * size)
        g = torch.Generator().manual_seed(seed)
        # The `flips` smallest of i.i.d. uniforms pick a uniformly random subset of slots.
        order = torch.rand(n, size, generator=g).argsort(dim=1)
        self._flip = torch.zeros(n, size, dtype=torch.bool)
        self._flip.scatter_(1, order[:, :flips], True)
        # An offset in 1..N-1 names a different class, each equally likely.
        self._offset = torch.randint(1, ways, (n, size), generator=g)

    def __len__(self) -> int:
        return len(self.tasks)

    def batch(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1``: corrupted support slots, queries without the spares."""
        full = self.tasks.batch(start, stop)
        t, n, q = full.num_tasks, self.ways, self.queries
        qx = full.query_x.reshape(t, n, q, *full.query_x.shape[2:])
        spare = qx[:, :, -1]  # [T, N, ...] one unseen image per class
        wrong = (full.support_y + self._offset[start:stop]) % n  # [T, S] the image's true class
        swapped = spare.gather(
            1, wrong.view(t, -1, *([1] * (spare.dim() - 2))).expand(-1, -1, *spare.shape[2:])
        )
        mask = self._flip[start:stop].view(t, -1, *([1] * (spare.dim() - 2)))
        return dataclasses.replace(
            full,
            support_x=torch.where(mask, swapped, full.support_x),
            query_x=qx[:, :, :-1].reshape(t, n * (q - 1), *qx.shape[3:]),
            query_y=full.query_y.reshape(t, n, q)[:, :, :-1].reshape(t, n * (q - 1)),
        )
