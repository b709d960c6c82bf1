"""The unit every strategy consumes: a meta-batch of tasks as stacked tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import torch
from torch import Tensor

ORDER = "order"
"""``TaskBatch.info[ORDER]``: a random order of each task's support + query examples (see
:meth:`TaskBatch.with_order`)."""


@dataclass(frozen=True)
class TaskBatch:
    """``T`` tasks, each a support set to adapt on and a query set to score the adaptation.

    Stacking tasks along a leading dimension lets a strategy ``vmap`` over them, and keeps a
    whole meta-batch one object that moves between devices in one call.

    Attributes:
        support_x: ``[T, S, ...]`` support inputs (images ``[C, H, W]``, feature vectors, or
            ``int64`` sentences ``[3, L]`` of token and position ids).
        support_y: ``[T, S]`` support targets: labels ``0..N-1`` (int64) for classification,
            real values for regression.
        query_x: ``[T, Q, ...]`` query inputs.
        query_y: ``[T, Q]`` query targets.
        classes: ``[T, N]`` global class ids behind the per-task labels (``classes[t, j]`` is the
            dataset class that label ``j`` stands for in task ``t``); ``None`` for regression,
            and optional for classification, which integer labels already say (only the transfer
            baselines' pretraining over every class needs it).
        info: per-task tensors of shape ``[T, ...]`` that describe how a task was generated
            (e.g. a sinusoid's ``amplitude`` and ``phase``), for plots and tests, or the random
            order in which a strategy takes its examples (``with_order``).

    Example:
        >>> b = SinusoidTasks(shots=5, queries=10).sample(4, generator=torch.Generator())
        >>> b.support_x.shape, b.num_tasks
        (torch.Size([4, 5, 1]), 4)
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    classes: Tensor | None = None
    info: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.support_x.shape[0]
        sizes = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "info"}
        for name, value in {**sizes, **self.info}.items():
            if value is not None and value.shape[0] != t:
                raise ValueError(f"TaskBatch.{name} has {value.shape[0]} tasks, expected {t}")
        if self.support_y.shape[:2] != self.support_x.shape[:2]:
            raise ValueError("TaskBatch support_x and support_y disagree on the support size")
        if self.query_y.shape[:2] != self.query_x.shape[:2]:
            raise ValueError("TaskBatch query_x and query_y disagree on the query size")

    @property
    def num_tasks(self) -> int:
        """``T``, the number of tasks in the batch."""
        return int(self.support_x.shape[0])

    @property
    def ways(self) -> int | None:
        """``N`` for classification batches (``classes``' width, or one more than the largest
        support label), ``None`` for regression."""
        if self.classes is not None:
            return int(self.classes.shape[1])
        return int(self.support_y.max()) + 1 if self.is_classification else None

    @property
    def is_classification(self) -> bool:
        """Whether targets are class labels: ``classes`` is set, or the labels are integers."""
        return self.classes is not None or not self.support_y.dtype.is_floating_point

    def with_order(self, generator: torch.Generator) -> TaskBatch:
        """The batch with ``info["order"]``: ``[T, S + Q]``, a random permutation of each task's
        support examples followed by its query examples.

        Episodes come class by class; a strategy that trains on minibatches of a task's
        examples (Reptile) takes them in this order, so that every minibatch is a uniform draw
        and no label is left out, without randomness of its own.
        """
        n = self.support_x.shape[1] + self.query_x.shape[1]
        order = torch.rand(self.num_tasks, n, generator=generator).argsort(1)
        return replace(self, info={**self.info, ORDER: order.to(self.support_x.device)})

    def to(self, device: torch.device | str) -> TaskBatch:
        """Returns the batch on ``device`` (one call per tensor, nothing else copied)."""
        return self._map(lambda x: x.to(device, non_blocking=True))

    def __getitem__(self, index: slice | int | Tensor) -> TaskBatch:
        """Selects tasks; an integer keeps the leading dimension (a batch of one task)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda x: x[index])

    def _map(self, f: Callable[[Tensor], Tensor]) -> TaskBatch:
        return replace(
            self,
            support_x=f(self.support_x),
            support_y=f(self.support_y),
            query_x=f(self.query_x),
            query_y=f(self.query_y),
            classes=None if self.classes is None else f(self.classes),
            info={k: f(v) for k, v in self.info.items()},
        )


def concat(batches: list[TaskBatch]) -> TaskBatch:
    """Joins batches of the same task shape along the task dimension."""
    first = batches[0]
    cat = torch.cat
    return TaskBatch(
        support_x=cat([b.support_x for b in batches]),
        support_y=cat([b.support_y for b in batches]),
        query_x=cat([b.query_x for b in batches]),
        query_y=cat([b.query_y for b in batches]),
        classes=None
        if first.classes is None
        else cat([b.classes for b in batches if b.classes is not None]),
        info={k: cat([b.info[k] for b in batches]) for k in first.info},
    )


class TaskSource(Protocol):
    """Anything that generates tasks: episodes over a labeled set, a regression family, ..."""

    def sample(self, num_tasks: int, *, generator: torch.Generator) -> TaskBatch:
        """Draws ``num_tasks`` fresh tasks using only ``generator`` for randomness."""
        ...

    def fixed(self, num_tasks: int, *, seed: int) -> TaskSet:
        """A fixed, seeded task set: the same tasks for every strategy that evaluates on it."""
        ...


class TaskSet(Protocol):
    """A fixed, ordered collection of tasks (validation and test sets)."""

    def __len__(self) -> int: ...

    def batch(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1`` as one batch."""
        ...


def iter_batches(tasks: TaskSet, batch_size: int) -> Iterator[TaskBatch]:
    """Yields a task set in order, ``batch_size`` tasks at a time (the last batch may be short)."""
    for start in range(0, len(tasks), batch_size):
        yield tasks.batch(start, min(start + batch_size, len(tasks)))


def fingerprint(tasks: TaskSet, batch_size: int = 100) -> str:
    """A digest of a task set's tensors (SHA-256, 16 hex digits): equal digests, the same tasks.

    Paired comparisons of strategies are only valid on identical tasks; a result that carries
    the digest of the tasks it was scored on shows that it was.
    """
    digest = hashlib.sha256()
    for batch in iter_batches(tasks, batch_size):
        for x in (batch.support_x, batch.support_y, batch.query_x, batch.query_y):
            digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
