"""A user's own data: a folder of class sub-folders of images, or a table with a label column.

Both become a :class:`~metalearner.tasks.LabeledSet`, so a new task is sampled, adapted on and
scored exactly like Omniglot. Class ids follow the sorted class names, so the same data always
gets the same ids.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from metalearner.data import cache
from metalearner.data.images import IMAGE_SUFFIXES, ImageSettings, decode_many, list_tree
from metalearner.data.labeled import LabeledSet
from metalearner.errors import DataError

_NPZ_ERRORS = (OSError, EOFError, KeyError, zipfile.BadZipFile)
_ANNOUNCED = 2000  # images: fewer decode in about a second, too soon for a line saying why


def load_image_folder(
    path: Path | str,
    *,
    size: int | tuple[int, int] = 28,
    channels: int = 1,
    invert: bool = False,
    resample: str = "lanczos",
    use_cache: bool = True,
) -> LabeledSet:
    """Loads ``path/<class>/<image>`` files of any size and mode into one ``uint8`` tensor.

    Images directly in ``path`` and files without an image ending (``.png``, ``.jpg``, ...) are
    ignored; hidden files too. Decoded images are cached like Omniglot's (keyed by the files'
    bytes and the settings), so a large folder is decoded once.

    Args:
        path: the folder; its sub-folders are the classes, named after them (sorted).
        size: stored image side or ``(height, width)``; images are resized with antialiasing.
        channels: 1 (grey) or 3 (RGB); images are converted to it.
        invert: store ``255 - value``; use it for dark drawings on a light background (like
            Omniglot) so the ink is high and the background 0.
        resample: ``"lanczos"`` or ``"box"``.
        use_cache: read and write the decoded ``.npz`` cache.

    Raises:
        DataError: the folder is missing or has no class sub-folders, a class folder has no
            images, or an image is unreadable (naming it).

    Example:
        >>> data = load_image_folder("my_photos", size=84, channels=3)
        >>> data.x.shape, data.class_names
        (torch.Size([40, 3, 84, 84]), ('cat', 'dog'))
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give a folder with one sub-folder per class.")
    settings = ImageSettings.of(size, channels=channels, invert=invert, resample=resample)
    files = [n for n in list_tree(root) if n.count("/") >= 1 and n.lower().endswith(IMAGE_SUFFIXES)]
    broken = next((n for n in files if not (root / n).exists()), None)  # a dangling link
    if broken is not None:
        raise DataError(
            f"{root / broken} is a link to {os.readlink(root / broken)}, which does not exist; "
            "fix the link or delete it."
        )
    classes = sorted({n.split("/", 1)[0] for n in files})
    empty = sorted(
        p.name  # a link is skipped by list_tree, with a warning
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    empty = [c for c in empty if c not in classes]
    if empty:
        raise DataError(
            f"Class folder {root / empty[0]} has no images ({', '.join(IMAGE_SUFFIXES)}); "
            "add images to it or remove it."
        )
    if not classes:
        raise DataError(
            f"{root} has no class sub-folders with images; make one sub-folder per class and "
            "put that class's images in it."
        )
    ids = {c: i for i, c in enumerate(classes)}
    key = cache.cache_key(
        "folder", cache.source_digest((n, root / n) for n in files), settings.as_dict()
    )

    def build() -> cache.Arrays:
        x = decode_many([root / n for n in files], settings, names=[str(root / n) for n in files])
        return {"x": x, "y": np.array([ids[n.split("/", 1)[0]] for n in files], dtype=np.int64)}

    arrays = cache.cached(
        "folder",
        key,
        build,
        required=("x", "y"),
        enabled=use_cache,
        check=lambda a: a["x"].shape == (len(files), channels, *settings.size),
        what=f"the {len(files)} images of {root}" if len(files) >= _ANNOUNCED else None,
    )
    return LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        y=torch.from_numpy(arrays["y"].astype(np.int64)),
        class_names=tuple(classes),
        name=str(root),
        preprocessing=settings.as_dict(),
    )


def load_table(path: Path | str, *, label: str = "label") -> LabeledSet:
    """Loads tabular data: a CSV with a header and a label column, or an ``.npz`` with x and y.

    In a CSV, every column but ``label`` is a numeric feature; labels may be names or numbers.
    An ``.npz`` holds ``x`` (``[M, ...]`` numbers) and ``y`` (``[M]`` labels); it is read with
    ``allow_pickle=False``, so it never executes code. Features become ``float32``.

    Args:
        path: a ``.csv`` or ``.npz`` file.
        label: the CSV's label column.

    Raises:
        DataError: the file is missing or unreadable, a column name is repeated or blank, the
            label column is missing (listing the columns there are), a row is ragged, has no
            label or a feature that is not a finite number (naming the line and column), or
            the ``.npz`` lacks ``x``/``y`` or their lengths differ.

    Example:
        >>> data = load_table("flowers.csv", label="species")
        >>> data.x.dtype, data.class_names
        (torch.float32, ('setosa', 'versicolor', 'virginica'))
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{file} does not exist; give the path of a .csv or .npz file.")
    columns: list[str] | None = None
    if file.suffix.lower() == ".npz":
        x, labels = _read_npz(file)
    elif file.suffix.lower() == ".csv":
        x, labels, columns = _read_csv(file, label)
    else:
        raise DataError(f"{file} is neither .csv nor .npz; convert the table to one of them.")
    # Numeric labels sort as numbers (2 before 10); names sort as text.
    numeric = all(_is_number(v) for v in labels)
    classes = sorted(set(labels), key=(lambda v: (float(v), v)) if numeric else None)
    ids = {c: i for i, c in enumerate(classes)}
    return LabeledSet(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y=torch.tensor([ids[v] for v in labels], dtype=torch.int64),
        class_names=tuple(classes),
        name=str(file),
        preprocessing={
            "kind": "table",
            "features": int(np.prod(x.shape[1:])),
            "dtype": "float32",
            # A new task's CSV must have these feature columns (any order); None for .npz.
            "columns": columns,
            "label": label if columns is not None else None,
        },
    )


def read_csv_rows(file: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV's header and its non-blank rows with their line numbers, checked for shape.

    Raises:
        DataError: the file is unreadable or empty, two columns have the same name (which one a
            name means would be a guess), a row is ragged (naming its line), or there are no
            rows.
    """
    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            table = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"Cannot read {file} ({err}); save it as a UTF-8 CSV.") from None
    if not table:
        raise DataError(f"{file} is empty; give a CSV with a header row and one row per example.")
    header = [h.strip() for h in table[0]]
    first: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if name and name in first:
            raise DataError(
                f"{file} has two columns named {name!r} (columns {first[name]} and {number}); "
                "rename one, so that each column has its own name."
            )
        first.setdefault(name, number)
    rows = []
    for line, row in enumerate(table[1:], start=2):
        if not any(v.strip() for v in row):
            continue  # blank lines, often at the end of a file
        if len(row) != len(header):
            raise DataError(
                f"{file} line {line} has {len(row)} values but the header has {len(header)}; "
                "give every row one value per column."
            )
        rows.append((line, row))
    if not rows:
        raise DataError(f"{file} has a header but no rows; add one row per example.")
    return header, rows


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def csv_number(file: Path, line: int, column: str, value: str) -> float:
    """``value`` as a finite number that a ``float32`` holds, or a DataError naming the file,
    line and column."""
    number = float(value) if _is_number(value) else math.nan
    if not math.isfinite(number):
        raise DataError(
            f"{file} line {line}, column {column!r} is {value!r}, not a finite number; fix "
            "that value (features must be numbers)."
        )
    if abs(number) > _FLOAT32_MAX:
        raise DataError(
            f"{file} line {line}, column {column!r} is {value!r}, out of range (features are "
            f"float32, at most {_FLOAT32_MAX:.3g} in size); scale that column down."
        )
    return number


def _read_csv(file: Path, label: str) -> tuple[np.ndarray, list[str], list[str]]:
    header, rows = read_csv_rows(file)
    if "" in header:  # a feature without a name: often an index column, not a feature at all
        raise DataError(
            f"{file} column {header.index('') + 1} has no name in the header; name it, or remove "
            "it if it numbers the rows (pandas writes its index so unless given index=False)."
        )
    if label not in header:
        raise DataError(
            f"{file} has no label column {label!r} (its columns are {', '.join(header)}); "
            f"rename the column that holds the class labels to {label!r}."
        )
    col = header.index(label)
    features = [h for i, h in enumerate(header) if i != col]
    if not features:
        raise DataError(f"{file} has only the label column; add feature columns.")
    x = np.empty((len(rows), len(features)), dtype=np.float32)
    labels = [row[col].strip() for _, row in rows]
    if "" in labels:  # would become a class named ''
        line = rows[labels.index("")][0]
        raise DataError(
            f"{file} line {line} has no label (column {label!r} is empty); give every row its "
            "class, or remove the row."
        )
    for n, (line, row) in enumerate(rows):
        values = [v for i, v in enumerate(row) if i != col]
        for j, value in enumerate(values):
            x[n, j] = csv_number(file, line, features[j], value)
    return x, labels, features


def _read_npz(file: Path) -> tuple[np.ndarray, list[str]]:
    # numpy reads a file that is no zip as a pickle, and says so; name the real problem.
    if not zipfile.is_zipfile(file):
        raise DataError(
            f"{file} is not a valid .npz file (not a zip of arrays); save it with "
            "numpy.savez(file, x=features, y=labels)."
        )
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        if "allow_pickle" not in str(err):
            raise DataError(
                f"Cannot read {file} ({err}); save it again with numpy.savez."
            ) from None
        raise DataError(
            f"{file} holds object arrays, which are not loaded because they could run code; "
            "save x and y as arrays of numbers (or strings) with numpy.savez."
        ) from None
    except _NPZ_ERRORS as err:
        raise DataError(
            f"Cannot read {file} ({err}); save it with numpy.savez(file, x=..., y=...)."
        ) from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(
            f"{file} holds {', '.join(arrays) or 'no arrays'}, not x and y; save it with "
            "numpy.savez(file, x=features, y=labels)."
        )
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or x.ndim < 1 or len(x) != len(y):
        raise DataError(
            f"{file} has x of shape {x.shape} and y of shape {y.shape}; give one label per row "
            "of x (y of shape [M])."
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or not np.isfinite(x).all():
        raise DataError(f"{file} has x that is not all finite numbers; clean x and save it again.")
    return x.astype(np.float32), [str(v) for v in y.tolist()]


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
