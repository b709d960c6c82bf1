"""mini-ImageNet in Ravi & Larochelle's 64/16/20 class split, read from the files that circulate.

The loader reads ``<data-dir>/mini-imagenet/`` in the first of these three forms it finds there:

1. **Ravi & Larochelle's**: ``images/``, 60,000 JPEGs named ``<wnid><8 digits>.jpg`` (e.g.
   ``n0153282900000005.jpg``), and the split files ``train.csv``, ``val.csv``, ``test.csv``
   (header ``filename,label``; the label is the class's WordNet id). Checked against the split
   files in twitter/meta-learning-lstm (``data/miniImagenet/``).
2. **The pickled caches** ``mini-imagenet-cache-train.pkl``, ``-val.pkl``, ``-test.pkl``
   (learn2learn names the second ``-validation.pkl``; either is read): a dict of ``image_data``,
   ``uint8 [N, 84, 84, 3]``, and ``class_dict``, ``{wnid: [row, ...]}``. Checked against the code
   that writes them, Ren et al.'s few-shot-ssl-public (``fewshot/data/mini_imagenet.py``), and
   learn2learn's reader (``learn2learn/vision/datasets/mini_imagenet.py``).
3. **Gidaris & Komodakis's pickles**, as MetaOptNet and RFS read them:
   ``miniImageNet_category_split_train_phase_train.pickle``, ``..._val.pickle`` and
   ``..._test.pickle``, Python 2 pickles of a dict of ``data``, ``uint8 [N, 84, 84, 3]``,
   ``labels``, one integer per image, and ``catname2label``, ``{class name: label}``. Checked
   against kjunelee/MetaOptNet's ``data/mini_imagenet.py`` and RFS's ``dataset/mini_imagenet.py``.

Pickles are read by :func:`metalearner.data.unpickle.read_pickle`, which runs nothing they name.
Classes are named by their wnid (form 3: its ``catname2label`` names), sorted within a split, and
numbered split after split; so the three forms of the same images give the same tensor. A class
named by a wnid must belong to its file's split in Ravi & Larochelle's lists (:data:`RAVI_SPLIT`),
else the file is refused: a copy with two splits' files swapped would score test tasks on
validation classes.

Checksums: Ravi & Larochelle's split files are published, and :data:`SPLIT_FILES_MD5` records them
(a copy that differs, e.g. re-saved with other line ends, is still read: its classes are checked
against the lists). The JPEGs and both pickled forms circulate in several re-packings (Google
Drive, Dropbox and mirrors, none with a published checksum), so no checksum is recorded for them;
their contents are checked instead: shapes, dtype, one label per image, each split's classes.
There is no download: mini-ImageNet is cut from ImageNet, whose terms allow no redistribution.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (the dataset).
    Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning", ICLR 2017 (the split;
    twitter/meta-learning-lstm). Ren et al., "Meta-Learning for Semi-Supervised Few-Shot
    Classification", ICLR 2018 (the cache pickles). Gidaris & Komodakis, "Dynamic Few-Shot
    Visual Learning without Forgetting", CVPR 2018 (the category-split pickles); Lee et al.,
    "Meta-Learning with Differentiable Convex Optimization" (MetaOptNet), CVPR 2019; Tian et al.,
    "Rethinking Few-Shot Image Classification" (RFS), ECCV 2020.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from metalearner.data import cache
from metalearner.data.images import ImageSettings, decode_many
from metalearner.data.labeled import LabeledSet
from metalearner.data.mini_imagenet_pickles import cache_split, category_split
from metalearner.data.omniglot import data_root
from metalearner.data.pixel_arrays import (
    ARRAYS,
    SplitPart,
    arrange,
    as_dataset,
    consistent,
    fill,
    in_blocks,
)
from metalearner.data.splits import SPLITS, ClassSplit, split_list
from metalearner.errors import DataError

logger = logging.getLogger(__name__)

NAME = "mini-imagenet"

RAVI_SPLIT: dict[str, frozenset[str]] = {
    s: frozenset(split_list(f"mini_imagenet_{s}")) for s in SPLITS
}
"""Ravi & Larochelle's classes of each split (64/16/20 wnids), from their split files as shipped
in ``split_lists/mini_imagenet_{train,val,test}.txt``."""

SPLIT_FILES_MD5 = {
    "train.csv": "9525e1538f67719f18f1936bf8d0782d",
    "val.csv": "ce315ce99b41fbf84fa6acd69315d918",
    "test.csv": "5b89df877c6cbe5d291e43118a2a9591",
}
"""md5 of Ravi & Larochelle's split files, as published in twitter/meta-learning-lstm
(``data/miniImagenet/``, commit 0df7fc7, 2017)."""

FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "ravi": {s: (f"{s}.csv",) for s in SPLITS},
    "cache": {
        "train": ("mini-imagenet-cache-train.pkl",),
        "val": ("mini-imagenet-cache-val.pkl", "mini-imagenet-cache-validation.pkl"),
        "test": ("mini-imagenet-cache-test.pkl",),
    },
    "category-split": {
        "train": ("miniImageNet_category_split_train_phase_train.pickle",),
        "val": ("miniImageNet_category_split_val.pickle",),
        "test": ("miniImageNet_category_split_test.pickle",),
    },
}
"""Each form's file for each split (a second name: another name that file circulates under), in
the order the forms are looked for."""

_WNID = re.compile(r"n\d{8}")


def mini_imagenet_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/mini-imagenet``, the root as :func:`.omniglot.data_root` finds it."""
    return data_root(data_dir) / NAME


def load_mini_imagenet(
    data_dir: Path | str | None = None,
    *,
    size: int = 84,
    download: bool = False,
    use_cache: bool = True,
) -> tuple[LabeledSet, ClassSplit]:
    """Loads mini-ImageNet and its Ravi & Larochelle split, decoding only the first time.

    Args:
        data_dir: folder holding ``mini-imagenet/`` (default: ``$METALEARNER_DATA``).
        size: stored image side (84 as in the papers; other sides are resized with Lanczos).
        download: there is no download (see the module's notes); when the files are missing,
            the error says so.
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Returns:
        ``(data, split)``: ``x`` ``uint8 [60000, 3, size, size]`` RGB, class names the wnids,
        and the 64/16/20 classes of each split.

    Raises:
        DataError: no form's files are there (saying where to put them), one of a form's files is
            missing (naming it), or a file is malformed, refused or of another split (naming it).

    Example:
        >>> data, split = load_mini_imagenet("/data")
        >>> data.x.shape, split.sizes()
        (torch.Size([60000, 3, 84, 84]), {'train': 64, 'val': 16, 'test': 20})
    """
    folder = mini_imagenet_dir(data_dir)
    form, files = _find(folder, download=download)
    settings = ImageSettings.of(size, channels=3)
    if form == "ravi":
        rows = {s: _read_csv(path) for s, path in files.items()}
        sources = [(p.name, p) for p in files.values()] + _listed_images(folder, rows)
        build: Callable[[], cache.Arrays] = functools.partial(_decode_jpegs, folder, rows, settings)
    else:
        sources = [(p.name, p) for p in files.values()]
        build = functools.partial(_decode_pickles, form, files, settings)
    key = cache.cache_key(NAME, cache.source_digest(sources), settings.as_dict())
    arrays = cache.cached(
        NAME,
        key,
        build,
        required=ARRAYS,
        enabled=use_cache,
        check=lambda a: consistent(a, settings),
        what=f"mini-ImageNet's {', '.join(p.name for p in files.values())}",
    )
    return as_dataset(arrays, name=NAME, settings=settings)


def _find(folder: Path, *, download: bool) -> tuple[str, dict[str, Path]]:
    """The first form whose files are all in ``folder``, with its file per split."""
    incomplete: list[str] = []
    for form, names in FORMS.items():
        found = {
            s: next((folder / n for n in ns if (folder / n).is_file()), None)
            for s, ns in names.items()
        }
        missing = [" or ".join(names[s]) for s, path in found.items() if path is None]
        if form == "ravi" and not (folder / "images").is_dir():
            missing.append("the images/ folder")
        if not missing:
            return form, {s: path for s, path in found.items() if path is not None}
        if not incomplete and len(missing) < len(names) + (form == "ravi"):
            incomplete = missing  # the first form some of whose files are there
    if incomplete:
        raise DataError(
            f"mini-ImageNet's {' and '.join(incomplete)} {'are' if len(incomplete) > 1 else 'is'} "
            f"missing from {folder}, beside the other files of that form; put "
            f"{'them' if len(incomplete) > 1 else 'it'} there."
        )
    hint = (
        "there is no download (mini-ImageNet is cut from ImageNet, whose terms allow no "
        "redistribution): "
        if download
        else ""
    )
    raise DataError(
        f"mini-ImageNet is not in {folder}: {hint}put there Ravi & Larochelle's images/ with "
        "train.csv, val.csv and test.csv, or mini-imagenet-cache-{train,val,test}.pkl, or "
        "miniImageNet_category_split_{train_phase_train,val,test}.pickle, or point --data-dir "
        "or METALEARNER_DATA at the folder that holds mini-imagenet/."
    )


def _read_csv(path: Path) -> list[tuple[str, str]]:
    """``(filename, wnid)`` rows of one of Ravi & Larochelle's split files."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        reason = f"{path} is not a text split file ({err})"
        raise DataError(f"{reason}; use the original file.") from None
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(
            f"{path} does not start with the header filename,label of Ravi & Larochelle's split "
            "files; use the original file."
        )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(
                f"Line {line} of {path} is not a filename,label pair; use the original file."
            )
        out.append((row[0].strip(), row[1].strip()))
    if not out:
        raise DataError(f"{path} lists no images; use the original file.")
    digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if SPLIT_FILES_MD5.get(path.name, digest) != digest:
        logger.info(
            "%s differs from Ravi & Larochelle's published file (md5 %s); reading it, its classes "
            "checked against their split.",
            path,
            SPLIT_FILES_MD5[path.name],
        )
    return out


def _listed_images(folder: Path, rows: dict[str, list[tuple[str, str]]]) -> list[tuple[str, Path]]:
    """``(images/<name>, path)`` of every image the split files list, all of them there."""
    present = set(os.listdir(folder / "images"))
    for split, listed in rows.items():
        missing = next((name for name, _ in listed if name not in present), None)
        if missing is not None:
            raise DataError(
                f"{missing}, listed in {folder / f'{split}.csv'}, is not in {folder / 'images'}; "
                "put the whole images/ folder of mini-ImageNet there."
            )
    return [(f"images/{n}", folder / "images" / n) for listed in rows.values() for n, _ in listed]


def _decode_jpegs(
    folder: Path, rows: dict[str, list[tuple[str, str]]], settings: ImageSettings
) -> cache.Arrays:
    """Form 1: every image listed in the split files, decoded, with its class."""
    parts, paths = [], []
    for split, listed in rows.items():
        source = f"{folder / f'{split}.csv'}"
        wnids = [wnid for _, wnid in listed]
        names = tuple(sorted(set(wnids)))
        index = {n: i for i, n in enumerate(names)}
        labels = np.array([index[w] for w in wnids], dtype=np.int64)
        parts.append(_checked(SplitPart(split, names, labels, source=source)))
        paths += [folder / "images" / name for name, _ in listed]
    arrays, dest = arrange(parts)
    logger.info("Decoding %d mini-ImageNet images from %s (once; then cached)", len(paths), folder)
    x = np.empty((len(paths), settings.channels, *settings.size), dtype=np.uint8)
    x[dest] = decode_many(paths, settings, names=[str(p) for p in paths])
    return {"x": x, **arrays}


def _decode_pickles(form: str, files: dict[str, Path], settings: ImageSettings) -> cache.Arrays:
    """Forms 2 and 3: each split's pickle read (and checked), then all converted."""
    read = cache_split if form == "cache" else category_split
    parts, images = [], []
    for split, path in files.items():
        logger.info("Reading mini-ImageNet's %s (once; then cached)", path)
        part, pixels = read(split, path)
        parts.append(_checked(part))
        images.append(pixels)
    arrays, dest = arrange(parts)
    x = np.empty((len(dest), settings.channels, *settings.size), dtype=np.uint8)
    fill(x, dest, (block for pixels in images for block in in_blocks(pixels)), settings)
    return {"x": x, **arrays}


def _checked(part: SplitPart) -> SplitPart:
    """``part``, if each of its classes named by a wnid is one of its split's in Ravi's lists."""
    for name in part.names:
        if _WNID.fullmatch(name) and name not in RAVI_SPLIT[part.split]:
            other = next((s for s, wnids in RAVI_SPLIT.items() if name in wnids), None)
            where = f"a class of the {other} split" if other else "a class of no split"
            raise DataError(
                f"{part.source} holds {name}, {where} of Ravi & Larochelle's mini-ImageNet, in "
                f"place of the {part.split} split; use the files of their split, each under its "
                "own name."
            )
    return part
