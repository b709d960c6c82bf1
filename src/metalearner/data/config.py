"""The ``data`` settings of a run: which tasks to generate, with each dataset's own defaults.

Settings whose sensible value depends on the dataset (the split, the class counts of the split)
default to ``null`` and are resolved here from the dataset's registry entry
(:mod:`metalearner.data.registry`), so the ``config.yaml`` of a run states the values it used:
Omniglot's MAML split keeps 1200 meta-training characters of which 100 validate, FewRel's
``wiki`` split 10 meta-training relations validated on held-out sentences (see
:mod:`metalearner.data.fewrel`).

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (the Omniglot split).
    Han et al., "FewRel", EMNLP 2018; Gao et al., "FewRel 2.0", EMNLP-IJCNLP 2019.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated

from metalearner.config.bounds import CLASSES, EXAMPLES, WAYS, Range, check_bounds
from metalearner.config.settings import check_seed
from metalearner.data.registry import UNSPLIT, dataset
from metalearner.data.text import MAX_LENGTH
from metalearner.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Which tasks to generate.

    ``ways``/``shots``/``queries`` describe the test tasks; a strategy may train on other ways
    (ProtoNets' ``train_ways``), and ``train_queries`` sets the training episodes' queries. For
    sinusoids ``shots`` is K (points per task) and ``ways`` is unused.
    """

    # A registered dataset (metalearner.data.registry): sinusoid, omniglot, folder, fewrel.
    dataset: str = "sinusoid"
    path: str | None = None  # the user's folder or CSV/.npz table, for dataset "folder"
    ways: Annotated[int, WAYS] = 5
    shots: Annotated[int, EXAMPLES] = 1
    queries: Annotated[int, EXAMPLES] = 15
    # Queries per class of the training episodes; null: as many as the test tasks'. Finn et
    # al.'s Omniglot code trains MAML on as many queries a class as shots: more queries in a
    # test task only narrow the confidence interval, in training each costs its passes.
    train_queries: Annotated[int | None, EXAMPLES] = None
    # Training episodes draw their classes from one group (Omniglot: one alphabet, each
    # rotation its own; tiered-ImageNet: one category), as Lake et al.'s within-alphabet runs
    # are built: characters of one alphabet differ less than those of several. Validation and
    # test tasks are unchanged.
    train_within_groups: bool = False
    # Validation tasks drawn within one group too, so that the checkpoint and the adaptation
    # are chosen on the kind of task the run is meant for (Lake's within-alphabet runs) rather
    # than on easier tasks of several groups. Test tasks are unchanged.
    val_within_groups: bool = False
    # The validation classes train too, as the papers' final models were trained (Snell et
    # al.'s code retrains on "trainval" for the epochs its validated run took): for a run whose
    # length was fixed beforehand (a time_budget, or steps read off a validated run). Its
    # validation tasks are then of seen classes, so the run keeps its last checkpoint and
    # chooses no adaptation on them. Needs validation classes (not FewRel's held-out sentences).
    train_on_val: bool = False
    # Omniglot: "vinyals" (MAML's 1200 shuffled characters, the rest test), "lake"
    # (background vs evaluation alphabets) or "vinyals-alphabets" (Vinyals et al.'s split by
    # alphabet as ProtoNets' code ships it: 1028 train / 172 val / 423 test characters).
    # FewRel: "wiki" (10 of val_wiki.json's 16 relations for meta-training, 6 for test),
    # "pubmed" (the same training, tested on FewRel 2.0's PubMed relations) or "official"
    # (train_wiki.json's 64 relations, tested on val_wiki.json's).
    # Folders always use a random class split. null: the dataset's first.
    split: str | None = None
    # Classes for training + validation; null: 1200 (Omniglot, folders), 10 (FewRel; all 64 for
    # "official").
    meta_train_classes: Annotated[int | None, CLASSES] = None
    # The validation part of meta_train_classes; null: 100, or 0 for FewRel, which then
    # validates on held-out sentences of its training relations instead.
    val_classes: Annotated[int | None, CLASSES.at_least(0)] = None
    split_seed: int = 0  # fixes the class split, so it is the same on every machine
    rotations: bool = True  # Omniglot: rotated training characters as new classes
    # Omniglot: validation and test characters rotated too, each rotation a class of its own,
    # as Finn et al.'s and Snell et al.'s code draws their test tasks (4x the test classes;
    # the presets of those papers set it). Off: upright validation and test characters only.
    test_rotations: bool = False
    # Colour images: training examples (episodes and mini-batches) randomly cropped, flipped
    # and colour-jittered, as RFS and MetaOptNet train; never validation or test examples.
    augment: bool = True
    # Pixels of a side of the stored images; null: the dataset's (28 for Omniglot and folders,
    # 84 for mini-ImageNet, tiered-ImageNet and CUB, 32 for CIFAR-FS and FC100).
    image_size: Annotated[int | None, Range(1, 4096)] = None
    # FewRel: tokens per sentence; null: 40 words (the FewRel paper's CNN code), or 128 of a
    # pretrained encoder's tokens (model.name hf; 99% of wiki sentences are shorter).
    max_length: Annotated[int | None, Range(1, 10**4)] = None


def resolve_data(d: DataConfig) -> DataConfig:
    """``d`` with every ``null`` left to the dataset filled in, and its combinations checked.

    Raises:
        ConfigError: an unknown dataset, a split of another dataset, or class counts that
            cannot split.
    """
    entry = dataset(d.dataset, setting="data.dataset")
    known = entry.splits or UNSPLIT
    split = d.split or known[0]
    if split not in known:
        raise ConfigError(
            f"data.split {split!r} is not a split of {d.dataset}; use one of {', '.join(known)}."
        )
    meta, val = entry.class_counts(split, d.meta_train_classes, d.val_classes)
    length = d.max_length if d.max_length is not None else MAX_LENGTH
    side = d.image_size if d.image_size is not None else entry.image_size
    out = dataclasses.replace(
        d, split=split, meta_train_classes=meta, val_classes=val, max_length=length,
        image_size=side,
    )  # fmt: skip
    check_data(out)
    return out


def class_counts(d: DataConfig) -> tuple[int, int]:
    """``(meta_train_classes, val_classes)``, the dataset's defaults where they are ``null``."""
    return dataset(d.dataset).class_counts(d.split, d.meta_train_classes, d.val_classes)


def check_data(d: DataConfig) -> None:
    """Raises ConfigError for a data setting out of range."""
    entry = dataset(d.dataset, setting="data.dataset")
    check_bounds(d, "data.")
    val = d.val_classes
    if entry.held_out_examples and val is not None and 0 < val < d.ways:
        raise ConfigError(
            f"data.val_classes {val} cannot make {d.ways}-way validation tasks; hold out at "
            f"least {d.ways} classes, or 0 to validate on held-out examples of every class."
        )
    if entry.needs_path and not d.path:
        raise ConfigError(f"data.dataset {d.dataset!r} needs data.path: {entry.path_is}.")
    check_seed("data.split_seed", d.split_seed)
    if d.train_on_val and (entry.regression or (entry.held_out_examples and val == 0)):
        kind = "regression tasks" if entry.regression else "held-out examples of its classes"
        raise ConfigError(
            f"data.train_on_val adds validation classes to training, but {d.dataset} "
            f"validates on {kind}; unset data.train_on_val."
        )
    for setting in ("train_within_groups", "val_within_groups"):
        if entry.regression and getattr(d, setting):
            raise ConfigError(
                f"data.{setting} draws tasks within a group of classes, but {d.dataset}'s "
                f"tasks are regression functions; unset data.{setting}."
            )
    held_out = entry.counts_classes(d.split) and not entry.held_out_examples
    if held_out and val is not None and val < d.ways:
        raise ConfigError(
            f"data.val_classes {val} cannot make {d.ways}-way validation tasks; set "
            f"data.val_classes to at least data.ways ({d.ways})."
        )


def training_classes(d: DataConfig) -> int | None:
    """Classes that training tasks draw from (rotated images count as classes), where the
    settings alone fix it (a resolved ``d``); ``None`` where it depends on the data."""
    entry = dataset(d.dataset, setting="data.dataset")
    if d.meta_train_classes is None or d.val_classes is None:
        return None
    if not entry.counts_classes(d.split):
        return None  # regression, or a split the source fixes (Lake's): counted from the data
    if entry.held_out_examples and d.val_classes == 0:
        return d.meta_train_classes  # validates on held-out examples of every class
    train = d.meta_train_classes - (0 if d.train_on_val else d.val_classes)
    return 4 * train if entry.rotations and d.rotations else train  # 3 rotations + the original
