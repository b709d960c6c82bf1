"""Shuffled mini-batches of labelled examples over the meta-training classes, epoch by epoch.

The transfer baselines pretrain their backbone as an ordinary classifier, as their papers do:
every training example once per epoch, in a fresh random order each epoch, with the standard
augmentation, not episodes. A mini-batch travels as a :class:`TaskBatch` of one-example tasks
(each example the support set of a task of its own class, ``classes`` its global class id, no
query set), so the training loop, the distributed share of a meta-batch and a strategy's
``meta_grads`` take it as any meta-batch.

Batch ``k`` of a run is a function of the run's seed and ``k`` alone: epoch ``e``'s order and
batch ``k``'s augmentation each come from a generator seeded with (seed, e) or (seed, k). A
resumed run draws the batches an uninterrupted one would, with no generator state to keep.

References:
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019. Tian et al.,
    "Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?", ECCV 2020.
    Wang et al., "SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot
    Learning", 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from metalearner.data.labeled import LabeledSet, model_input
from metalearner.errors import DataError
from metalearner.tasks.augment import augment_images, is_colour
from metalearner.tasks.batch import TaskBatch

# Streams drawn from a run's seed (1 is its task stream's: runs/experiment.py).
_EPOCH, _AUGMENT, _SPREAD, _DROP = 2, 3, 4, 5

DROP_SEED = "drop_seed"
"""The ``TaskBatch.info`` key of a mini-batch's seed for the model's random draws (DropBlock)."""

Augment = Callable[[Tensor, torch.Generator], Tensor]
"""Model inputs ``[B, ...]`` and a generator to augmented inputs of the same shape."""


class LabeledBatches:
    """Mini-batches of ``(example, global class)`` over the training classes of a labeled set.

    The examples of an epoch are laid out in a random order, epochs end to end, and batch ``k``
    of size ``B`` is positions ``k·B .. k·B + B - 1`` of that sequence: each epoch holds every
    training example exactly once, and a batch that straddles two epochs takes the end of one
    and the start of the next.

    Args:
        data: the labeled set.
        classes: ``[C']`` global ids of the training classes (with Omniglot's rotation
            classes, its augmentation, already among them).
        seed: the run's seed.
        augment: ``False``: no augmentation, whatever the images (``data.augment``).

    Attributes:
        augment: what each batch goes through: :func:`augment_images` for colour images
            (``uint8 [3, H, W]``), nothing for the others (grey characters, whose augmentation
            is their rotation classes; sentences; feature vectors).

    Raises:
        DataError: no example belongs to ``classes``.

    Example:
        >>> batches = LabeledBatches(data, train_classes, seed=0)
        >>> b = batches.batch(0, 64)   # b.support_x [64, 1, C, H, W], b.classes [64, 1]
    """

    def __init__(
        self, data: LabeledSet, classes: Tensor, *, seed: int, augment: bool = True
    ) -> None:
        member = torch.zeros(data.num_classes, dtype=torch.bool)
        member[classes.to(torch.int64)] = True
        self.data, self.seed = data, seed
        self.rows = member[data.y].nonzero().flatten()  # the training examples, in data order
        if not len(self.rows):
            raise DataError(f"{data.name} has no example of a training class; add examples.")
        self.augment: Augment | None = augment_images if augment and is_colour(data.x) else None
        self._orders: dict[int, Tensor] = {}  # the last two epochs' orders

    def __len__(self) -> int:
        """The examples of an epoch."""
        return len(self.rows)

    def rows_of(self, index: int, size: int) -> Tensor:
        """``[size]`` rows of the labeled set in batch ``index`` (0-based) of ``size``."""
        positions = index * size + torch.arange(size)
        epochs, within = positions // len(self.rows), positions % len(self.rows)
        rows = torch.empty(size, dtype=torch.int64)
        for epoch in epochs.unique().tolist():
            chosen = epochs == epoch
            rows[chosen] = self._order(epoch)[within[chosen]]
        return rows

    def batch(self, index: int, size: int) -> TaskBatch:
        """Batch ``index`` of ``size`` examples, augmented: ``size`` one-example tasks."""
        rows = self.rows_of(index, size)
        x = model_input(self.data.x.index_select(0, rows))
        if self.augment is not None:
            x = self.augment(x, _generator(self.seed, _AUGMENT, index))
        batch = one_example_tasks(x, self.data.y[rows])
        # The seed of the batch's own random draws in the model (ResNet-12's DropBlock), a
        # function of the run's seed and the batch number, so a resumed run draws the same.
        seed = int(_generator(self.seed, _DROP, index).initial_seed()) % 2**63  # an int64
        return dataclasses.replace(batch, info={DROP_SEED: torch.full((size,), seed)})

    def examples(self, size: int) -> Iterator[Tensor]:
        """Every training example once, as model inputs without augmentation, ``size`` at a
        time, in a fixed random order of the run's seed: any prefix is a uniform sample of the
        training examples (of every class alike), and a chunk mixes classes as a batch does."""
        spread = torch.randperm(len(self.rows), generator=_generator(self.seed, _SPREAD, 0))
        order = self.rows[spread]
        for start in range(0, len(order), size):
            yield model_input(self.data.x.index_select(0, order[start : start + size]))

    def _order(self, epoch: int) -> Tensor:
        if epoch not in self._orders:
            if len(self._orders) >= 2:  # a batch no larger than an epoch spans two at most
                del self._orders[min(self._orders)]
            g = _generator(self.seed, _EPOCH, epoch)
            self._orders[epoch] = self.rows[torch.randperm(len(self.rows), generator=g)]
        return self._orders[epoch]


def one_example_tasks(x: Tensor, classes: Tensor) -> TaskBatch:
    """Examples ``x`` ``[B, ...]`` of global classes ``[B]`` as ``B`` tasks of one class, each
    example the support set of its own task (label 0) and no query set."""
    b = x.shape[0]
    one = x.unsqueeze(1)
    labels = torch.zeros(b, 1, dtype=torch.int64, device=x.device)
    return TaskBatch(
        support_x=one,
        support_y=labels,
        query_x=one[:, :0],
        query_y=labels[:, :0],
        classes=classes.view(b, 1),
    )


def _generator(seed: int, stream: int, n: int) -> torch.Generator:
    """A generator of its own for draw ``n`` of ``stream`` of a run's ``seed`` (``SeedSequence``
    mixes the three, so nearby numbers give unrelated generators)."""
    mixed = np.random.SeedSequence([seed, stream, n]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))
