"""Class splits: meta-train, validation and meta-test tasks never share a class."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
from torch import Tensor

from metalearner.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint global class ids for each split.

    A class seen in meta-training must never appear in a test task, or the test measures memory
    rather than adaptation; the constructor refuses overlapping splits.
    """

    train: Tensor
    val: Tensor
    test: Tensor

    def __post_init__(self) -> None:
        parts = [self.train, self.val, self.test]
        joined = torch.cat(parts)
        if joined.unique().numel() != joined.numel():
            raise ConfigError("The class split puts a class in two splits; make them disjoint.")

    def __getitem__(self, name: str) -> Tensor:
        if name not in SPLITS:
            raise ConfigError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        value: Tensor = getattr(self, name)
        return value

    def sizes(self) -> dict[str, int]:
        """Number of classes per split."""
        return {name: int(self[name].numel()) for name in SPLITS}


def random_split(num_classes: int, *, train: int, val: int, seed: int) -> ClassSplit:
    """Shuffles class ids with ``seed``: ``train`` for meta-training, ``val``, the rest for test.

    Args:
        num_classes: total number of classes.
        train: number of meta-training classes.
        val: number of validation classes.
        seed: fixes the shuffle, so the split is the same on every machine.
    """
    if train + val > num_classes or min(train, val) < 0:
        raise ConfigError(
            f"A split of {train} train + {val} val classes does not fit in {num_classes} classes; "
            "lower the split sizes."
        )
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_classes, generator=g)
    return ClassSplit(
        train=order[:train].sort().values,
        val=order[train : train + val].sort().values,
        test=order[train + val :].sort().values,
    )


def split_list(name: str) -> list[str]:
    """A published class split shipped with the package (``split_lists/<name>.txt``, each
    file's header naming its source): one class name a line, ``#`` lines are comments.

    Example:
        >>> len(split_list("mini_imagenet_test"))
        20
    """
    text = (resources.files("metalearner.data") / "split_lists" / f"{name}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
