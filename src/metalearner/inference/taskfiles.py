"""A new task from a user's files, for ``metalearner adapt``: support and query sets.

Support: a folder with one sub-folder per class (the folder names are the class names), or a CSV
with a label column. Query: a folder (of images, or of class sub-folders when the answers are
known), image files, or a CSV with or without the label column. What a CSV holds depends on the
model: feature columns for a model trained on a table (the same columns as in training, any
order), one column of image paths (relative to the CSV) for an image model, one input column
for a regression model. A text model reads sentences from a CSV or JSON-lines file
(:mod:`metalearner.inference.textfiles`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearner.data.folder import csv_number, read_csv_rows
from metalearner.data.images import IMAGE_SUFFIXES, list_tree
from metalearner.errors import DataError
from metalearner.inference.learner import Learner


@dataclass(frozen=True)
class TaskFiles:
    """Inputs and labels read from files.

    Attributes:
        x: what :meth:`metalearner.inference.learner.Learner.prepare` takes: image paths, or a float
            tensor of table rows.
        labels: one label per item (class names, or regression targets as text), or ``None``
            for an unlabeled query set.
        names: how each item is named in the output (a file path or ``file:line``).
    """

    x: Any
    labels: list[str] | None
    names: list[str]


def read_support(path: Path, learner: Learner, *, label: str = "label") -> TaskFiles:
    """The support set at ``path``: a folder of class sub-folders, or a CSV with ``label``.

    Raises:
        DataError: the path is missing, a class folder has no images, or the CSV does not fit
            the model (one sentence naming the file and what to change).
    """
    files = read_items([path], learner, label=label, what="support")
    if files.labels is None:
        kind = (
            "a CSV or JSON-lines file"
            if learner.text
            else "a folder with one sub-folder per class, or a CSV"
        )
        raise DataError(
            f"The support set {path} has no labels; give {kind} with a {label!r} column."
        )
    return files


def read_items(
    paths: Sequence[Path], learner: Learner, *, label: str = "label", what: str = "query"
) -> TaskFiles:
    """Items from a folder, a list of image files or a CSV; labeled where the layout says so.

    Raises:
        DataError: a path is missing, a folder has no images, or a CSV does not fit the model.
    """
    if not paths:
        raise DataError(f"No {what} given; give a folder, image files or a CSV.")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataError(f"The {what} path {missing[0]} does not exist; check its spelling.")
    if learner.text:
        from metalearner.inference.textfiles import read_text_items

        return TaskFiles(*read_text_items(paths, learner.preprocessing, label=label, what=what))
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        return _read_csv(paths[0], learner, label, what)
    if len(paths) == 1 and paths[0].is_dir():
        return _read_folder(paths[0], learner, what)
    folders = [p for p in paths if p.is_dir()]
    if folders:
        raise DataError(
            f"{folders[0]} is a folder among files; give one folder, or image files only."
        )
    _require_images(learner, paths[0])
    return TaskFiles([str(p) for p in paths], None, [str(p) for p in paths])


def _read_folder(root: Path, learner: Learner, what: str) -> TaskFiles:
    _require_images(learner, root)
    files = [n for n in list_tree(root) if n.lower().endswith(IMAGE_SUFFIXES)]
    nested = [n for n in files if "/" in n]
    flat = [n for n in files if "/" not in n]
    if nested and flat:
        raise DataError(
            f"{root} holds images both directly and in sub-folders ({flat[0]}, {nested[0]}); "
            "put every image in a class sub-folder, or none."
        )
    classes = sorted(
        p.name  # a link is skipped by list_tree, with a warning
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    if not files:
        raise DataError(
            f"The {what} folder {root} has no images ({', '.join(IMAGE_SUFFIXES)}); "
            "add images, one sub-folder per class for a support set."
        )
    if nested:
        empty = [c for c in classes if not any(n.startswith(c + "/") for n in nested)]
        if empty:
            raise DataError(
                f"Class folder {root / empty[0]} has no images; add images to it or remove it."
            )
        labels = [n.split("/", 1)[0] for n in nested]
        return TaskFiles([str(root / n) for n in nested], labels, nested)
    return TaskFiles([str(root / n) for n in flat], None, flat)


def _read_csv(file: Path, learner: Learner, label: str, what: str) -> TaskFiles:
    header, rows = read_csv_rows(file)
    labels = [r[header.index(label)].strip() for _, r in rows] if label in header else None
    inputs = [h for h in header if h != label]
    names = [f"{file.name}:{line}" for line, _ in rows]
    if learner.images:
        if len(inputs) != 1:
            raise DataError(
                f"{file} has columns {', '.join(header)}; for this image model give one column "
                f"of image paths and, for a support set, a {label!r} column."
            )
        col = header.index(inputs[0])
        paths = [str((file.parent / r[col].strip()).expanduser()) for _, r in rows]
        return TaskFiles(paths, labels, names)
    expected = learner.preprocessing.get("columns")
    if expected is None:  # a regression model, or a table model trained from an .npz
        expected = inputs if len(inputs) == learner.input_shape[0] else None
    if expected is None or sorted(inputs) != sorted(expected):
        want = ", ".join(expected) if expected else f"{learner.input_shape[0]} input column(s)"
        raise DataError(
            f"{file} has feature columns {', '.join(inputs) or 'none'}, but the model was "
            f"trained on {want}; give a CSV with those columns (and {label!r} for labels)."
        )
    x = torch.empty(len(rows), len(expected))
    for i, (line, row) in enumerate(rows):
        for j, column in enumerate(expected):
            x[i, j] = csv_number(file, line, column, row[header.index(column)].strip())
    if learner.kind == "regression" and labels is not None:
        bad = next((v for v in labels if not math.isfinite(_number(v))), None)
        if bad is not None:
            raise DataError(f"{file} has target {bad!r} in {label!r}; targets must be numbers.")
    return TaskFiles(x, labels, names)


def _require_images(learner: Learner, path: Path) -> None:
    if not learner.images:
        raise DataError(
            f"{path} is images, but this model takes rows of numbers; give a CSV with the "
            "columns it was trained on."
        )


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan
