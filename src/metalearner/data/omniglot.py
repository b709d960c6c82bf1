"""Omniglot in its original layout, decoded once into one ``uint8`` tensor, with its two halves.

The loader reads ``images_background.zip`` / ``images_evaluation.zip`` (or their extracted
folders ``images_background/<Alphabet>/characterNN/*.png``) from ``<data-dir>/omniglot/``; the
published class splits over it are in :mod:`metalearner.data.omniglot_splits`.

References:
    Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
    program induction", Science 2015 (the dataset; background vs evaluation alphabets).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metalearner.data import cache
from metalearner.data.images import ImageSettings, decode_many, list_tree, read_tree
from metalearner.data.labeled import LabeledSet
from metalearner.errors import DataError

logger = logging.getLogger(__name__)

SETS = ("images_background", "images_evaluation")
"""The two halves of Omniglot: 30 background alphabets (964 characters), 20 evaluation (659)."""

_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
URLS = {
    "images_background.zip": _BASE + "images_background.zip",
    "images_evaluation.zip": _BASE + "images_evaluation.zip",
    "all_runs.zip": _BASE + "one-shot-classification/all_runs.zip",
}
"""Canonical download locations (the dataset author's repository)."""

MD5 = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
    # Of a byte-for-byte copy of the file at the URL above.
    "all_runs.zip": "e8996daecdf12afeeb4a53a179f06b19",
}
"""md5 of the original archives; a re-packed copy (same PNGs) is accepted when loading."""


@dataclass(frozen=True)
class Omniglot:
    """All 1,623 Omniglot characters, plus which half of the dataset each came from.

    Attributes:
        data: ``x`` is ``uint8 [M, 1, H, W]`` (ink high, background 0), class names
            ``"Alphabet/characterNN"``, groups the alphabet of each class.
        background: ``[964]`` class ids from ``images_background`` (ids ``0..963``).
        evaluation: ``[659]`` class ids from ``images_evaluation`` (the ids after them).
    """

    data: LabeledSet
    background: Tensor
    evaluation: Tensor


def data_root(data_dir: Path | str | None = None) -> Path:
    """``data_dir``, else ``$METALEARNER_DATA``, else ``~/.local/share/metalearner``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if env := os.environ.get("METALEARNER_DATA"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "metalearner"


def omniglot_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/omniglot``, or the root itself when the files sit directly in it."""
    root = data_root(data_dir)
    direct = any((root / f"{s}{ext}").exists() for s in SETS for ext in (".zip", ""))
    return root if direct and not (root / "omniglot").is_dir() else root / "omniglot"


def load_omniglot(
    data_dir: Path | str | None = None,
    *,
    size: int | tuple[int, int] = 28,
    resample: str = "lanczos",
    download: bool = False,
    use_cache: bool = True,
) -> Omniglot:
    """Loads all of Omniglot, decoding the PNGs only the first time (then from the cache).

    Args:
        data_dir: folder holding ``omniglot/`` (default: ``$METALEARNER_DATA``).
        size: stored image side (28 as in MAML) or ``(height, width)``.
        resample: ``"lanczos"`` (as MAML) or ``"box"``.
        download: fetch missing zips from the canonical source first (md5-checked).
        use_cache: read and write the decoded ``.npz`` cache (see :mod:`.cache`).

    Raises:
        DataError: the files are missing (saying where to put them), not in the Omniglot
            layout, or an image is unreadable (naming it).

    Example:
        >>> omni = load_omniglot("/data")
        >>> omni.data.x.shape, len(omni.background), len(omni.evaluation)
        (torch.Size([32460, 1, 28, 28]), 964, 659)
    """
    folder = omniglot_dir(data_dir)
    settings = ImageSettings.of(size, invert=True, resample=resample)
    sources = {s: _find(folder, s) for s in SETS}
    missing = [s for s, src in sources.items() if src is None]
    if missing and download:
        download_omniglot(folder, files=[f"{s}.zip" for s in missing])
        sources = {s: _find(folder, s) for s in SETS}
        missing = [s for s, src in sources.items() if src is None]
    if missing:
        raise DataError(
            f"Omniglot's {' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} not in "
            f"{folder}: put "
            f"{', '.join(f'{s}.zip' for s in missing)} (or the extracted folder) there, point "
            "--data-dir or METALEARNER_DATA at the folder that holds omniglot/, or fetch them "
            "with `metalearner tasks demo --dataset omniglot --download` (same --data-dir)."
        )
    found = {s: src for s, src in sources.items() if src is not None}
    # A zip is hashed as one file; listing its 20,000 entries is left to a cache miss.
    files = [
        pair
        for src in found.values()
        for pair in ([(src.name, src)] if src.is_file() else [(n, src / n) for n in list_tree(src)])
    ]
    key = cache.cache_key("omniglot", cache.source_digest(files), settings.as_dict())
    arrays = cache.cached(
        "omniglot",
        key,
        lambda: _decode(found, settings),
        required=("x", "y", "class_names", "groups", "background"),
        enabled=use_cache,
        check=lambda a: _consistent(a, settings),
        what=f"Omniglot's {' and '.join(src.name for src in found.values())}",
    )
    data = LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        y=torch.from_numpy(arrays["y"].astype(np.int64)),
        class_names=tuple(str(n) for n in arrays["class_names"]),
        groups=tuple(str(g) for g in arrays["groups"]),
        name="omniglot",
        preprocessing={**settings.as_dict(), "ink": "high"},
    )
    background = torch.from_numpy(arrays["background"].astype(bool))
    return Omniglot(data, background.nonzero().flatten(), (~background).nonzero().flatten())


def download_omniglot(
    folder: Path | str,
    *,
    files: Sequence[str] = ("images_background.zip", "images_evaluation.zip"),
    urls: Mapping[str, str] | None = None,
    md5: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Downloads Omniglot's zips into ``folder``, checking each against its original md5.

    Files already there are kept. Each download goes to a temporary file in ``folder`` and is
    renamed only once its md5 matches, so an interrupted or corrupted download leaves nothing.

    Args:
        folder: the ``omniglot`` folder to fill (e.g. ``<data-dir>/omniglot``).
        files: which of :data:`URLS` to fetch.
        urls: overrides of :data:`URLS` (e.g. a mirror).
        md5: overrides of :data:`MD5`.
        timeout: seconds to wait on the server.

    Raises:
        DataError: the server is unreachable, or a file's md5 differs.
    """
    folder = Path(folder)
    urls, md5 = {**URLS, **(urls or {})}, {**MD5, **(md5 or {})}
    out = []
    for name in files:
        out.append(cache.fetch_missing(folder / name, urls[name], md5=md5[name], timeout=timeout))
    return out


def _consistent(arrays: cache.Arrays, settings: ImageSettings) -> bool:
    """Whether cached arrays agree with each other and the settings (not someone else's file)."""
    x, y, n = arrays["x"], arrays["y"], len(arrays["class_names"])
    return (
        x.dtype == np.uint8
        and x.shape[1:] == (1, *settings.size)
        and y.shape == x.shape[:1]
        and len(arrays["groups"]) == len(arrays["background"]) == n
        and (y.size == 0 or 0 <= int(y.min()) <= int(y.max()) < n)
    )


def _find(folder: Path, part: str) -> Path | None:
    """The zip of one half of Omniglot, else its extracted folder (a zip hashes faster)."""
    for path in (folder / f"{part}.zip", folder / part):
        if path.exists():
            return path
    return None


def _list(source: Path) -> tuple[list[str], list[str]]:
    """Files of one half (zip or folder) and their ``<Alphabet>/<character>/<drawing>.png``."""
    members = list_tree(source)
    # The original zips hold one top folder named like the zip; extracted folders do not.
    names = [n.removeprefix(f"{source.stem}/") for n in members]
    wrong = [n for n in names if n.count("/") != 2 or not n.lower().endswith(".png")]
    if wrong or not names:
        found = f"holds {wrong[0]!r}" if wrong else "holds no images"
        raise DataError(
            f"{source} {found}, not the Omniglot layout <Alphabet>/<character>/<drawing>.png; "
            "use the original images_background.zip / images_evaluation.zip."
        )
    return members, names


def _decode(sources: Mapping[str, Path], settings: ImageSettings) -> cache.Arrays:
    """Decodes both halves: one image array, a class id per image, names, groups, halves."""
    xs, ys, groups, background = [], [], [], []
    names: list[str] = []
    for part, source in sources.items():
        members, entries = _list(source)
        logger.info("Decoding %d Omniglot images from %s (once; then cached)", len(entries), source)
        raw = read_tree(source, members)
        labels = [n.rsplit("/", 1)[0] for n in entries]
        classes = sorted(set(labels))
        ids = {c: len(names) + i for i, c in enumerate(classes)}
        xs.append(decode_many(raw, settings, names=[f"{source}/{n}" for n in members]))
        ys.append(np.array([ids[c] for c in labels], dtype=np.int64))
        names += classes
        groups += [c.split("/")[0] for c in classes]
        background += [part == "images_background"] * len(classes)
    return {
        "x": np.concatenate(xs),
        "y": np.concatenate(ys),
        "class_names": np.array(names, dtype=str),
        "groups": np.array(groups, dtype=str),
        "background": np.array(background, dtype=bool),
    }
