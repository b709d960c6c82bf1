"""Omniglot's published class splits: which characters meta-train, validate and test.

Three protocols use the same 1,623 characters differently: MAML's code shuffles them (1200
meta-train, the rest test); Vinyals et al.'s split, as Snell et al. ship it, keeps alphabets
apart (33 alphabets meta-train, 5 validate, 13 test, one alphabet shared); Lake et al.'s
learns from the 30 background alphabets and tests on the 20 evaluation ones.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (1200 training
    characters, 423 test); Snell et al., "Prototypical Networks for Few-shot Learning",
    NeurIPS 2017 (its split files, jakesnell/prototypical-networks).
    Finn et al., "Model-Agnostic Meta-Learning", ICML 2017 (cbfinn/maml: a shuffle).
    Lake, Salakhutdinov & Tenenbaum, "Human-level concept learning through probabilistic
    program induction", Science 2015 (background vs evaluation alphabets).
"""

from __future__ import annotations

import torch

from metalearner.data.omniglot import Omniglot
from metalearner.data.splits import ClassSplit, random_split, split_list
from metalearner.errors import ConfigError, DataError

SPLITS = ("vinyals", "lake", "vinyals-alphabets")
"""``data.split`` names for Omniglot: MAML's shuffle, Lake et al.'s halves, Vinyals et al.'s
alphabets."""


def vinyals_split(
    omniglot: Omniglot, *, seed: int = 0, meta_train: int = 1200, val: int = 100
) -> ClassSplit:
    """MAML's protocol: ``meta_train`` shuffled characters, the rest for test.

    Both halves of Omniglot are pooled and shuffled with ``seed``; the first ``meta_train``
    characters are for meta-training, of which the last ``val`` are held out for validation
    (MAML's code: 1100 train, 100 val, 423 test). Finn et al. shuffle the characters where
    Vinyals et al. split by alphabet (:func:`alphabet_split`): the sizes are the same, the
    characters are not. Rotations are added afterwards, to the train
    classes only (:func:`metalearner.tasks.with_rotations`).

    Example:
        >>> vinyals_split(load_omniglot("/data"), seed=0).sizes()
        {'train': 1100, 'val': 100, 'test': 423}
    """
    n = omniglot.data.num_classes
    if not 0 <= val <= meta_train <= n:
        raise ConfigError(
            f"meta_train={meta_train}, val={val} do not fit {n} characters; "
            "use 0 <= val <= meta_train <= the number of characters."
        )
    return random_split(n, train=meta_train - val, val=val, seed=seed)


def lake_split(omniglot: Omniglot, *, seed: int = 0, val_alphabets: int = 5) -> ClassSplit:
    """Lake et al.'s protocol: background alphabets to learn from, evaluation alphabets to test.

    The validation slice is ``val_alphabets`` whole background alphabets drawn with ``seed``, so
    validation, like test, measures transfer to unseen alphabets.

    Example:
        >>> lake_split(load_omniglot("/data"), seed=0).sizes()["test"]
        659
    """
    groups = omniglot.data.groups
    alphabets = sorted({groups[c] for c in omniglot.background.tolist()})
    if not 0 <= val_alphabets < len(alphabets):
        raise ConfigError(
            f"val_alphabets={val_alphabets} leaves no training alphabet of the "
            f"{len(alphabets)} background ones; use 0..{len(alphabets) - 1}."
        )
    order = torch.randperm(len(alphabets), generator=torch.Generator().manual_seed(seed))
    held = {alphabets[i] for i in order[:val_alphabets].tolist()}
    is_val = torch.tensor(
        [groups[c] in held for c in omniglot.background.tolist()], dtype=torch.bool
    )
    return ClassSplit(
        train=omniglot.background[~is_val],
        val=omniglot.background[is_val],
        test=omniglot.evaluation,
    )


def alphabet_split(omniglot: Omniglot) -> ClassSplit:
    """Vinyals et al.'s split by alphabet, as Snell et al.'s ProtoNets code ships it.

    1028 meta-training characters (33 alphabets), 172 validation (5 alphabets), 423 test (13
    alphabets; Gurmukhi's 45 characters are shared, 41 train and 4 test), named in the package's
    ``split_lists/omniglot_vinyals_*.txt``. Test characters come from alphabets never trained on.

    Raises:
        DataError: a listed character is missing from the data (not the full Omniglot).

    Example:
        >>> alphabet_split(load_omniglot("/data")).sizes()
        {'train': 1028, 'val': 172, 'test': 423}
    """
    ids = {name: c for c, name in enumerate(omniglot.data.class_names)}
    parts = {}
    for part in ("train", "val", "test"):
        names = split_list(f"omniglot_vinyals_{part}")
        missing = [n for n in names if n not in ids]
        if missing:
            raise DataError(
                f"Omniglot lacks {len(missing)} of the {len(names)} {part} characters of "
                f"Vinyals et al.'s split (first: {missing[0]!r}); it needs both original "
                "halves, images_background and images_evaluation, complete."
            )
        parts[part] = torch.tensor([ids[n] for n in names], dtype=torch.int64)
    return ClassSplit(**parts)


def omniglot_split(omniglot: Omniglot, protocol: str, *, seed: int = 0) -> ClassSplit:
    """The named split (:data:`SPLITS`) with its default sizes."""
    if protocol == "vinyals":
        return vinyals_split(omniglot, seed=seed)
    if protocol == "lake":
        return lake_split(omniglot, seed=seed)
    if protocol == "vinyals-alphabets":
        return alphabet_split(omniglot)
    raise ConfigError(
        f"Unknown Omniglot split {protocol!r}; use {', '.join(repr(s) for s in SPLITS)}."
    )
