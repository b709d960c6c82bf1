"""CIFAR-100's official python archive, decoded once: the 60,000 images pooled, by class.

The loader reads ``cifar-100-python.tar.gz``, or its extracted ``cifar-100-python/`` folder, from
``<data-dir>/cifar-100/`` (one copy serves CIFAR-FS and FC100, :mod:`.cifar`). The archive holds
three Python 2 pickles (protocol 2, byte-string keys): ``train`` (50,000 images) and ``test``
(10,000), each a dict with ``b"data"`` (``uint8 [N, 3072]``: 1024 red values, then green, then
blue, each 32x32 row-major), ``b"fine_labels"`` and ``b"coarse_labels"`` (lists of ints), and
``meta`` with ``b"fine_label_names"`` (100) and ``b"coarse_label_names"`` (20). They are read
with :func:`metalearner.data.unpickle.read_pickle`, which runs no code. Train and test are
pooled, 600 images per class, as CIFAR-FS and FC100 do: their splits are of classes.

References:
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR-100; the
    file format and the archive's md5 from https://www.cs.toronto.edu/~kriz/cifar.html, as
    torchvision's ``datasets/cifar.py`` records them, with the members' md5s: train
    16019d7e3df5f24257cddd939b257f8d, test f0ef6b0ae62326f3e7ffdfab6717acfc, meta
    7973b15100ade9c7d40fb424638fde48).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from metalearner.data import cache
from metalearner.data.archives import tar_members
from metalearner.data.images import ImageSettings, convert_pixels
from metalearner.data.labeled import LabeledSet
from metalearner.data.omniglot import data_root
from metalearner.data.pixel_arrays import consistent
from metalearner.data.unpickle import read_pickle
from metalearner.errors import DataError

logger = logging.getLogger(__name__)

ARCHIVE = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"
"""The official archive, and the folder it extracts to (its members sit in that folder)."""

MEMBERS = ("train", "test", "meta")

URLS = {ARCHIVE: "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"}
"""The dataset author's download location."""

MD5 = {ARCHIVE: "eb9058c3a382ffc7106e4002c42a8d85"}
"""md5 of the official archive (the CIFAR page; torchvision's ``CIFAR100.tgz_md5``)."""

_SIDE = 32


def cifar100_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/cifar-100``: where the archive (or its extracted folder) is looked for."""
    return data_root(data_dir) / "cifar-100"


def download_cifar100(
    folder: Path | str,
    *,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Downloads the official archive into ``folder`` unless it is there; returns its path.

    A cut download resumes on the next call (:func:`metalearner.data.cache.fetch`).

    Args:
        folder: the ``cifar-100`` folder to fill (e.g. ``<data-dir>/cifar-100``).
        url: overrides :data:`URLS` (e.g. a mirror).
        md5: overrides :data:`MD5`.
        timeout: seconds to wait on the server.

    Raises:
        DataError: the server is unreachable, the connection was cut, or the md5 differs.
    """
    dest, where = Path(folder) / ARCHIVE, url or URLS[ARCHIVE]
    return cache.fetch_missing(dest, where, md5=md5 or MD5[ARCHIVE], timeout=timeout)


def load_cifar100(
    data_dir: Path | str | None = None,
    *,
    name: str = "cifar-100",
    size: int = 32,
    download: bool = False,
    use_cache: bool = True,
) -> LabeledSet:
    """All 60,000 CIFAR-100 images (train, then test), decoded once into a cache both
    CIFAR-FS and FC100 read.

    Args:
        data_dir: folder holding ``cifar-100/`` (default: ``$METALEARNER_DATA``).
        name: the dataset's name, for the set and the advice in errors (``"cifar-fs"``).
        size: stored image side (32, the source's, is stored as it is).
        download: fetch the archive from its official host first (md5-checked).
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Returns:
        ``uint8 [60000, 3, size, size]`` RGB images, ``y`` the fine label, class names meta's
        (``"aquarium_fish"``), groups each class's superclass (``"fish"``).

    Raises:
        DataError: the archive is missing (saying where to put it), a web page, truncated, or
            not CIFAR-100's (naming the member).
    """
    folder = cifar100_dir(data_dir)
    settings = ImageSettings.of(size, channels=3)
    source = _find(folder)
    if source is None and download:
        download_cifar100(folder)
        source = _find(folder)
    if source is None:
        raise DataError(
            f"CIFAR-100 is not in {folder}: put {ARCHIVE} (or its extracted {FOLDER}/ folder) "
            "there, point --data-dir or METALEARNER_DATA at the folder that holds cifar-100/, "
            f"or fetch it with `metalearner tasks demo --dataset {name} --download` (same "
            "--data-dir)."
        )
    files = (
        [(source.name, source)]
        if source.is_file()
        else [(f"{FOLDER}/{m}", source / m) for m in MEMBERS if (source / m).is_file()]
    )
    key = cache.cache_key("cifar-100", cache.source_digest(files), settings.as_dict())
    arrays = cache.cached(
        "cifar-100",
        key,
        lambda: _decode(source, settings),
        required=("x", "y", "class_names", "groups"),
        enabled=use_cache,
        check=lambda a: consistent(a, settings, classes=100),
        what=f"CIFAR-100's {source.name}",
    )
    return LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        y=torch.from_numpy(arrays["y"].astype(np.int64)),
        class_names=tuple(str(n) for n in arrays["class_names"]),
        groups=tuple(str(g) for g in arrays["groups"]),
        name=name,
        preprocessing=settings.as_dict(),
    )


def _find(folder: Path) -> Path | None:
    """The archive, else the extracted folder (with ``cifar-100-python/`` in it or not)."""
    for path in (folder / ARCHIVE, folder / FOLDER, folder):
        if path.is_file() or (path.is_dir() and any((path / m).exists() for m in MEMBERS)):
            return path
    return None


def _read_members(source: Path) -> dict[str, bytes]:
    """The bytes of ``train``, ``test`` and ``meta`` from the archive or the folder."""
    if source.is_dir():
        missing = [m for m in MEMBERS if not (source / m).is_file()]
        if missing:
            raise DataError(
                f"{source} lacks {', '.join(missing)}: extract the whole {ARCHIVE} there."
            )
        return {m: (source / m).read_bytes() for m in MEMBERS}
    names = {f"{FOLDER}/{m}" for m in MEMBERS}
    found = {
        name.rsplit("/", 1)[1]: data
        for name, data in tar_members(source, names.__contains__, original=ARCHIVE)
    }
    missing = [f"{FOLDER}/{m}" for m in MEMBERS if m not in found]
    if missing:
        raise DataError(
            f"{source} lacks {', '.join(missing)}, so it is not the official {ARCHIVE} (or it "
            "is cut short); download it again."
        )
    return found


def _decode(source: Path, settings: ImageSettings) -> cache.Arrays:
    """Both pickled halves pooled (train, then test): images, fine labels, names, superclasses."""
    logger.info("Decoding CIFAR-100 from %s (once; then cached)", source)
    raw = _read_members(source)
    where = f"in {source}"
    meta = _fields(read_pickle(raw["meta"], what=f"meta {where}", encoding="bytes"), "meta")
    fine_names = _names(meta, "fine_label_names", 100, f"meta {where}")
    coarse_names = _names(meta, "coarse_label_names", 20, f"meta {where}")
    xs, fines, coarses = [], [], []
    for part in ("train", "test"):
        batch = _fields(read_pickle(raw[part], what=f"{part} {where}", encoding="bytes"), part)
        x, fine, coarse = _batch(batch, f"{part} {where}")
        xs.append(x)
        fines.append(fine)
        coarses.append(coarse)
    x, fine, coarse = np.concatenate(xs), np.concatenate(fines), np.concatenate(coarses)
    # Each fine class lies in one superclass; the pickles give it per image.
    superclass = np.full(100, -1, dtype=np.int64)
    superclass[fine] = coarse
    if (superclass < 0).any() or (superclass[fine] != coarse).any():
        raise DataError(
            f"The CIFAR-100 batches {where} give a class no image or two superclasses; use "
            f"the original {ARCHIVE}."
        )
    images = x.reshape(-1, 3, _SIDE, _SIDE)
    if settings.size != (_SIDE, _SIDE):
        images = np.stack([convert_pixels(image, settings) for image in images])
    return {
        "x": np.ascontiguousarray(images),
        "y": fine,
        "class_names": np.array(fine_names, dtype=str),
        "groups": np.array([coarse_names[s] for s in superclass], dtype=str),
    }


def _fields(obj: object, member: str) -> dict[str, object]:
    """A pickled dict with its keys as text (Python 2 wrote them as byte strings)."""
    if not isinstance(obj, dict):
        raise DataError(
            f"CIFAR-100's {member} holds a {type(obj).__name__}, not a dict; use the original "
            f"{ARCHIVE}."
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(meta: Mapping[str, object], key: str, count: int, what: str) -> list[str]:
    """``count`` label names from ``meta[key]`` (byte strings from Python 2)."""
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != count:
        raise DataError(f"{what} has no list of {count} {key}; use the original {ARCHIVE}'s meta.")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _batch(batch: Mapping[str, object], what: str) -> tuple[np.ndarray, ...]:
    """``data`` as ``uint8 [N, 3072]`` and the fine and coarse labels as ``int64 [N]``."""
    data = batch.get("data")
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * _SIDE * _SIDE
    ):
        raise DataError(
            f"{what} has no 'data' array of N x 3072 uint8 pixels; use the original {ARCHIVE}."
        )
    labels = []
    for key, count in (("fine_labels", 100), ("coarse_labels", 20)):
        values = np.asarray(batch.get(key, []))
        if (
            values.shape != data.shape[:1]
            or values.dtype.kind not in "iu"
            or (values.size and not 0 <= values.min() <= values.max() < count)
        ):
            raise DataError(
                f"{what} has no {key} in 0..{count - 1} for each of its {len(data)} images; use "
                f"the original {ARCHIVE}."
            )
        labels.append(values.astype(np.int64))
    return data, labels[0], labels[1]
