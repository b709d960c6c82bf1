"""Datasets: the registry of what each dataset is, and loaders that decode it once into an
in-memory :class:`LabeledSet` with class splits.
"""

from metalearner.data.config import DataConfig
from metalearner.data.fewrel import fewrel_dir, load_fewrel
from metalearner.data.folder import load_image_folder, load_table
from metalearner.data.labeled import LabeledSet, model_input, to_float
from metalearner.data.omniglot import Omniglot, download_omniglot, load_omniglot
from metalearner.data.omniglot_splits import (
    alphabet_split,
    lake_split,
    omniglot_split,
    vinyals_split,
)
from metalearner.data.registry import CrossDomain, Dataset, dataset, names, register
from metalearner.data.splits import ClassSplit, random_split

__all__ = [
    "ClassSplit",
    "CrossDomain",
    "DataConfig",
    "Dataset",
    "LabeledSet",
    "Omniglot",
    "alphabet_split",
    "dataset",
    "download_omniglot",
    "fewrel_dir",
    "lake_split",
    "load_fewrel",
    "load_image_folder",
    "load_omniglot",
    "load_table",
    "model_input",
    "names",
    "omniglot_split",
    "random_split",
    "register",
    "to_float",
    "vinyals_split",
]
