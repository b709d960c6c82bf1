"""mini-ImageNet's two pickled forms, each split's file read into its classes and images.

- Ren et al.'s caches, ``mini-imagenet-cache-{train,val,test}.pkl``: a dict of ``image_data``,
  ``uint8 [N, 84, 84, 3]``, and ``class_dict``, ``{wnid: [row, ...]}`` (few-shot-ssl-public's
  ``fewshot/data/mini_imagenet.py`` writes it; learn2learn's ``mini_imagenet.py`` reads it).
- Gidaris & Komodakis's ``miniImageNet_category_split_*.pickle``: Python 2 pickles of a dict of
  ``data``, ``uint8 [N, 84, 84, 3]``, ``labels``, an integer per image (disjoint across splits),
  and ``catname2label``, ``{class name: label}`` (val and test also ``label2catname``, unused
  here), as kjunelee/MetaOptNet's and RFS's ``mini_imagenet.py`` read them.

Both are read by :func:`metalearner.data.unpickle.read_pickle`, which runs nothing they name, and
checked: images of the right shape and dtype, one class per image, a name for every label.
Classes are sorted by name, as :mod:`.mini_imagenet` orders every form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metalearner.data.pixel_arrays import SplitPart, as_text, by_value, check_images, dict_fields
from metalearner.data.unpickle import read_pickle
from metalearner.errors import DataError


def cache_split(split: str, path: Path) -> tuple[SplitPart, np.ndarray]:
    """One of Ren et al.'s ``mini-imagenet-cache-*.pkl``: ``image_data`` and ``class_dict``."""
    what = str(path)
    data = dict_fields(read_pickle(path, what=what), ("image_data", "class_dict"), what=what)
    images = check_images(data["image_data"], what=what)
    classes = data["class_dict"]
    if not isinstance(classes, dict) or not classes:
        raise DataError(f"{what} holds no class_dict of wnid -> rows; use the original file.")
    names = tuple(sorted(as_text(n) for n in classes))
    labels = np.full(len(images), -1, dtype=np.int64)
    for name, rows in classes.items():
        try:
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            rows = np.array([-1])
        if rows.size and (rows.min() < 0 or rows.max() >= len(images) or (labels[rows] >= 0).any()):
            raise DataError(
                f"{what}'s class_dict gives class {as_text(name)} rows outside its "
                f"{len(images)} images or rows of another class; use the original file."
            )
        labels[rows] = names.index(as_text(name))
    if (labels < 0).any():
        raise DataError(
            f"{what}'s class_dict leaves image {int(np.argmax(labels < 0))} without a class; "
            "use the original file."
        )
    return SplitPart(split, names, labels, source=what), images


def category_split(split: str, path: Path) -> tuple[SplitPart, np.ndarray]:
    """One of Gidaris & Komodakis's pickles: ``data``, ``labels`` and ``catname2label``."""
    what = str(path)
    data = dict_fields(read_pickle(path, what=what), ("data", "labels", "catname2label"), what=what)
    values, index = by_value(data["labels"], what=what)
    images = check_images(data["data"], what=what, rows=len(index))
    catnames = data["catname2label"]
    try:
        pairs = catnames.items() if isinstance(catnames, dict) else ()
        named = {int(v): as_text(n) for n, v in pairs}
    except (TypeError, ValueError):
        named = {}  # not a dict of names to integer labels: every label is unnamed
    unnamed = [int(v) for v in values if int(v) not in named]
    if unnamed:
        raise DataError(
            f"{what}'s catname2label names no class for label {unnamed[0]}; use the original file."
        )
    # Sorted by name, as the other forms are, so the same images give the same class ids.
    names = tuple(sorted(named[int(v)] for v in values))
    rank = np.array([names.index(named[int(v)]) for v in values], dtype=np.int64)
    return SplitPart(split, names, rank[index], source=what), images
