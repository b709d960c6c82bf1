"""The entries of the colour image benchmarks papers report on: mini-ImageNet, tiered-ImageNet,
CIFAR-FS, FC100 and CUB-200-2011.

Each is read from the files a researcher already has, in the forms that circulate (the loaders'
modules say which and where they were checked), never from a Google Drive link; each has one
split, fixed by its source, named for the paper that fixed it. Images are stored RGB at the side
their papers use, and the backbone normalises each channel with the mean and deviation the
reference code used (``normalize``), so a model trained here reads the same inputs as theirs.
:mod:`metalearner.data.registry` registers them.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016, and Ravi &
    Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017 (mini-ImageNet and
    its 64/16/20 split). Ren et al., "Meta-Learning for Semi-Supervised Few-Shot
    Classification", ICLR 2018 (tiered-ImageNet, 351/97/160). Bertinetto et al., "Meta-learning
    with differentiable closed-form solvers", ICLR 2019 (CIFAR-FS, 64/16/20). Oreshkin et al.,
    "TADAM", NeurIPS 2018 (FC100, 60/20/20 by superclass). Wah et al., "The Caltech-UCSD
    Birds-200-2011 Dataset", 2011, and Chen et al., "A Closer Look at Few-shot Classification",
    ICLR 2019 (CUB's 100/50/50 split). Tian et al., "Rethinking Few-Shot Image Classification",
    ECCV 2020 (the normalisation constants of mini/tiered-ImageNet, CIFAR-FS and FC100, from its
    code's ``dataset/transform_cfg.py``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from metalearner.data.entry import Dataset, Loader, LoadSettings, PixelStats
from metalearner.data.labeled import LabeledSet
from metalearner.data.splits import ClassSplit

IMAGENET_PIXELS: PixelStats = (
    (120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255),
    (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255),
)
"""mini-ImageNet's per-channel mean and deviation, as RFS (and tiered-ImageNet there) use them."""

CIFAR_PIXELS: PixelStats = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
"""CIFAR-100's per-channel mean and deviation, as RFS uses them for CIFAR-FS and FC100."""

IMAGENET_TORCHVISION: PixelStats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""ImageNet's per-channel statistics as torchvision states them: Chen et al. 2019 normalise CUB
with these."""


def _fixed_split(load: str, side: int) -> Loader:
    """A :class:`Loader` for a dataset whose source fixes its classes' split (the class counts
    do not apply): ``load`` is ``"module:function"`` of ``metalearner.data``, called with
    ``(data_dir, size=..., download=...)``, imported on first use (the registry is read by
    every command; the loaders, by the runs that read those files)."""

    def loader(
        d: LoadSettings, data_dir: Path | None, *, meta_train: int, val: int, download: bool
    ) -> tuple[LabeledSet, ClassSplit]:
        del meta_train, val  # the source's split
        module, function = load.split(":")
        read = getattr(importlib.import_module(f"metalearner.data.{module}"), function)
        data, split = read(data_dir, size=d.image_size or side, download=download)
        return data, split

    return loader


def _benchmark(
    name: str,
    split: str,
    load: str,
    *,
    side: int,
    classes: tuple[int, int],
    normalize: PixelStats,
    presets: str = "",
) -> Dataset:
    """An entry of a colour benchmark: RGB at ``side`` pixels, one ``split`` fixed by the
    source with ``classes`` = (train + validation, validation) classes, its presets named
    ``<presets>-5w1s-...`` (default: its name)."""
    return Dataset(
        name=name,
        kind="image",
        splits=(split,),
        fixed_splits=(split,),
        meta_train_classes=classes[0],
        val_classes=classes[1],
        channels=3,
        image_size=side,
        normalize=normalize,
        loader=_fixed_split(load, side),
        preset_prefix=presets,
    )


MINI_IMAGENET = _benchmark(
    "mini-imagenet", "ravi", "mini_imagenet:load_mini_imagenet", side=84, classes=(80, 16),
    normalize=IMAGENET_PIXELS, presets="mini",
)  # fmt: skip
TIERED_IMAGENET = _benchmark(
    "tiered-imagenet", "ren", "tiered_imagenet:load_tiered_imagenet", side=84, classes=(448, 97),
    normalize=IMAGENET_PIXELS,
)  # fmt: skip
CIFAR_FS = _benchmark(
    "cifar-fs",
    "bertinetto",
    "cifar:load_cifar_fs",
    side=32,
    classes=(80, 16),
    normalize=CIFAR_PIXELS,
    presets="cifarfs",
)
FC100 = _benchmark(
    "fc100", "oreshkin", "cifar:load_fc100", side=32, classes=(80, 20), normalize=CIFAR_PIXELS
)
CUB = _benchmark(
    "cub", "chen", "cub:load_cub", side=84, classes=(150, 50), normalize=IMAGENET_TORCHVISION
)

IMAGE_BENCHMARKS = (MINI_IMAGENET, TIERED_IMAGENET, CIFAR_FS, FC100, CUB)
"""In the order ``--dataset`` lists them."""
