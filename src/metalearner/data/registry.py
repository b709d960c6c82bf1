"""Datasets by name, for the command line: one place maps a name to its loader and split."""

from __future__ import annotations

from pathlib import Path

from metalearner.data.folder import load_image_folder, load_table
from metalearner.data.labeled import LabeledSet

DATASETS = ("sinusoid", "omniglot", "folder", "fewrel")
"""Names ``--dataset`` accepts."""


def load_user_data(path: Path) -> LabeledSet:
    """A folder of class sub-folders of images, or a ``.csv``/``.npz`` table."""
    if path.suffix.lower() in {".csv", ".npz"}:
        return load_table(path)
    return load_image_folder(path)
