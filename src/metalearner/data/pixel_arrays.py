"""What the mini- and tiered-ImageNet loaders share: datasets held as arrays of pixels, one file
per split, turned into one stored tensor with its fixed class split.

Both circulate as ``uint8 [N, H, W, 3]`` arrays (84x84 RGB, channels last) with one label per row.
A loader reads each split's labels into a :class:`SplitPart`; :func:`arrange` numbers the classes
split after split and orders the rows by class (keeping the files' order within a class), so that
the same images give the same tensor whatever form they came in; :func:`fill` converts rows into
the stored ``uint8 [M, 3, size, size]`` as they are read, a block at a time, so a 9 GB split never
needs a second copy of itself in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from metalearner.data import cache
from metalearner.data.images import ImageSettings, convert_pixels
from metalearner.data.labeled import LabeledSet
from metalearner.data.splits import SPLITS, ClassSplit
from metalearner.errors import DataError

BLOCK = 4096
"""Rows converted at a time (84x84 RGB: 87 MB)."""

ARRAYS = ("x", "y", "class_names", "groups", "split")
"""What a decoded cache file holds: images, labels, a name, group and split index per class."""


@dataclass(frozen=True)
class SplitPart:
    """One split's classes as its file gives them.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        names: the split's class names, in class order.
        labels: ``[n]`` per row of the file, its class's index in ``names``.
        groups: one group name per class (tiered-ImageNet's superclasses), or ``None``.
        source: the file, as errors name it.
    """

    split: str
    names: tuple[str, ...]
    labels: np.ndarray
    groups: tuple[str, ...] | None = None
    source: str = ""


def as_text(value: object) -> str:
    """A name as a pickle gives it: ``str``, or ``bytes`` where Python 2 wrote it."""
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def dict_fields(data: object, keys: tuple[str, ...], *, what: str) -> dict[str, object]:
    """The ``keys`` of an unpickled dict, whether its keys are str or (Python 2) bytes."""
    fields = {as_text(k): v for k, v in data.items()} if isinstance(data, dict) else {}
    missing = [k for k in keys if k not in fields]
    if missing:
        found = "a dict without " + ", ".join(missing) if isinstance(data, dict) else "no dict"
        raise DataError(f"{what} holds {found}; use the original file of that name.")
    return fields


def check_images(images: object, *, what: str, rows: int | None = None) -> np.ndarray:
    """``images`` if it is a non-empty ``uint8 [N, H, W, 3]`` array (``rows`` of them if given).

    Raises:
        DataError: naming ``what``, when it is anything else.
    """
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] != 3
        or 0 in images.shape
    ):
        found = (
            f"a {images.dtype} array of shape {list(images.shape)}"
            if isinstance(images, np.ndarray)
            else f"a {type(images).__name__}"
        )
        raise DataError(
            f"{what} holds {found} where images uint8 [N, H, W, 3] belong; use the original file."
        )
    if rows is not None and len(images) != rows:
        raise DataError(
            f"{what} holds {len(images)} images but {rows} labels; use the original file, whole."
        )
    return images


def by_value(labels: object, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a file's integer labels, sorted, and each row's index among them.

    Raises:
        DataError: the labels are not a flat sequence of integers.
    """
    try:
        values = np.asarray(labels)
    except (TypeError, ValueError):
        values = np.zeros(0, dtype=object)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or len(values) == 0:
        raise DataError(f"{what} holds no integer label per image; use the original file.")
    distinct, index = np.unique(values, return_inverse=True)
    return distinct, index.astype(np.int64)


def arrange(parts: Sequence[SplitPart]) -> tuple[cache.Arrays, np.ndarray]:
    """The arrays of the whole dataset but its images, and where each row goes among them.

    Class ids run split after split in ``parts``' class order. Rows are ordered by class id,
    stably (a file's own order within a class).

    Returns:
        ``(arrays, dest)``: ``y``, ``class_names``, ``groups`` (empty names where the files
        have none) and ``split`` (an index into ``SPLITS`` per class); ``dest[i]`` is where row
        ``i`` of the parts' files, one after another, goes.

    Raises:
        DataError: one class name in two splits' files.
    """
    seen: dict[str, str] = {}
    ids: list[np.ndarray] = []
    names: list[str] = []
    groups: list[str] = []
    split: list[int] = []
    for part in parts:
        for name in part.names:
            if name in seen:
                raise DataError(
                    f"Class {name} is in both {seen[name]} and {part.source}, but a class belongs "
                    "to one split; use the original files."
                )
            seen[name] = part.source
        ids.append(part.labels + len(names))
        names += part.names
        groups += part.groups if part.groups is not None else [""] * len(part.names)
        split += [SPLITS.index(part.split)] * len(part.names)
    rows = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    dest = np.empty_like(order)
    dest[order] = np.arange(len(order))
    grouped = all(p.groups is not None for p in parts)
    arrays = {
        "y": rows[order],
        "class_names": np.array(names, dtype=np.str_),
        "groups": np.array(groups if grouped else [], dtype=np.str_),
        "split": np.array(split, dtype=np.int8),
    }
    return arrays, dest


def fill(
    x: np.ndarray, dest: np.ndarray, blocks: Iterable[np.ndarray], settings: ImageSettings
) -> None:
    """Writes blocks of ``uint8 [n, H, W, 3]`` rows, in file order, to their places ``dest`` in
    ``x``, converted to the stored ``[3, *settings.size]`` as :func:`decode_image` converts a
    file (so a JPEG and its decoded pixels in a pickle give the same stored image)."""
    start = 0
    for block in blocks:
        places = dest[start : start + len(block)]
        if block.shape[1:3] == settings.size and settings.channels == 3 and not settings.invert:
            # What convert_pixels would return, without a trip through Pillow per image.
            x[places] = block.transpose(0, 3, 1, 2)
        else:
            x[places] = np.stack(
                [convert_pixels(row.transpose(2, 0, 1), settings) for row in block]
            )
        start += len(block)


def in_blocks(images: np.ndarray) -> Iterable[np.ndarray]:
    """An in-memory array as :func:`fill` takes it."""
    return (images[i : i + BLOCK] for i in range(0, len(images), BLOCK))


def consistent(
    arrays: cache.Arrays, settings: ImageSettings, *, classes: int | None = None
) -> bool:
    """Whether cached arrays agree with each other and the settings (not someone else's file):
    ``x`` images of the settings' shape, a label per image among the named classes (``classes``
    of them where the dataset fixes it), a group and a split per class where they are kept."""
    x, y, n = arrays["x"], arrays["y"], len(arrays["class_names"])
    return (
        x.dtype == np.uint8
        and x.shape[1:] == (settings.channels, *settings.size)
        and y.shape == x.shape[:1]
        and (classes is None or n == classes)
        and len(arrays.get("split", range(n))) == n
        and len(arrays.get("groups", ())) in (0, n)
        and (y.size == 0 or 0 <= int(y.min()) <= int(y.max()) < n)
    )


def as_dataset(
    arrays: cache.Arrays, *, name: str, settings: ImageSettings
) -> tuple[LabeledSet, ClassSplit]:
    """The decoded arrays as the dataset and its fixed class split."""
    data = LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        y=torch.from_numpy(arrays["y"].astype(np.int64)),
        class_names=tuple(str(n) for n in arrays["class_names"]),
        groups=tuple(str(g) for g in arrays["groups"]),
        name=name,
        preprocessing=settings.as_dict(),
    )
    split = torch.from_numpy(arrays["split"].astype(np.int64))
    parts = [(split == i).nonzero().flatten() for i in range(len(SPLITS))]
    return data, ClassSplit(*parts)
