"""Tiny mini- and tiered-ImageNet in the exact formats of the public files.

mini-ImageNet: 3/2/2 classes (real wnids of Ravi & Larochelle's train/val/test) x 4 images of
84x84 RGB, in each of the three forms :mod:`metalearner.data.mini_imagenet` reads:

- ``ravi``: ``images/<wnid><8 digits>.jpg`` (JPEGs, as the originals) and ``{train,val,test}.csv``
  with the header ``filename,label``;
- ``cache``: ``mini-imagenet-cache-{train,val,test}.pkl``, Python 2 pickles (protocol 2) of
  ``{"image_data": uint8 [N, 84, 84, 3], "class_dict": {wnid: [row, ...]}}``, rows in the split
  file's order;
- ``category-split``: ``miniImageNet_category_split_{train_phase_train,val,test}.pickle``,
  Python 2 pickles, ``{"data": uint8 [N, 84, 84, 3], "labels": [int, ...], "catname2label": {wnid:
  int}}`` (val and test also ``label2catname``), labels disjoint across splits (MetaOptNet
  asserts it) and rows of a split's classes interleaved.

The pickles hold the pixels Pillow decodes from the JPEGs, so the three forms hold the same images.

tiered-ImageNet: 3/2/2 classes x 4 images in ``{split}_images.npz`` (``np.savez(images=...)``)
and ``{split}_labels.pkl``: Ren et al.'s dict (``label_specific``/``label_general`` int32 arrays,
their ``_str`` name lists) or MetaOptNet's (``labels``, a list of ints), Python 2 pickles.

Python 2 pickles are written as Python 2 wrote them (:func:`python2_pickle`): strings and array
data as byte strings, numpy under ``numpy.core``; the readers must decode them as latin1.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pickle_fixture import python2_pickle

SIDE = 84
PER_CLASS = 4
MINI_CLASSES = {
    "train": ("n01532829", "n01558993", "n01704323"),
    "val": ("n01855672", "n02091244"),
    "test": ("n01930112", "n01981276"),
}
"""Real wnids of each split, in Ravi & Larochelle's lists."""
MINI_FORMS = ("ravi", "cache", "category-split")
CACHE_FILES = {s: f"mini-imagenet-cache-{s}.pkl" for s in ("train", "val", "test")}
CATEGORY_FILES = {
    "train": "miniImageNet_category_split_train_phase_train.pickle",
    "val": "miniImageNet_category_split_val.pickle",
    "test": "miniImageNet_category_split_test.pickle",
}

TIERED_CLASSES = {
    "train": (("n02085620", "dog"), ("n02085782", "dog"), ("n03000134", "fence")),
    "val": (("n01530575", "bird"), ("n01531178", "bird")),
    "test": (("n02666196", "device"), ("n02977058", "machine")),
}
"""Per split, (class name, superclass name) of each class, in label order."""


def _picture(seed: int) -> np.ndarray:
    """A smooth 84x84 RGB picture (JPEG keeps it close) unique to ``seed``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@dataclass(frozen=True)
class FakeMini:
    """What was written: the JPEGs' bytes and decoded pixels per class, in split-file order."""

    data_dir: Path
    jpegs: dict[str, list[tuple[str, bytes]]]
    pixels: dict[str, np.ndarray]
    classes: Mapping[str, Sequence[str]] = field(default_factory=lambda: MINI_CLASSES)

    @property
    def folder(self) -> Path:
        return self.data_dir / "mini-imagenet"

    def class_names(self) -> list[str]:
        """In the loader's order: split after split, sorted within a split."""
        return [w for s in ("train", "val", "test") for w in sorted(self.classes[s])]

    def images(self) -> np.ndarray:
        """``uint8 [M, 3, 84, 84]``: every class's decoded pixels, in :meth:`class_names` order."""
        return np.concatenate([self.pixels[w] for w in self.class_names()]).transpose(0, 3, 1, 2)


def mini_images(
    classes: Mapping[str, Sequence[str]] = MINI_CLASSES, per_class: int = PER_CLASS
) -> tuple[dict[str, list[tuple[str, bytes]]], dict[str, np.ndarray]]:
    """Per wnid, its JPEG files ``(name, bytes)`` and their decoded ``[K, 84, 84, 3]`` pixels."""
    jpegs, pixels = {}, {}
    wnids = [w for s in classes.values() for w in s]
    for c, wnid in enumerate(wnids):
        # Real files are numbered per class with gaps (n0153282900000005.jpg, ...06.jpg, ...).
        files = [
            (f"{wnid}{5 + 3 * i:08d}.jpg", _jpeg(_picture(1000 * c + i))) for i in range(per_class)
        ]
        jpegs[wnid] = files
        pixels[wnid] = np.stack([_decoded(data) for _, data in files])
    return jpegs, pixels


def write_fake_mini(
    data_dir: Path,
    *,
    form: str = "ravi",
    classes: Mapping[str, Sequence[str]] = MINI_CLASSES,
    per_class: int = PER_CLASS,
) -> FakeMini:
    """Writes ``data_dir/mini-imagenet`` in ``form`` (one of :data:`MINI_FORMS`): ``per_class``
    pictures of each of ``classes`` (wnids per split; a few of Ravi's by default)."""
    jpegs, pixels = mini_images(classes, per_class)
    fake = FakeMini(data_dir, jpegs, pixels, classes)
    folder = fake.folder
    folder.mkdir(parents=True, exist_ok=True)
    if form == "ravi":
        (folder / "images").mkdir(exist_ok=True)
        for split, wnids in classes.items():
            lines = ["filename,label"]
            for wnid in wnids:
                for name, jpeg in jpegs[wnid]:
                    (folder / "images" / name).write_bytes(jpeg)
                    lines.append(f"{name},{wnid}")
            (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    elif form == "cache":
        for split, wnids in classes.items():
            class_dict = {
                w: list(range(i * per_class, (i + 1) * per_class)) for i, w in enumerate(wnids)
            }
            cache = {
                "image_data": np.concatenate([pixels[w] for w in wnids]),
                "class_dict": class_dict,
            }
            (folder / CACHE_FILES[split]).write_bytes(python2_pickle(cache))
    elif form == "category-split":
        first = 0
        for split, wnids in classes.items():
            # Row r of class c: interleaved across classes, in each class's own order.
            rows = [(c, r) for r in range(per_class) for c in range(len(wnids))]
            catname2label = {w: first + c for c, w in enumerate(wnids)}
            data: dict[str, object] = {
                "data": np.stack([pixels[wnids[c]][r] for c, r in rows]),
                "labels": [first + c for c, _ in rows],
                "catname2label": catname2label,
            }
            if split != "train":
                data["label2catname"] = list(wnids)
            (folder / CATEGORY_FILES[split]).write_bytes(python2_pickle(data))
            first += len(wnids)
    else:
        raise ValueError(form)
    return fake


@dataclass(frozen=True)
class FakeTiered:
    """What was written: each split's images, ``uint8 [N, 84, 84, 3]``, grouped by class."""

    data_dir: Path
    images: dict[str, np.ndarray]

    @property
    def folder(self) -> Path:
        return self.data_dir / "tiered-imagenet"

    def all_images(self) -> np.ndarray:
        return np.concatenate([self.images[s] for s in ("train", "val", "test")]).transpose(
            0, 3, 1, 2
        )


def write_fake_tiered(data_dir: Path, *, form: str = "ren") -> FakeTiered:
    """Writes ``data_dir/tiered-imagenet`` with Ren et al.'s labels or MetaOptNet's (``form``)."""
    folder = data_dir / "tiered-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    images, first = {}, 0
    for split, classes in TIERED_CLASSES.items():
        n = len(classes) * PER_CLASS
        images[split] = np.stack([_picture(1000 + first * PER_CLASS + i) for i in range(n)])
        np.savez(folder / f"{split}_images.npz", images=images[split])
        specific = np.repeat(np.arange(len(classes), dtype=np.int32), PER_CLASS)
        if form == "ren":
            general_names = list(dict.fromkeys(g for _, g in classes))
            general_of = np.array([general_names.index(g) for _, g in classes], dtype=np.int32)
            labels: dict[str, object] = {
                "label_specific": specific,
                "label_general": general_of[specific],
                "label_specific_str": [name for name, _ in classes],
                "label_general_str": general_names,
            }
        else:
            labels = {"labels": [first + int(c) for c in specific]}
        (folder / f"{split}_labels.pkl").write_bytes(python2_pickle(labels))
        first += len(classes)
    return FakeTiered(data_dir, images)
