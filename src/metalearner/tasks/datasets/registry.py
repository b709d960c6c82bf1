"""Datasets by name, for the command line: one place maps a name to its loader and split."""

from __future__ import annotations

from pathlib import Path

import torch

from metalearner.errors import ConfigError
from metalearner.tasks.datasets.folder import load_image_folder, load_table
from metalearner.tasks.datasets.omniglot import load_omniglot, vinyals_split
from metalearner.tasks.episodes import EpisodeSampler
from metalearner.tasks.labeled import LabeledSet

DATASETS = ("sinusoid", "omniglot", "folder", "fewrel")
"""Names ``--dataset`` accepts."""


def load_user_data(path: Path) -> LabeledSet:
    """A folder of class sub-folders of images, or a ``.csv``/``.npz`` table."""
    if path.suffix.lower() in {".csv", ".npz"}:
        return load_table(path)
    return load_image_folder(path)


def load_for_demo(
    dataset: str,
    *,
    data_dir: Path | None,
    path: Path | None,
    ways: int,
    shots: int,
    queries: int,
    download: bool = False,
) -> tuple[LabeledSet, EpisodeSampler]:
    """The labeled set and an episode sampler for ``metalearner tasks demo``.

    Omniglot and FewRel episodes come from their meta-test classes (Vinyals split, wiki split),
    a user's data from all of its classes.
    """
    if dataset == "fewrel":
        from metalearner.tasks.datasets.fewrel import load_fewrel

        data, split = load_fewrel(data_dir)
        classes = split.test
    elif dataset == "omniglot":
        omniglot = load_omniglot(data_dir, download=download)
        split = vinyals_split(omniglot)
        data, classes = omniglot.data, split.test
    elif dataset == "folder":
        if path is None:
            raise ConfigError(
                "--dataset folder needs --path: a folder of class sub-folders or a CSV/.npz table."
            )
        data = load_user_data(path)
        classes = torch.arange(data.num_classes)
    else:
        raise ConfigError(f"Unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}.")
    return data, EpisodeSampler(data, classes, ways=ways, shots=shots, queries=queries)
