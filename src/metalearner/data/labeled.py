"""An in-memory labeled set: the decoded data every episode is gathered from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from metalearner.errors import DataError


@dataclass(frozen=True)
class LabeledSet:
    """Examples decoded once into one contiguous tensor, with a global class id per example.

    An episode is then an index gather, never file I/O (DESIGN.md rule 4).

    Attributes:
        x: ``[M, ...]`` examples: ``uint8`` images ``[C, H, W]`` (ink high, background 0),
            ``float32`` feature vectors ``[D]``, or ``int64`` sentences ``[3, L]`` (token and
            position ids, :mod:`metalearner.data.text`).
        y: ``[M]`` int64 class ids in ``0..len(class_names)-1``.
        class_names: one readable name per class (e.g. ``"Greek/character03"``).
        groups: one group name per class (Omniglot's alphabet), or empty when there are none.
        name: where the data came from, for messages and reports.
        preprocessing: how raw inputs were turned into ``x`` (size, channels, inversion), stored
            with checkpoints so a new task's inputs are converted the same way.
    """

    x: Tensor
    y: Tensor
    class_names: tuple[str, ...]
    groups: tuple[str, ...] = ()
    name: str = "data"
    preprocessing: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"{self.name} has {self.x.shape[0]} examples but {self.y.shape[0]} labels; "
                "rebuild it so every example has one label."
            )
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise DataError(f"{self.name} has labels outside 0..{self.num_classes - 1}.")
        if self.groups and len(self.groups) != self.num_classes:
            raise DataError(
                f"{self.name} has {len(self.groups)} group names for {self.num_classes} classes."
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (including ones with no examples)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def counts(self) -> Tensor:
        """``[C]`` number of examples of each class."""
        return torch.bincount(self.y, minlength=self.num_classes)

    def index_table(self, classes: Tensor) -> tuple[Tensor, Tensor]:
        """Row indices of each class's examples, padded, for fast vectorised sampling.

        Args:
            classes: ``[C']`` global class ids.

        Returns:
            ``(table, counts)``: ``table[i, :counts[i]]`` are the rows of class ``classes[i]``
            (in dataset order); the rest is ``-1``.
        """
        order = torch.argsort(self.y, stable=True)
        all_counts = self.counts()
        starts = torch.cumsum(all_counts, 0) - all_counts
        counts = all_counts[classes]
        width = int(counts.max()) if len(classes) else 0
        offsets = torch.arange(width)
        valid = offsets[None, :] < counts[:, None]
        pos = (starts[classes][:, None] + offsets[None, :]).clamp(max=max(len(order) - 1, 0))
        table = torch.where(valid, order[pos], torch.full_like(pos, -1))
        return table, counts

    def with_classes(
        self, x: Tensor, y: Tensor, class_names: tuple[str, ...], groups: tuple[str, ...] = ()
    ) -> LabeledSet:
        """A set with the same provenance and preprocessing and new contents."""
        return LabeledSet(x, y, class_names, groups, self.name, dict(self.preprocessing))


def to_float(x: Tensor) -> Tensor:
    """Model input from stored examples: ``uint8`` images scaled to ``[0, 1]``, floats unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def model_input(x: Tensor) -> Tensor:
    """Model input from stored examples: as :func:`to_float`, but ``int64`` ids stay ids.

    Token and position ids index embeddings, so sentences reach the model as ``int64``.
    """
    return x if x.dtype == torch.int64 else to_float(x)
