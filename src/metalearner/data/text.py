"""Sentences with two marked entities as fixed-size integer tensors: tokens and positions.

A relation-classification example is a tokenised sentence with a head and a tail entity. It is
encoded as an ``int64`` tensor ``[3, L]``: row 0 the token ids, rows 1 and 2 each token's
relative position to the head and to the tail entity (Zeng et al. 2014's position features).
Such rows go through :class:`~metalearner.tasks.LabeledSet` and the episode sampler unchanged,
exactly like images.

- Tokens are lowercased (FewRel is already tokenised; raw sentences are split into words and
  punctuation by :func:`tokenize`).
- The :class:`Vocabulary` is built from the meta-training sentences only, so a word that occurs
  only in validation or test relations is unknown to the model (no test leakage). Words seen
  fewer than ``min_count`` times are left out too: they then train the unknown-word embedding,
  which a test sentence's unseen words use.
- Id 0 pads (token and position rows alike), id 1 is the unknown word.
- A relative position is 0 inside the entity, negative before it, positive after it, clipped
  to ``±(L - 1)`` and shifted by ``L``: position ids lie in ``1..2L-1`` and 0 is padding.
- A sentence longer than ``L`` keeps a window of ``L`` tokens around its two entities, so both
  stay visible where they fit; positions are measured in the whole sentence either way.

References:
    Zeng et al., "Relation Classification via Convolutional Deep Neural Network", COLING 2014
    (position features). Han et al., "FewRel: A Large-Scale Supervised Few-Shot Relation
    Classification Dataset with State-of-the-Art Evaluation", EMNLP 2018 (L = 40 in its CNN
    baseline's code).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metalearner.errors import DataError

PAD, UNK = 0, 1
PAD_WORD, UNK_WORD = "<pad>", "<unk>"
MAX_LENGTH = 40  # the FewRel repository's CNN baseline (train_demo.py, 2018): max_length = 40
MIN_COUNT = 2
_WORDS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Sentence:
    """A tokenised sentence and its two entities as token spans ``[start, end)``."""

    tokens: tuple[str, ...]
    head: tuple[int, int]
    tail: tuple[int, int]


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks of a raw sentence (``"Paris, 1987."`` -> 4 tokens)."""
    return _WORDS.findall(text)


def find_span(tokens: Sequence[str], entity: str) -> tuple[int, int] | None:
    """The first span of ``tokens`` that spells ``entity`` (case-insensitive), or ``None``."""
    words = [w.lower() for w in tokenize(entity)]
    lowered = [t.lower() for t in tokens]
    for i in range(len(lowered) - len(words) + 1):
        if words and lowered[i : i + len(words)] == words:
            return i, i + len(words)
    return None


class Vocabulary:
    """Words to ids: ``<pad>`` is 0, ``<unk>`` is 1, then the kept words by frequency.

    Example:
        >>> vocab = Vocabulary.build([["the", "cat"], ["the", "dog"]], min_count=2)
        >>> vocab.ids(["The", "cat"])
        [2, 1]
    """

    def __init__(self, words: Sequence[str]) -> None:
        if list(words[:2]) != [PAD_WORD, UNK_WORD]:
            raise DataError("A vocabulary must start with <pad> and <unk>; rebuild it.")
        self.words = tuple(words)
        self._index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], *, min_count: int = MIN_COUNT) -> Vocabulary:
        """The words occurring at least ``min_count`` times, most frequent first (ties: A-Z)."""
        counts = Counter(t.lower() for tokens in sentences for t in tokens)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([PAD_WORD, UNK_WORD, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """The id of each token, lowercased; ``UNK`` for a word not in the vocabulary."""
        return [self._index.get(t.lower(), UNK) for t in tokens]


def encode(sentences: Sequence[Sentence], vocab: Vocabulary, max_length: int) -> Tensor:
    """``[M, 3, L]`` int64: token ids, positions to the head, positions to the tail."""
    out = torch.zeros(len(sentences), 3, max_length, dtype=torch.int64)
    for i, s in enumerate(sentences):
        start = entity_window(len(s.tokens), s.head, s.tail, max_length)
        idx = range(start, min(start + max_length, len(s.tokens)))
        n = len(idx)
        out[i, 0, :n] = torch.tensor(vocab.ids([s.tokens[j] for j in idx]))
        out[i, 1, :n] = torch.tensor([_position(j, s.head, max_length) for j in idx])
        out[i, 2, :n] = torch.tensor([_position(j, s.tail, max_length) for j in idx])
    return out


def decode(x: Tensor, vocab: Vocabulary) -> str:
    """An encoded sentence ``[3, L]`` as text, the head in ``[H ...]`` and the tail in ``[T ...]``.

    Words outside the vocabulary read ``<unk>``: this is what the model sees.
    """
    length = x.shape[-1]
    words = []
    for token, head, tail in x.reshape(3, length).T.tolist():
        if token == PAD:
            continue
        word = vocab.words[token] if token < len(vocab) else UNK_WORD
        words.append(f"[H {word}]" if head == length else f"[T {word}]" if tail == length else word)
    return " ".join(words).replace("] [H ", " ").replace("] [T ", " ")


def text_preprocessing(vocab: Vocabulary, max_length: int) -> dict[str, object]:
    """What a checkpoint records so that new sentences are encoded as in training."""
    return {
        "kind": "text",
        "max_length": max_length,
        "lowercase": True,
        "vocabulary": list(vocab.words),
    }


def is_text(preprocessing: Mapping[str, Any]) -> bool:
    """Whether a labeled set's (or checkpoint's) preprocessing record is a text encoding."""
    return preprocessing.get("kind") == "text"


def from_preprocessing(preprocessing: Mapping[str, Any]) -> tuple[Vocabulary, int]:
    """The vocabulary and length recorded by :func:`text_preprocessing`.

    Raises:
        DataError: the record is not a text model's.
    """
    words, length = preprocessing.get("vocabulary"), preprocessing.get("max_length")
    if not is_text(preprocessing) or not isinstance(words, list) or length is None:
        raise DataError("This checkpoint records no vocabulary; it was not trained on text.")
    return Vocabulary([str(w) for w in words]), int(length)


def _position(j: int, span: tuple[int, int], max_length: int) -> int:
    start, end = span
    rel = j - start if j < start else (j - end + 1 if j >= end else 0)
    return max(-(max_length - 1), min(max_length - 1, rel)) + max_length


def entity_window(n: int, head: tuple[int, int], tail: tuple[int, int], max_length: int) -> int:
    """The first of ``n`` tokens in a window of ``max_length`` that shows both entities (spans
    ``[start, end)``) where it can."""
    if n <= max_length:
        return 0
    first, last = min(head[0], tail[0]), max(head[1], tail[1])
    if last - first >= max_length:
        return first  # both do not fit: keep the earlier entity and what follows it
    # Centre the entities' stretch in the window, without running past either end.
    return max(0, min(first - (max_length - (last - first)) // 2, n - max_length))
