"""A small fake CIFAR-100 in the official python archive's format, with 1 + 1 images per class.

The archive ``cifar-100-python.tar.gz`` holds ``cifar-100-python/{train,test,meta}`` (and a stray
``file.txt~``), Python 2 pickles at protocol 2 as the originals are: dict keys and names are
Python 2 strings (loaded as ``bytes`` with ``encoding="bytes"``), ``data`` a numpy ``uint8``
array pickled through ``numpy.core.multiarray._reconstruct``. The 100 fine classes and their
superclasses are CIFAR-100's (https://www.cs.toronto.edu/~kriz/cifar.html), so the published
splits apply; each class has one random 32x32 image in ``train`` and one in ``test``.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pickle_fixture import python2_pickle

SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
"""CIFAR-100's superclasses and their classes, as the CIFAR page lists them (meta's spelling)."""

FINE = sorted(c for classes in SUPERCLASSES.values() for c in classes.split())
COARSE = sorted(SUPERCLASSES)
SUPERCLASS_OF = {c: s for s, classes in SUPERCLASSES.items() for c in classes.split()}


@dataclass(frozen=True)
class FakeCifar100:
    """What was written: the pooled images (train, then test) and their fine labels."""

    folder: Path
    x: np.ndarray  # uint8 [200, 3, 32, 32]
    y: np.ndarray  # int64 [200]

    @property
    def archive(self) -> Path:
        return self.folder / "cifar-100-python.tar.gz"


def members(seed: int = 0, per_class: int = 1) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    """``train``, ``test`` and ``meta`` pickles (``per_class`` images of each class in each);
    the pooled images and labels they hold."""
    rng = np.random.default_rng(seed)
    files, xs, ys = {}, [], []
    for part, label in (("train", "training batch 1 of 1"), ("test", "testing batch 1 of 1")):
        # Shuffled, as the real batches are.
        fine = rng.permutation(np.repeat(np.arange(len(FINE)), per_class))
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        batch = {
            "batch_label": label,
            "fine_labels": [int(f) for f in fine],
            "coarse_labels": [COARSE.index(SUPERCLASS_OF[FINE[f]]) for f in fine],
            "filenames": [f"{FINE[f]}_s_{i:06d}.png" for i, f in enumerate(fine)],
            "data": data,
        }
        files[part] = python2_pickle(batch)
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(fine)
    files["meta"] = python2_pickle({"fine_label_names": FINE, "coarse_label_names": COARSE})
    return files, np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def write_fake_cifar100(
    data_dir: Path, *, form: str = "archive", per_class: int = 1
) -> FakeCifar100:
    """Writes ``data_dir/cifar-100/cifar-100-python.tar.gz`` (or the extracted folder), with
    ``per_class`` images of each class in ``train`` and as many in ``test``."""
    folder = data_dir / "cifar-100"
    files, x, y = members(per_class=per_class)
    files["file.txt~"] = b""
    if form == "archive":
        folder.mkdir(parents=True, exist_ok=True)
        tar_gz(
            folder / "cifar-100-python.tar.gz",
            {f"cifar-100-python/{n}": d for n, d in files.items()},
        )
    else:
        (folder / "cifar-100-python").mkdir(parents=True)
        for name, data in files.items():
            (folder / "cifar-100-python" / name).write_bytes(data)
    return FakeCifar100(folder, x, y)


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    """A gzip tar of ``files`` with an entry for each folder, as ``tar czf`` writes one."""
    with tarfile.open(path, "w:gz") as tar:
        folders = sorted({n.rsplit("/", i)[0] for n in files for i in range(1, n.count("/") + 1)})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
