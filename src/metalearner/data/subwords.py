"""Sentences for a pretrained encoder: its own tokenizer's ids, the two entities marked in the text.

Where :mod:`metalearner.data.text` encodes words with a vocabulary of the training sentences
(for textcnn), a pretrained encoder (``model.name: hf``, :mod:`metalearner.nn.hf`) reads the ids
of the tokenizer it was trained with. A relation example (a sentence with a head and a tail
entity) is written as text with a marker before and after each entity, by default
``@ head @`` and ``# tail #``: punctuation the tokenizer knows, so no embedding is new and an
encoder that was never fine-tuned reads them already (Zhou & Chen's punctuation markers;
Baldini Soares et al. added ``[E1]``-style tokens instead). It is then encoded as ``int64
[3, L]``:

- row 0: the token ids, between the tokenizer's special tokens (``[CLS] ... [SEP]``), then
  padding 0 (masked out: its id does not matter to the encoder, and the no-training floor's
  bag of words leaves id 0 out);
- row 1: the attention mask, 1 on the sentence's tokens;
- row 2: the entity marks, 1 on the first token of the head's opening marker, 2 on the tail's
  (what entity-start pooling reads).

``L`` (``data.max_length``) counts tokens, special ones included. A longer sentence keeps a
window of tokens around its two marked entities (:func:`metalearner.data.text.entity_window`),
or, where they do not fit together, around their opening markers; only where even those lie
farther apart than ``L`` does the later one fall out, its mark absent (its pooled half zero).

What a checkpoint records (:meth:`SubwordEncoding.record`): the tokenizer (the model's path or
Hub id), ``max_length`` and the markers, so that ``adapt`` encodes new sentences exactly so.

References:
    Baldini Soares et al., "Matching the Blanks: Distributional Similarity for Relation
    Learning", ACL 2019 (entity markers). Zhou & Chen, "An Improved Baseline for
    Sentence-level Relation Extraction", AACL 2022 (entity markers of punctuation).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metalearner.data.text import Sentence, encode, entity_window, from_preprocessing
from metalearner.errors import ConfigError, DataError
from metalearner.nn.hf import HEAD_MARK, ROWS, TAIL_MARK, load_tokenizer

MAX_TOKENS = 128
"""``data.max_length`` where it is null: 99% of FewRel's wiki sentences, marked, are shorter."""

MARKERS = ("@", "@", "#", "#")
"""Before and after the head entity, before and after the tail entity."""

Markers = tuple[str, str, str, str]


@dataclass(frozen=True)
class SubwordEncoding:
    """How sentences become a pretrained encoder's input (see the module doc).

    Attributes:
        tokenizer: the model's folder or Hub id, whose tokenizer splits the text.
        max_length: tokens per sentence, the tokenizer's special tokens included.
        markers: the text before and after the head, before and after the tail.
    """

    tokenizer: str
    max_length: int
    markers: Markers = MARKERS

    def record(self) -> dict[str, object]:
        """What a checkpoint (a labeled set's preprocessing) records to encode the same way."""
        return {
            "kind": "text",
            "tokenizer": self.tokenizer,
            "max_length": self.max_length,
            "markers": list(self.markers),
        }

    @classmethod
    def of(cls, preprocessing: Mapping[str, Any]) -> SubwordEncoding | None:
        """The encoding a preprocessing record states, or ``None`` for a word vocabulary's."""
        if preprocessing.get("kind") != "text" or "tokenizer" not in preprocessing:
            return None
        markers = tuple(str(m) for m in preprocessing.get("markers", MARKERS))
        if len(markers) != len(MARKERS):
            raise DataError("The recorded entity markers are not four strings; retrain the model.")
        return cls(str(preprocessing["tokenizer"]), int(preprocessing["max_length"]),
                   markers)  # type: ignore[arg-type]  # fmt: skip

    def fingerprint(self) -> str:
        """sha256 of the whole tokenizer (vocabulary, normaliser, special tokens) and the
        markers: a cache of encoded sentences is keyed on it, never on a path alone."""
        tokenizer = load_tokenizer(self.tokenizer)
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        for key in ("truncation", "padding"):  # what the last call set, not what it encodes
            state.pop(key, None)
        digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
        digest.update(repr((type(tokenizer).__name__, _specials(tokenizer), self.markers)).encode())
        return digest.hexdigest()

    def encode(self, sentences: Sequence[Sentence]) -> Tensor:
        """``[M, 3, L]`` int64: token ids, attention mask, entity marks.

        Raises:
            ConfigError: ``max_length`` leaves no room for a sentence beside the special tokens.
        """
        tokenizer = load_tokenizer(self.tokenizer)
        prefix, suffix = _specials(tokenizer)
        room = self.max_length - len(prefix) - len(suffix)
        if room < 4:
            raise ConfigError(
                f"data.max_length {self.max_length} leaves {max(room, 0)} tokens for a sentence "
                f"beside the {len(prefix) + len(suffix)} special tokens of {self.tokenizer}; "
                "set data.max_length to 64 or more."
            )
        out = torch.zeros(len(sentences), ROWS, self.max_length, dtype=torch.int64)
        if not sentences:
            return out
        marked = [_marked(s, self.markers) for s in sentences]
        texts = [text for text, _, _ in marked]
        tokens = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        for i, ((_, head, tail), ids, offsets) in enumerate(
            zip(marked, tokens["input_ids"], tokens["offset_mapping"], strict=True)
        ):
            ends = [end for _, end in offsets]
            starts = [start for start, _ in offsets]
            # Character spans to token spans [first, last + 1).
            h = (bisect.bisect_right(ends, head[0]), bisect.bisect_left(starts, head[1]))
            t = (bisect.bisect_right(ends, tail[0]), bisect.bisect_left(starts, tail[1]))
            start = entity_window(len(ids), h, t, room)
            if not (start <= h[0] < start + room and start <= t[0] < start + room):
                # The marked entities do not fit together: their opening markers may.
                start = entity_window(len(ids), (h[0], h[0] + 1), (t[0], t[0] + 1), room)
            kept = [*prefix, *ids[start : start + room], *suffix]
            out[i, 0, : len(kept)] = torch.tensor(kept)
            out[i, 1, : len(kept)] = 1
            for (first, _), mark in ((h, HEAD_MARK), (t, TAIL_MARK)):
                if start <= first < start + room:
                    out[i, 2, len(prefix) + first - start] = mark
        return out


def encode_as_recorded(sentences: Sequence[Sentence], preprocessing: Mapping[str, Any]) -> Tensor:
    """``sentences`` encoded as a checkpoint's preprocessing says: with the tokenizer and markers
    of a pretrained encoder, or the vocabulary of a textcnn.

    Raises:
        DataError: the record is not a text model's.
    """
    encoding = SubwordEncoding.of(preprocessing)
    if encoding is not None:
        return encoding.encode(sentences)
    vocab, length = from_preprocessing(preprocessing)
    return encode(sentences, vocab, length)


def _marked(s: Sentence, markers: Markers) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """The sentence as text with its entities marked, and each marked entity's character span
    ``[opening marker, end of closing marker)``: head, then tail."""
    h_open, h_close, t_open, t_close = markers
    pieces: list[str] = []
    length = 0
    starts: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}

    def add(piece: str) -> int:
        nonlocal length
        length += 1 if pieces else 0  # the space between pieces
        pieces.append(piece)
        length += len(piece)
        return length - len(piece)

    for j, word in enumerate(s.tokens):
        for role, (first, _), marker in (("h", s.head, h_open), ("t", s.tail, t_open)):
            if first == j:
                starts[role] = add(marker)
        add(word)
        for role, (_, end), marker in (("t", s.tail, t_close), ("h", s.head, h_close)):
            if end == j + 1:
                add(marker)
                spans[role] = (starts[role], length)
    return " ".join(pieces), spans["h"], spans["t"]


def _specials(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sentence."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare) :])
    return [], []
