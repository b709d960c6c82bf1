"""Sentences for a text model, for ``metalearner adapt``: a CSV or a JSON-lines file.

- CSV: a ``sentence`` column (raw text, split into words and punctuation) or a ``tokens``
  column (words separated by spaces), ``head`` and ``tail`` columns (each entity's words as
  they appear in the sentence; the first occurrence is taken), and for a support set the label
  column.
- JSON lines (``.jsonl``, or ``.json`` with one object per line): FewRel-like records,
  ``{"tokens": [...], "h": [name, id, [[positions]]], "t": [...], "label": ...}``; ``sentence``
  may replace ``tokens``, and an entity may be given as its words (``"h": "Marie Curie"``) or
  its token positions (``"h": [3, 4]``).

Sentences are encoded as the checkpoint records, exactly as the training sentences were: with
its vocabulary and length (textcnn, :mod:`metalearner.data.text`), or with a pretrained
encoder's tokenizer, length and entity markers (``model.name: hf``,
:mod:`metalearner.data.subwords`).

References:
    Han et al., "FewRel: A Large-Scale Supervised Few-Shot Relation Classification Dataset with
    State-of-the-Art Evaluation", EMNLP 2018 (the record format).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from metalearner.data.folder import read_csv_rows
from metalearner.data.subwords import encode_as_recorded
from metalearner.data.text import Sentence, find_span, tokenize
from metalearner.errors import DataError

SUFFIXES = (".csv", ".jsonl", ".json")


def read_text_items(
    paths: Sequence[Path], preprocessing: Mapping[str, Any], *, label: str, what: str
) -> tuple[Tensor, list[str] | None, list[str]]:
    """The sentences of one CSV or JSON-lines file: ``[M, 3, L]`` ids, labels, item names.

    Labels are ``None`` where the file has none (a query set whose answers are unknown).

    Raises:
        DataError: not one such file, or a row that cannot be read (naming its line).
    """
    file = paths[0]
    if len(paths) != 1 or file.is_dir() or file.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"The {what} for this text model must be one CSV or JSON-lines file of sentences, "
            f"not {file if len(paths) == 1 else f'{len(paths)} paths'}; see `metalearner adapt "
            "--help`."
        )
    records = _csv_records(file) if file.suffix.lower() == ".csv" else _json_records(file)
    labels = [r.get(label) for _, r in records]
    given = [v is not None and str(v).strip() != "" for v in labels]
    if any(given) and not all(given):
        line = records[given.index(False)][0]
        raise DataError(f"{file} line {line} has no {label!r} while others do; label every row.")
    sentences = [sentence_of(r, f"{file} line {n}") for n, r in records]
    x = encode_sentences(sentences, preprocessing)
    names = [f"{file.name}:{n}" for n, _ in records]
    return x, [str(v).strip() for v in labels] if all(given) else None, names


def encode_sentences(sentences: Sequence[Sentence], preprocessing: Mapping[str, Any]) -> Tensor:
    """``[M, 3, L]`` ids of ``sentences``, encoded as the checkpoint records."""
    return encode_as_recorded(sentences, preprocessing)


def encode_records(items: Any, preprocessing: Mapping[str, Any]) -> Any:
    """Python records (dicts as in a JSON-lines file) as ``[M, 3, L]`` ids; else ``items``."""
    if (
        not isinstance(items, Sequence)
        or not items
        or not all(isinstance(r, Mapping) for r in items)
    ):
        return items
    sentences = [sentence_of(r, f"record {i}") for i, r in enumerate(items)]
    return encode_sentences(sentences, preprocessing)


def sentence_of(record: Mapping[str, Any], where: str) -> Sentence:
    """The tokens and entity spans of one record (see the module doc for the forms accepted).

    Raises:
        DataError: no words, or an entity that cannot be found (naming ``where``).
    """
    tokens = record.get("tokens")
    if isinstance(tokens, str):
        tokens = tokens.split()
    if tokens is None and isinstance(record.get("sentence"), str):
        tokens = tokenize(record["sentence"])
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise DataError(
            f"{where}: give the sentence as 'sentence' (text) or 'tokens' (a list of words)."
        )
    head = _span(tokens, record.get("h", record.get("head")), where, "head")
    tail = _span(tokens, record.get("t", record.get("tail")), where, "tail")
    return Sentence(tuple(tokens), head, tail)


def _span(tokens: list[str], entity: Any, where: str, role: str) -> tuple[int, int]:
    if isinstance(entity, list) and len(entity) >= 3 and isinstance(entity[0], str):
        entity = entity[2][0] if isinstance(entity[2], list) and entity[2] else None  # FewRel
    if isinstance(entity, str) and entity.strip():
        span = find_span(tokens, entity)
        if span is None:
            raise DataError(
                f"{where}: the {role} entity {entity!r} is not in the sentence; give its words "
                "as they appear there."
            )
        return span
    if isinstance(entity, list) and entity and all(isinstance(p, int) for p in entity):
        if all(0 <= p < len(tokens) for p in entity):
            return min(entity), max(entity) + 1
        raise DataError(f"{where}: {role} positions {entity} are not token indices.")
    raise DataError(f"{where}: give the {role} entity as its words or its token positions.")


def _csv_records(file: Path) -> list[tuple[int, dict[str, Any]]]:
    header, rows = read_csv_rows(file)
    if not {"head", "tail"} <= set(header) or not {"sentence", "tokens"} & set(header):
        raise DataError(
            f"{file} has columns {', '.join(header)}; a text model needs 'sentence' (or "
            "'tokens'), 'head' and 'tail' columns, and a label column for a support set."
        )
    return [(line, dict(zip(header, row, strict=True))) for line, row in rows]


def _json_records(file: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read {file} ({err}); save it as UTF-8 JSON lines.") from None
    records = []
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(f"{file} line {n} is not a JSON object; write one per line.") from None
        if not isinstance(record, dict):
            raise DataError(f"{file} line {n} is not a JSON object; write one per line.")
        records.append((n, record))
    if not records:
        raise DataError(f"{file} holds no records; write one JSON object per line.")
    return records
