"""tiered-ImageNet in Ren et al.'s 351/97/160 class split, from its ``.npz`` and ``.pkl`` files.

The loader reads ``<data-dir>/tiered-imagenet/``: for each split, ``{train,val,test}_images.npz``
(one array, ``images``, ``uint8 [N, 84, 84, 3]``) and ``{train,val,test}_labels.pkl``, a Python 2
pickle of a dict in one of the two forms that circulate:

- **Ren et al.'s**: ``label_specific``, per image the index of its class in the split;
  ``label_general``, the index of its superclass; ``label_specific_str`` and
  ``label_general_str``, their names. Checked against the code that writes and reads them,
  few-shot-ssl-public's ``fewshot/data/tiered_imagenet.py``, and learn2learn's reader.
- **MetaOptNet's re-packing**, the one RFS reads: ``labels`` alone, one integer per image. Its
  classes have no names in the files, so they are named ``<split>/<label>``, with no superclass.
  Checked against kjunelee/MetaOptNet's ``data/tiered_imagenet.py`` and RFS's
  ``dataset/tiered_imagenet.py``.

Classes are numbered split after split, in label order within a split; ``groups`` are the
superclass names (Ren's form). The images keep the channel order they were stored in: Ren et al.'s
code decoded them with OpenCV, whose order is BGR, and MetaOptNet and RFS, whose numbers the
presets quote, read them as they are, as does this loader.

The ``.npz`` is read a block of rows at a time from its zip member, never through pickle (an
object array is refused, as ``np.load(allow_pickle=False)`` would), so a 9 GB split is never held
twice. The cache key takes each ``.npz``'s own CRC-32 and size of ``images`` from its zip
directory rather than hashing 12 GB at every start; the label pickles are hashed whole.

Checksums: none is published. The data circulates as Ren et al.'s tar (Google Drive; PNGs in
``*_images_png.pkl``, which their code decompresses into these ``.npz``) and as MetaOptNet's
re-packing (Dropbox), so none is recorded here; the contents are checked instead (shapes, dtype,
one label per image, one superclass per class). There is no download (ImageNet's terms allow no
redistribution).

References:
    Ren et al., "Meta-Learning for Semi-Supervised Few-Shot Classification", ICLR 2018 (the
    dataset and its split; renmengye/few-shot-ssl-public). Lee et al., "Meta-Learning with
    Differentiable Convex Optimization" (MetaOptNet), CVPR 2019; Tian et al., "Rethinking
    Few-Shot Image Classification" (RFS), ECCV 2020.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from metalearner.data import cache
from metalearner.data.images import ImageSettings
from metalearner.data.labeled import LabeledSet
from metalearner.data.omniglot import data_root
from metalearner.data.pixel_arrays import (
    ARRAYS,
    BLOCK,
    SplitPart,
    arrange,
    as_dataset,
    as_text,
    by_value,
    consistent,
    dict_fields,
    fill,
)
from metalearner.data.splits import SPLITS, ClassSplit
from metalearner.data.unpickle import read_pickle
from metalearner.errors import DataError

logger = logging.getLogger(__name__)

NAME = "tiered-imagenet"
MEMBER = "images.npy"
"""The array inside each ``.npz`` (``np.savez(path, images=...)``)."""

_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError)


def tiered_imagenet_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/tiered-imagenet``, the root as :func:`metalearner.data.omniglot.data_root` finds
    it."""
    return data_root(data_dir) / NAME


def load_tiered_imagenet(
    data_dir: Path | str | None = None,
    *,
    size: int = 84,
    download: bool = False,
    use_cache: bool = True,
) -> tuple[LabeledSet, ClassSplit]:
    """Loads tiered-ImageNet and Ren et al.'s split, decoding only the first time.

    Args:
        data_dir: folder holding ``tiered-imagenet/`` (default: ``$METALEARNER_DATA``).
        size: stored image side (84 as in the papers; other sides are resized with Lanczos).
        download: there is no download (see the module's notes); when files are missing, the
            error says so.
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Returns:
        ``(data, split)``: ``x`` ``uint8 [779165, 3, size, size]``, groups the superclasses
        (Ren's labels), and the 351/97/160 classes of each split.

    Raises:
        DataError: a file is missing (naming it and where it belongs), or malformed, truncated,
            a web page, or refused (naming it).

    Example:
        >>> data, split = load_tiered_imagenet("/data")
        >>> split.sizes()
        {'train': 351, 'val': 97, 'test': 160}
    """
    folder = tiered_imagenet_dir(data_dir)
    files = [(folder / f"{s}_images.npz", folder / f"{s}_labels.pkl") for s in SPLITS]
    missing = [path.name for pair in files for path in pair if not path.is_file()]
    if missing:
        hint = (
            "there is no download (ImageNet's terms allow no redistribution): " if download else ""
        )
        if any((folder / f"{s}_images_png.pkl").is_file() for s in SPLITS):
            hint += (
                "Ren et al.'s *_images_png.pkl are not read, decompress them into *_images.npz "
                "with their fewshot/data/compress_tiered_imagenet.py, and "
            )
        raise DataError(
            f"tiered-ImageNet's {', '.join(missing)} {'are' if len(missing) > 1 else 'is'} not "
            f"in {folder}: {hint}put the {{train,val,test}}_images.npz and _labels.pkl files "
            "there, or point --data-dir or METALEARNER_DATA at the folder that holds "
            "tiered-imagenet/."
        )
    settings = ImageSettings.of(size, channels=3)
    shapes = [_npz_shape(images) for images, _ in files]
    digest = hashlib.sha256(cache.source_digest([(p.name, p) for _, p in files]).encode())
    for (images, _), (_, crc, stored) in zip(files, shapes, strict=True):
        digest.update(f"{images.name}:{crc}:{stored}".encode())
    key = cache.cache_key(NAME, digest.hexdigest(), settings.as_dict())
    arrays = cache.cached(
        NAME,
        key,
        lambda: _decode(files, [s for s, _, _ in shapes], settings),
        required=ARRAYS,
        enabled=use_cache,
        check=lambda a: consistent(a, settings),
        what=f"tiered-ImageNet's {', '.join(p.name for pair in files for p in pair)}",
    )
    return as_dataset(arrays, name=NAME, settings=settings)


def _decode(
    files: list[tuple[Path, Path]], shapes: list[tuple[int, ...]], settings: ImageSettings
) -> cache.Arrays:
    """Every split's labels read and checked, then its images converted a block at a time."""
    parts = [
        _labels(split, labels, rows=shape[0])
        for split, (_, labels), shape in zip(SPLITS, files, shapes, strict=True)
    ]
    _superclasses_apart(parts)
    arrays, dest = arrange(_distinct(parts))
    x = np.empty((len(dest), settings.channels, *settings.size), dtype=np.uint8)
    logger.info("Converting %d tiered-ImageNet images (once; then cached)", len(dest))
    blocks = (
        block for (images, _), s in zip(files, shapes, strict=True) for block in _rows(images, s)
    )
    fill(x, dest, blocks, settings)
    return {"x": x, **arrays}


def _npz_shape(path: Path) -> tuple[tuple[int, ...], int, int]:
    """The shape of ``images`` in an ``.npz``, and the CRC-32 and size its zip records for it."""
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(MEMBER)
            with z.open(info) as f:
                shape = _header(f, path)
    except _ZIP_ERRORS as err:
        raise _unreadable(path, err) from None
    return shape, info.CRC, info.file_size


def _header(f: IO[bytes], path: Path) -> tuple[int, ...]:
    """Reads the ``.npy`` header of ``images``; its shape if it is ``uint8 [N, H, W, 3]``."""
    version = np.lib.format.read_magic(f)
    read = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }.get(version)
    if read is None:
        raise ValueError(f".npy format {version[0]}.{version[1]}")
    shape, fortran, dtype = read(f)
    if dtype != np.uint8 or fortran or len(shape) != 4 or shape[-1] != 3 or 0 in shape:
        raise DataError(
            f"{path} holds {'a Fortran-ordered ' if fortran else 'a '}{dtype} array of shape "
            f"{list(shape)} where images uint8 [N, H, W, 3] belong; use the original file."
        )
    return tuple(shape)


def _rows(path: Path, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The images of an ``.npz``, :data:`BLOCK` rows at a time, straight from its zip member."""
    row = int(np.prod(shape[1:]))
    try:
        with zipfile.ZipFile(path) as z, z.open(MEMBER) as f:
            _header(f, path)
            for start in range(0, shape[0], BLOCK):
                n = min(BLOCK, shape[0] - start)
                raw = f.read(n * row)
                if len(raw) != n * row:
                    raise EOFError("the array ends early")
                yield np.frombuffer(raw, dtype=np.uint8).reshape(n, *shape[1:])
            f.read()  # to the end, where zipfile checks the CRC-32 of everything read
    except _ZIP_ERRORS as err:
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: BaseException) -> DataError:
    reason = f"no {MEMBER} in it" if isinstance(err, KeyError) else " ".join(str(err).split())
    return DataError(
        f"{path} is not a readable .npz of images ({reason}); download it again or use the "
        "original file."
    )


def _labels(split: str, path: Path, *, rows: int) -> SplitPart:
    """One split's classes from its ``_labels.pkl``, in Ren et al.'s form or MetaOptNet's."""
    what = str(path)
    data = read_pickle(path, what=what)
    fields = dict_fields(data, (), what=what)
    if "label_specific" in fields:
        values, index = by_value(fields["label_specific"], what=what)
        names = _names(fields.get("label_specific_str"), values, split, what=what)
        groups = None
        if "label_general" in fields:
            general, _ = by_value(fields["label_general"], what=what)
            per_row = np.asarray(fields["label_general"])
            if len(per_row) != len(index):
                raise DataError(f"{what} holds more or fewer label_general than label_specific.")
            of_class = [np.unique(per_row[index == i]) for i in range(len(values))]
            mixed = next((i for i, g in enumerate(of_class) if len(g) != 1), None)
            if mixed is not None:
                raise DataError(
                    f"{what} puts class {names[mixed]} in several superclasses; use the original "
                    "file."
                )
            known = _names(fields.get("label_general_str"), general, split, what=what)
            groups = tuple(known[int(np.searchsorted(general, g[0]))] for g in of_class)
    elif "labels" in fields:
        values, index = by_value(fields["labels"], what=what)
        names, groups = _names(None, values, split, what=what), None
    else:
        raise DataError(
            f"{what} holds neither label_specific (Ren et al.'s labels) nor labels (MetaOptNet's); "
            "use the original file of that name."
        )
    if len(index) != rows:
        raise DataError(
            f"{what} labels {len(index)} images but {split}_images.npz holds {rows}; use the two "
            "files of one copy."
        )
    return SplitPart(split, names, index, groups, source=what)


def _names(names: object, values: np.ndarray, split: str, *, what: str) -> tuple[str, ...]:
    """The names of label ``values`` from a list of names indexed by label; ``<split>/<label>``
    where the file has no list (MetaOptNet's)."""
    if names is None:
        return tuple(f"{split}/{int(v)}" for v in values)
    top = int(values.max(initial=-1))
    if not isinstance(names, list | tuple | np.ndarray) or len(names) <= top or values.min() < 0:
        raise DataError(f"{what} has labels its lists of names do not name; use the original file.")
    return tuple(as_text(names[int(v)]) for v in values)


def _superclasses_apart(parts: list[SplitPart]) -> None:
    """Refuses splits that share a superclass (Ren et al.'s split is by superclass: a file copied
    from another split would score test tasks on training classes). MetaOptNet's files name no
    superclass, and cannot be checked so."""
    seen: dict[str, str] = {}
    for part in parts:
        for group in sorted(set(part.groups or ())):
            if seen.setdefault(group, part.split) != part.split:
                raise DataError(
                    f"{part.source} and the {seen[group]} labels share the superclass {group!r}, "
                    "but tiered-ImageNet's splits share none; put each split's original files "
                    "in place."
                )


def _distinct(parts: list[SplitPart]) -> list[SplitPart]:
    """``parts`` with a name two classes share (ImageNet has two "crane"s) told apart by split
    and class index, so that a class name means one class."""
    counts = Counter(n for p in parts for n in p.names)
    return [
        SplitPart(
            p.split,
            tuple(n if counts[n] == 1 else f"{n} ({p.split}/{i})" for i, n in enumerate(p.names)),
            p.labels,
            p.groups,
            p.source,
        )
        for p in parts
    ]
