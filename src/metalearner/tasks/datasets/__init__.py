"""Loaders that decode a dataset once into an in-memory :class:`LabeledSet`."""

from metalearner.tasks.datasets.fewrel import fewrel_dir, load_fewrel
from metalearner.tasks.datasets.folder import load_image_folder, load_table
from metalearner.tasks.datasets.lake import export_lake_runs, load_lake_runs
from metalearner.tasks.datasets.omniglot import (
    Omniglot,
    download_omniglot,
    lake_split,
    load_omniglot,
    omniglot_split,
    vinyals_split,
)

__all__ = [
    "Omniglot",
    "download_omniglot",
    "export_lake_runs",
    "fewrel_dir",
    "lake_split",
    "load_fewrel",
    "load_image_folder",
    "load_lake_runs",
    "load_omniglot",
    "load_table",
    "omniglot_split",
    "vinyals_split",
]
