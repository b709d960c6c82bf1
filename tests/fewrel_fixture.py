"""A tiny fake FewRel in the real JSON format, written by the tests (never the real data).

Every relation's sentences carry a cue word of that relation (``cue<id>``) between the head
and the tail, so a model can learn something in a few steps, and nothing else tells relations
apart. Relations are named ``P1..P16`` (wiki), ``med0..med9`` (PubMed) and ``T1..`` (the
optional ``train_wiki.json``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FILLER = ("the", "of", "in", "a", "was", "and", "by", "at")


def record(rid: str, rng: random.Random, *, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One FewRel record: filler words, the head, the relation's cue word, the tail."""
    before = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
    head = [f"name{rng.randint(0, 30)}"]
    middle = [rng.choice(FILLER), f"cue{rid.lower()}", *extra, rng.choice(FILLER)]
    tail = [f"place{rng.randint(0, 30)}", "city"]
    tokens = [*before, *head, *middle, *tail, "."]
    h0 = len(before)
    t0 = h0 + 1 + len(middle)
    return {
        "tokens": tokens,
        "h": [" ".join(head), f"Q{rng.randint(1, 999)}", [[h0]]],
        "t": [" ".join(tail), f"Q{rng.randint(1, 999)}", [[t0, t0 + 1]]],
    }


def write_fake_fewrel(
    root: Path, *, per: int = 14, wiki: int = 16, pubmed: int = 10, train: int = 0
) -> Path:
    """Writes ``root/fewrel/`` (val_wiki, val_pubmed, pid2name; train_wiki if ``train``).

    Returns:
        ``root``, the data dir to pass as ``--data-dir``.
    """
    rng = random.Random(0)
    folder = root / "fewrel"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"val_wiki.json": [f"P{i + 1}" for i in range(wiki)]}
    files["val_pubmed.json"] = [f"med{i}" for i in range(pubmed)]
    if train:
        files["train_wiki.json"] = [f"T{i + 1}" for i in range(train)]
    for name, ids in files.items():
        # Each relation also has a word of its own (only<id>): a test relation's must be unknown.
        data = {r: [record(r, rng, extra=(f"only{r.lower()}",)) for _ in range(per)] for r in ids}
        (folder / name).write_text(json.dumps(data))
    names = {f"P{i + 1}": [f"relation {i + 1}", "a fake relation"] for i in range(wiki)}
    (folder / "pid2name.json").write_text(json.dumps(names))
    return root
