"""FewRel relation classification: sentences with a head and a tail entity, one class a relation.

Read from ``<data-dir>/fewrel/`` in the FewRel JSON format, ``{relation_id: [{"tokens": [...],
"h": [name, id, [[positions]]], "t": [...]}, ...]}``, with relation names from ``pid2name.json``
when it is there (both read and checked by :mod:`metalearner.data.fewrel_json`). Sentences are
encoded by :mod:`metalearner.data.text` with a vocabulary of the meta-training sentences only
(textcnn), or, for a pretrained encoder, by its own tokenizer with the entities marked
(:mod:`metalearner.data.subwords`), once: the encoded split is cached like Omniglot's images
(:mod:`metalearner.data.cache`), keyed on the encoding (the tokenizer's whole content, not its
path). Splits (``data.split``):

- ``wiki`` (default): the 16 relations of ``val_wiki.json`` (FewRel 1.0's public validation set;
  its 64 training relations are not redistributed with this project), shuffled with
  ``split_seed``: the first ``meta_train`` (10) for meta-training, the other 6 for meta-test.
  With seed 0 the test relations are P155 (follows), P177 (crosses), P2094 (competition
  class), P25 (mother), P364 (original language of film or TV show) and P921 (main subject).
- ``pubmed``: the same meta-training (same relations, sentences and vocabulary, so a model
  trained on either split is the same), tested on the 10 PubMed relations of FewRel 2.0's
  ``val_pubmed.json``: a cross-domain test (biomedical text, mostly unknown words).
- ``official``: for the full FewRel: the 64 relations of ``train_wiki.json`` for meta-training,
  the 16 of ``val_wiki.json`` for meta-test (the official test set has never been public).

Validation: with ``val`` 0 (FewRel's default) a seventh of each meta-training relation's sentences
(100 of 700) is held out, never trained on, and each such part is a validation class of its own;
16 relations cannot spare the 5 that 5-way validation tasks would need. With ``val`` >= the task's
ways, that many meta-training relations are held out instead (as Omniglot's Vinyals split does).

References:
    Han et al., "FewRel: A Large-Scale Supervised Few-Shot Relation Classification Dataset with
    State-of-the-Art Evaluation", EMNLP 2018. Gao et al., "FewRel 2.0: Towards More Challenging
    Few-Shot Relation Classification", EMNLP-IJCNLP 2019 (the PubMed domain-adaptation set).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from metalearner.data import cache
from metalearner.data.fewrel_json import NAMES, Relation, load_relations, relation_names
from metalearner.data.labeled import LabeledSet
from metalearner.data.omniglot import data_root
from metalearner.data.splits import ClassSplit
from metalearner.data.subwords import SubwordEncoding
from metalearner.data.text import MIN_COUNT, Vocabulary, encode, text_preprocessing
from metalearner.errors import ConfigError, DataError

WIKI, PUBMED, TRAIN = "val_wiki.json", "val_pubmed.json", "train_wiki.json"
SPLITS = ("wiki", "pubmed", "official")
HELD_OUT = 7  # with val = 0: 1 sentence in 7 of each meta-training relation validates


def fewrel_dir(data_dir: Path | str | None = None) -> Path:
    """``<root>/fewrel``, or the root itself when the JSON files sit directly in it."""
    root = data_root(data_dir)
    return root if (root / WIKI).is_file() and not (root / "fewrel").is_dir() else root / "fewrel"


def load_fewrel(
    data_dir: Path | str | None = None,
    *,
    split: str = "wiki",
    meta_train: int | None = None,
    val: int = 0,
    seed: int = 0,
    max_length: int = 40,
    encoding: SubwordEncoding | None = None,
) -> tuple[LabeledSet, ClassSplit]:
    """The encoded sentences of ``split`` and its class split (see the module doc).

    Args:
        data_dir: folder holding ``fewrel/`` (default: ``$METALEARNER_DATA``).
        split: ``wiki``, ``pubmed`` or ``official``.
        meta_train: relations for meta-training and validation (None: 10, official: all 64).
        val: validation relations among them; 0 holds out sentences instead.
        seed: shuffles the relations before they are split (fixed: the same on every machine).
        max_length: tokens per encoded sentence (words; with ``encoding``, its own).
        encoding: a pretrained encoder's tokenizer and entity markers (``None``: words of a
            vocabulary of the meta-training sentences, for textcnn).

    Raises:
        DataError: a file is missing or malformed (naming the file, relation and record).
        ConfigError: the split sizes do not fit the relations.

    Example:
        >>> data, split = load_fewrel("/data")
        >>> data.x.shape, split.sizes()
        (torch.Size([11200, 3, 40]), {'train': 10, 'val': 10, 'test': 6})
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown FewRel split {split!r}; use one of {', '.join(SPLITS)}.")
    folder = fewrel_dir(data_dir)
    sources = _sources(folder, split)
    if encoding is not None:
        max_length = encoding.max_length
    settings: dict[str, object] = {
        "split": split, "meta_train": meta_train, "val": val, "seed": seed,
        "max_length": max_length, "held_out": HELD_OUT, "min_count": MIN_COUNT,
    }  # fmt: skip
    if encoding is not None:  # a word vocabulary's key is as it always was
        settings["encoding"] = encoding.fingerprint()
    decode = partial(_decode, folder, split, meta_train=meta_train, val=val, seed=seed,
                     max_length=max_length, encoding=encoding)  # fmt: skip
    files = " and ".join(p.name for p in sources if p.name != NAMES)
    how = "" if encoding is None else f" with the tokenizer of {encoding.tokenizer}"
    arrays = cache.cached(
        "fewrel",
        cache.cache_key("fewrel", cache.source_digest((p.name, p) for p in sources), settings),
        decode,
        required=_ARRAYS,
        check=lambda a: _consistent(a, max_length),
        what=f"FewRel's {files}{how}",
    )
    if encoding is None:
        preprocessing = text_preprocessing(
            Vocabulary([str(w) for w in arrays["vocabulary"]]), max_length
        )
    else:
        preprocessing = encoding.record()
    data = LabeledSet(
        torch.from_numpy(np.ascontiguousarray(arrays["x"])),
        torch.from_numpy(arrays["y"].astype(np.int64)),
        tuple(str(n) for n in arrays["class_names"]),
        tuple(str(g) for g in arrays["groups"]),
        name=f"FewRel ({split})",
        preprocessing=preprocessing,
    )
    ids = torch.arange(len(data.class_names))
    a, b = (int(n) for n in np.cumsum(arrays["parts"][:2]))
    return data, ClassSplit(train=ids[:a], val=ids[a:b], test=ids[b:])


_ARRAYS = ("x", "y", "class_names", "groups", "vocabulary", "parts")
"""What a FewRel cache file holds: the encoded sentences, their classes, the vocabulary, and
how many classes are for training, validation and test (in that order)."""


def _sources(folder: Path, split: str) -> list[Path]:
    """The files ``split`` is read from (the relation names too, where they are)."""
    files = [_need(folder, WIKI, split)]
    files += [_need(folder, TRAIN, split)] if split == "official" else []
    files += [_need(folder, PUBMED, split)] if split == "pubmed" else []
    return files + ([folder / NAMES] if (folder / NAMES).is_file() else [])


def _decode(
    folder: Path,
    split: str,
    *,
    meta_train: int | None,
    val: int,
    seed: int,
    max_length: int,
    encoding: SubwordEncoding | None,
) -> cache.Arrays:
    """Reads, checks, splits and encodes the sentences of ``split`` (see :func:`load_fewrel`)."""
    names = relation_names(folder)
    wiki = _shuffled(load_relations(folder / WIKI, "wiki", names), seed)
    if split == "official":
        pool, test = _shuffled(load_relations(folder / TRAIN, "wiki", names), seed), wiki
    else:
        pool, test = wiki, []
    size = meta_train if meta_train is not None else (len(pool) if split == "official" else 10)
    limit = len(pool) if split == "official" else len(pool) - 1  # wiki: leave test relations
    if not 0 <= val < size <= limit:
        raise ConfigError(
            f"FewRel split {split!r} has {len(pool)} relations to draw from; set "
            f"data.meta_train_classes to at most {limit} and above data.val_classes ({val})."
        )
    meta = pool[:size]
    if split == "wiki":
        test = pool[size:]
    elif split == "pubmed":
        test = load_relations(folder / PUBMED, "pubmed", names)
    train, held = _validation(meta, val, seed)
    classes = [*train, *held, *test]
    sentences = [s for r in classes for s in r.sentences]
    if encoding is None:
        vocab = Vocabulary.build(s.tokens for r in train for s in r.sentences)
        x, words = encode(sentences, vocab, max_length), vocab.words
    else:  # the encoder's own tokenizer: no vocabulary of ours
        x, words = encoding.encode(sentences), ()
    return {
        "x": x.numpy(),
        "y": np.concatenate([np.full(len(r.sentences), i) for i, r in enumerate(classes)]),
        "class_names": np.array([r.name for r in classes], dtype=str),
        "groups": np.array([r.domain for r in classes], dtype=str),
        "vocabulary": np.array(words, dtype=str),
        "parts": np.array([len(train), len(held), len(test)], dtype=np.int64),
    }


def _consistent(arrays: cache.Arrays, max_length: int) -> bool:
    """Whether cached arrays agree with each other and the settings (not someone else's file)."""
    x, y, n = arrays["x"], arrays["y"], len(arrays["class_names"])
    return (
        x.shape[1:] == (3, max_length)
        and y.shape == x.shape[:1]
        and len(arrays["groups"]) == int(arrays["parts"].sum()) == n
        and (y.size == 0 or 0 <= int(y.min()) <= int(y.max()) < n)
    )


def _need(folder: Path, file: str, split: str) -> Path:
    path = folder / file
    if not path.is_file():
        raise DataError(
            f"FewRel's {file} (needed by split {split!r}) is not in {folder}; put the FewRel "
            "JSON files there, or point --data-dir or METALEARNER_DATA at the folder that holds "
            "fewrel/."
        )
    return path


def _shuffled(relations: list[Relation], seed: int) -> list[Relation]:
    order = torch.randperm(len(relations), generator=torch.Generator().manual_seed(seed))
    return [relations[i] for i in order.tolist()]


def _validation(meta: list[Relation], val: int, seed: int) -> tuple[list[Relation], list[Relation]]:
    """Training relations and validation classes: held-out relations, or held-out sentences."""
    if val > 0:
        return meta[: len(meta) - val], meta[len(meta) - val :]
    g = torch.Generator().manual_seed(seed)
    train, held = [], []
    for r in meta:
        order = torch.randperm(len(r.sentences), generator=g).tolist()
        cut = len(order) // HELD_OUT
        held.append(
            Relation(
                r.id,
                f"{r.name}, held-out sentences",
                r.domain,
                tuple(r.sentences[i] for i in sorted(order[:cut])),
            )
        )
        train.append(
            Relation(r.id, r.name, r.domain, tuple(r.sentences[i] for i in sorted(order[cut:])))
        )
    return train, held
