"""CIFAR-FS and FC100: CIFAR-100's 100 classes split as the papers that made them split them.

Both are all of CIFAR-100 (:mod:`.cifar100`: the official archive, train and test pooled, 600
images per class), split by class. The split lists ship with the package, as class names
(``split_lists/cifar_fs_*.txt``) and superclass names (``split_lists/fc100_*.txt``).

References:
    Bertinetto et al., "Meta-learning with differentiable closed-form solvers", ICLR 2019
    (CIFAR-FS, 64/16/20 classes; the lists of bertinetto/r2d2's ``cifar-fs_splits``, commit
    9ed0090, which Torchmeta's ``assets/cifar100/cifar-fs`` agree with).
    Oreshkin et al., "TADAM: Task dependent adaptive metric for improved few-shot learning",
    NeurIPS 2018 (FC100, 12/4/4 superclasses = 60/20/20 classes: its appendix and
    ElementAI/TADAM's ``datasets/create_dataset_cifar100.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from metalearner.data.cifar100 import ARCHIVE, load_cifar100
from metalearner.data.labeled import LabeledSet
from metalearner.data.splits import SPLITS, ClassSplit, split_list
from metalearner.errors import DataError


def load_cifar_fs(
    data_dir: Path | str | None = None,
    *,
    size: int = 32,
    download: bool = False,
    use_cache: bool = True,
) -> tuple[LabeledSet, ClassSplit]:
    """CIFAR-FS: all 100 CIFAR-100 classes, split 64/16/20 by Bertinetto et al.'s class lists.

    Args:
        data_dir: folder holding ``cifar-100/`` (default: ``$METALEARNER_DATA``).
        size: stored image side (32, the source's, is stored as it is).
        download: fetch the archive from its official host first (md5-checked).
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Returns:
        ``uint8 [60000, 3, size, size]`` RGB images, ``y`` the CIFAR fine label, class names
        CIFAR's (``"aquarium_fish"``), groups their superclasses; and the published split.

    Raises:
        DataError: the archive is missing (saying where to put it), truncated, or not CIFAR-100.

    Example:
        >>> data, split = load_cifar_fs("/data")
        >>> data.x.shape, split.sizes()
        (torch.Size([60000, 3, 32, 32]), {'train': 64, 'val': 16, 'test': 20})
    """
    data = load_cifar100(
        data_dir, name="cifar-fs", size=size, download=download, use_cache=use_cache
    )
    index = {name: i for i, name in enumerate(data.class_names)}
    ids = {}
    for split in SPLITS:
        names = split_list(f"cifar_fs_{split}")
        unknown = [n for n in names if n not in index]
        if unknown:
            raise DataError(
                f"CIFAR-100's meta names no class {unknown[0]!r} of CIFAR-FS's {split} list; "
                f"use the original {ARCHIVE}."
            )
        ids[split] = sorted(index[n] for n in names)
    return data, _split(ids)


def load_fc100(
    data_dir: Path | str | None = None,
    *,
    size: int = 32,
    download: bool = False,
    use_cache: bool = True,
) -> tuple[LabeledSet, ClassSplit]:
    """FC100: all 100 CIFAR-100 classes, split by superclass, 12/4/4 (60/20/20 classes).

    Arguments, return value and errors as :func:`load_cifar_fs`; the groups (superclasses) are
    what the split is made of, so no superclass is seen in two splits.

    Example:
        >>> data, split = load_fc100("/data")
        >>> split.sizes(), sorted({data.groups[c] for c in split.test.tolist()})[0]
        ({'train': 60, 'val': 20, 'test': 20}, 'aquatic_mammals')
    """
    data = load_cifar100(data_dir, name="fc100", size=size, download=download, use_cache=use_cache)
    known = set(data.groups)
    ids = {}
    for split in SPLITS:
        superclasses = split_list(f"fc100_{split}")
        unknown = [s for s in superclasses if s not in known]
        if unknown:
            raise DataError(
                f"CIFAR-100's meta names no superclass {unknown[0]!r} of FC100's {split} list; "
                f"use the original {ARCHIVE}."
            )
        ids[split] = [c for c, g in enumerate(data.groups) if g in superclasses]
    return data, _split(ids)


def _split(ids: Mapping[str, list[int]]) -> ClassSplit:
    """The split of ``ids`` per split name, as int64 tensors."""
    return ClassSplit(**{s: torch.tensor(ids[s], dtype=torch.int64) for s in SPLITS})
