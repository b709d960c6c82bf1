"""CUB-200-2011: 11,788 photographs of 200 bird species, with Chen et al.'s 100/50/50 split.

The loader reads the official ``CUB_200_2011.tgz``, or its extracted ``CUB_200_2011/`` folder,
from ``<data-dir>/cub/``. Of the archive's layout (its ``README``) it reads::

    CUB_200_2011/classes.txt    "<class id> <NNN.Species_name>", ids 1..200
    CUB_200_2011/images.txt     "<image id> <NNN.Species_name>/<file>.jpg", 11,788 lines
    CUB_200_2011/images/<NNN.Species_name>/<file>.jpg

and leaves the rest (parts, attributes, boxes, the suggested image split) alone. A few of the
photographs are greyscale; every image is stored RGB, resized whole to ``size`` x ``size``.

The split is Chen et al.'s (``filelists/CUB/write_CUB_filelist.py``): the class folders in
sorted order, the ``i``-th (from 0) for meta-training when ``i % 4`` is 0 or 2, validation when
it is 1, test when it is 3.

References:
    Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", Caltech CNS-TR-2011-001 (the data and
    the archive's layout; the archive's md5 as torchvision-style loaders record it, e.g.
    TDeVries/cub2011_dataset, and its CaltechDATA location, record 65de6-vp158).
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019 (the 100/50/50 split;
    wyharveychen/CloserLookFewShot, ``filelists/CUB/write_CUB_filelist.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from metalearner.data import cache
from metalearner.data.archives import tar_members
from metalearner.data.images import ImageSettings, decode_image, list_tree
from metalearner.data.labeled import LabeledSet
from metalearner.data.omniglot import data_root
from metalearner.data.pixel_arrays import consistent
from metalearner.data.splits import ClassSplit
from metalearner.errors import DataError

logger = logging.getLogger(__name__)

ARCHIVE = "CUB_200_2011.tgz"
FOLDER = "CUB_200_2011"
"""The official archive, and the folder every member of it sits in."""

URLS = {ARCHIVE: "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1"}
"""The dataset's home on CaltechDATA (it moved there from www.vision.caltech.edu)."""

MD5 = {ARCHIVE: "97eceeb196236b17998738112f37df78"}
"""md5 of the official archive."""

NUM_CLASSES = 200
_INDEX = ("classes.txt", "images.txt")


def cub_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/cub``: where the archive (or its extracted folder) is looked for."""
    return data_root(data_dir) / "cub"


def load_cub(
    data_dir: Path | str | None = None,
    *,
    size: int = 84,
    download: bool = False,
    use_cache: bool = True,
) -> tuple[LabeledSet, ClassSplit]:
    """All of CUB-200-2011, decoded once, and Chen et al.'s class split.

    Args:
        data_dir: folder holding ``cub/`` (default: ``$METALEARNER_DATA``).
        size: stored image side (84, as Chen et al.'s conv4 and ResNet-12 read them).
        download: fetch the archive from CaltechDATA first (md5-checked; 1.1 GB).
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Returns:
        ``uint8 [11788, 3, size, size]`` RGB images in ``images.txt`` order, ``y`` the class in
        sorted folder order (``class id - 1``), class names without their number
        (``"Black_footed_Albatross"``); and the 100/50/50 split.

    Raises:
        DataError: the files are missing (saying where to put them), the index lists other than
            200 classes or an image that is not there, or an image is unreadable (naming it).

    Example:
        >>> data, split = load_cub("/data")
        >>> data.x.shape, split.sizes()
        (torch.Size([11788, 3, 84, 84]), {'train': 100, 'val': 50, 'test': 50})
    """
    folder = cub_dir(data_dir)
    settings = ImageSettings.of(size, channels=3)
    source = _find(folder)
    if source is None and download:
        download_cub(folder)
        source = _find(folder)
    if source is None:
        raise DataError(
            f"CUB-200-2011 is not in {folder}: put {ARCHIVE} (or its extracted {FOLDER}/ "
            "folder) there, point --data-dir or METALEARNER_DATA at the folder that holds cub/, "
            "or fetch it with `metalearner tasks demo --dataset cub --download` (same "
            "--data-dir)."
        )
    files = (
        [(source.name, source)]
        if source.is_file()
        else [(n, source / n) for n in _INDEX if (source / n).is_file()]
        + [(f"images/{n}", source / "images" / n) for n in list_tree(source / "images")]
    )
    key = cache.cache_key("cub", cache.source_digest(files), settings.as_dict())
    arrays = cache.cached(
        "cub",
        key,
        lambda: _decode(source, settings),
        required=("x", "y", "class_names"),
        enabled=use_cache,
        check=lambda a: consistent(a, settings, classes=NUM_CLASSES),
        what=f"CUB-200-2011's {source.name}",
    )
    data = LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        y=torch.from_numpy(arrays["y"].astype(np.int64)),
        class_names=tuple(str(n) for n in arrays["class_names"]),
        name="cub",
        preprocessing=settings.as_dict(),
    )
    return data, chen_split()


def chen_split(num_classes: int = NUM_CLASSES) -> ClassSplit:
    """Chen et al.'s split of classes in sorted folder order: ``i % 2 == 0`` meta-training,
    ``i % 4 == 1`` validation, ``i % 4 == 3`` test (100/50/50 of CUB's 200)."""
    ids = torch.arange(num_classes)
    return ClassSplit(train=ids[ids % 2 == 0], val=ids[ids % 4 == 1], test=ids[ids % 4 == 3])


def download_cub(
    folder: Path | str,
    *,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Downloads the official archive into ``folder`` unless it is there; returns its path.

    A cut download resumes on the next call (:func:`metalearner.data.cache.fetch`).

    Raises:
        DataError: the server is unreachable, the connection was cut, or the md5 differs.
    """
    dest, where = Path(folder) / ARCHIVE, url or URLS[ARCHIVE]
    return cache.fetch_missing(dest, where, md5=md5 or MD5[ARCHIVE], timeout=timeout)


def _find(folder: Path) -> Path | None:
    """The archive, else the extracted folder (``CUB_200_2011/`` in ``folder``, or ``folder``)."""
    if (folder / ARCHIVE).is_file():
        return folder / ARCHIVE
    for path in (folder / FOLDER, folder):
        if any((path / n).exists() for n in (*_INDEX, "images")):
            return path
    return None


def _decode(source: Path, settings: ImageSettings) -> cache.Arrays:
    """The images ``images.txt`` lists, in its order, with their classes in folder order."""
    logger.info("Decoding CUB-200-2011 from %s (once; then cached)", source)
    if source.is_file():
        # One pass through the archive: images are decoded as they stream by (the index files
        # may come after them), then put in images.txt's order.
        index: dict[str, bytes] = {}
        decoded: dict[str, np.ndarray] = {}
        for name, data in tar_members(source, _in_cub, original=ARCHIVE):
            rel = name.removeprefix(f"{FOLDER}/")
            if rel in _INDEX:
                index[rel] = data
            else:
                path = rel.removeprefix("images/")
                decoded[path] = decode_image(data, settings, name=f"{name} in {source}")
        raw = index
    else:
        raw = {n: (source / n).read_bytes() for n in _INDEX if (source / n).is_file()}

    def where(name: str) -> str:
        return f"{FOLDER}/{name} in {source}" if source.is_file() else str(source / name)

    text = {}
    for name, data in raw.items():
        try:
            text[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(
                f"{where(name)} is not a text file; use the original {ARCHIVE}."
            ) from None

    missing = [n for n in _INDEX if n not in text]
    if missing:
        raise DataError(
            f"{where(missing[0])} is missing; use the whole {ARCHIVE} or its extracted folder."
        )
    classes = _classes(text["classes.txt"], where("classes.txt"))
    images = _images(text["images.txt"], where("images.txt"), set(classes))
    ids = {c: i for i, c in enumerate(sorted(classes))}  # Chen et al.'s order: sorted folders
    x = np.empty((len(images), 3, *settings.size), dtype=np.uint8)
    for i, path in enumerate(images):
        if source.is_file():
            if path not in decoded:
                raise DataError(f"{source} lacks {FOLDER}/images/{path}; download it again.")
            x[i] = decoded[path]
        elif not (source / "images" / path).is_file():
            raise DataError(f"{source / 'images' / path}, listed in images.txt, is missing.")
        else:
            x[i] = decode_image(source / "images" / path, settings)
    return {
        "x": x,
        "y": np.array([ids[p.split("/")[0]] for p in images], dtype=np.int64),
        "class_names": np.array([c.split(".", 1)[-1] for c in sorted(classes)], dtype=str),
    }


def _in_cub(name: str) -> bool:
    """Whether an archive member is one the loader reads: an index file or an image."""
    rel = name.removeprefix(f"{FOLDER}/")
    # Archive tools' ._* and .DS_Store files are no images (as list_tree leaves them out).
    image = rel.startswith("images/") and rel.count("/") == 2 and "/." not in rel
    return rel in _INDEX or image


def _classes(text: str, where: str) -> list[str]:
    """The class folders of ``classes.txt``, checked to be ids 1..200 in order."""
    rows = [line.split(maxsplit=1) for line in text.splitlines() if line.strip()]
    if len(rows) != NUM_CLASSES or [r[0] for r in rows] != [
        str(i) for i in range(1, NUM_CLASSES + 1)
    ] or any(len(r) != 2 for r in rows):  # fmt: skip
        raise DataError(
            f"{where} does not list classes 1..{NUM_CLASSES} as '<id> <folder>' lines "
            f"({len(rows)} lines); use the original {ARCHIVE}."
        )
    return [r[1].strip() for r in rows]


def _images(text: str, where: str, classes: set[str]) -> list[str]:
    """The image paths of ``images.txt`` (``<class folder>/<file>``), each in a listed class."""
    paths = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        path = parts[-1].strip()
        if len(parts) != 2 or path.count("/") != 1 or path.split("/")[0] not in classes:
            raise DataError(
                f"{where} line {number} is not '<id> <class folder>/<file>' with a class of "
                f"classes.txt: {line.strip()!r}; use the original {ARCHIVE}."
            )
        paths.append(path)
    if not paths:
        raise DataError(f"{where} lists no image; use the original {ARCHIVE}.")
    return paths
