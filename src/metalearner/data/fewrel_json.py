"""FewRel's JSON files read and checked: relations, their sentences and their names.

The format, ``{relation_id: [{"tokens": [...], "h": [name, id, [[positions]]], "t": [...]},
...]}``, and ``pid2name.json``'s ``{relation_id: [name, description]}``; every record is checked
so that a malformed one is named (file, relation, record) rather than failing later.
:mod:`metalearner.data.fewrel` builds the splits and the encoded, cached dataset from these.

References:
    Han et al., "FewRel: A Large-Scale Supervised Few-Shot Relation Classification Dataset with
    State-of-the-Art Evaluation", EMNLP 2018.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalearner.data.text import Sentence
from metalearner.errors import DataError

NAMES = "pid2name.json"


@dataclass(frozen=True)
class Relation:
    """One relation (class): its id, readable name, domain and sentences."""

    id: str
    name: str
    domain: str
    sentences: tuple[Sentence, ...]


def load_relations(path: Path, domain: str, names: Mapping[str, str]) -> list[Relation]:
    """Every relation of one FewRel JSON file, sorted by id, each record checked.

    Raises:
        DataError: the file is not FewRel JSON, or a record is malformed (naming it).
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read ({err}); check the file.") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON (line {err.lineno}); fix or replace it."
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path} must hold a JSON object {{relation: [records]}}, as FewRel does.")
    out = []
    for rid in sorted(raw):
        records = raw[rid]
        if not isinstance(records, list):
            raise DataError(f"{path}: relation {rid!r} must map to a list of records.")
        sentences = tuple(_sentence(r, path, rid, i) for i, r in enumerate(records))
        name = names.get(rid)
        out.append(Relation(rid, f"{rid} ({name})" if name else rid, domain, sentences))
    return out


def relation_names(folder: Path) -> dict[str, str]:
    """Relation id -> name from ``pid2name.json`` (``{"P177": ["crosses", "..."]}``), or ``{}``."""
    path = folder / NAMES
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): str(v[0]) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        raise DataError(
            f"{path} is not a map of relation ids to [name, description]; fix or remove it."
        ) from None


def _sentence(record: Any, path: Path, rid: str, index: int) -> Sentence:
    def bad(what: str) -> DataError:
        return DataError(f"{path}: relation {rid!r}, record {index}: {what}; fix or remove it.")

    if not isinstance(record, dict):
        raise bad("is not an object with tokens, h and t")
    tokens = record.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise bad("'tokens' must be a non-empty list of strings")
    spans = []
    for key in ("h", "t"):
        entity = record.get(key)
        if not isinstance(entity, list) or len(entity) < 3 or not isinstance(entity[2], list):
            raise bad(f"{key!r} must be [name, id, [[token positions], ...]]")
        mention = entity[2][0] if entity[2] else None
        if not isinstance(mention, list) or not mention:
            raise bad(f"{key!r} has no token positions")
        if not all(isinstance(p, int) and 0 <= p < len(tokens) for p in mention):
            raise bad(f"{key!r} positions {mention} are not token indices 0..{len(tokens) - 1}")
        spans.append((min(mention), max(mention) + 1))
    return Sentence(tuple(tokens), spans[0], spans[1])
