"""Latency of ``adapt`` on new sentences: a text run, a 5-way 1-shot task of 25 queries (CSV).

A benchmark, not a test. From a trained FewRel run (e.g. ProtoNets on all-MiniLM-L6-v2,
``model.name: hf``) it writes a new task as a user would give it: ``support.csv`` (one sentence
of each of 5 held-out wiki relations, with ``tokens``, ``head``, ``tail`` and ``relation``
columns) and ``query.csv`` (5 more of each), then measures

- the command a user runs, ``metalearner adapt RUN --support support.csv --query query.csv``:
  wall time of the whole process (Python, torch and transformers imports, loading the
  checkpoint and the tokenizer, encoding, adapting, predicting, writing predictions.csv),
  median of ``--repeats``;
- per task in a loaded model (a service that keeps ``metalearner.load(RUN)`` in memory):
  reading both CSVs, encoding them with the recorded tokenizer and markers,
  ``learner.adapt(support, labels)`` and ``task.predict(queries)``, median of ``--repeats``
  after one warm-up task.

Usage:
    .venv/bin/python benchmarks/adapt_text.py RUN --data-dir ../shared/data [--record]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py
import metalearner
from metalearner.inference.textfiles import read_text_items

WAYS, SHOTS, QUERIES = 5, 1, 5  # 25 queries


def write_task(run: Path, data_dir: Path, folder: Path) -> tuple[Path, Path]:
    """support.csv and query.csv from 5 of the run's test relations (their first sentences)."""
    meta = json.loads((run / "checkpoints" / "best" / "meta.json").read_text())
    names = [meta["class_names"][i].split()[0] for i in meta["split"]["test"][:WAYS]]
    raw = json.loads((data_dir / "fewrel" / "val_wiki.json").read_text())
    files = []
    for name, rows in (("support", range(SHOTS)), ("query", range(SHOTS, SHOTS + QUERIES))):
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["tokens", "head", "tail", "relation"])
            for r in names:
                for i in rows:
                    s = raw[r][i]
                    out.writerow([" ".join(s["tokens"]), _words(s, "h"), _words(s, "t"), r])
        files.append(path)
    return files[0], files[1]


def _words(record: dict, key: str) -> str:
    """The entity as its words in the sentence (its first mention's tokens)."""
    positions = record[key][2][0]
    return " ".join(record["tokens"][p] for p in positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="write a section of RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        support, query = write_task(args.run, args.data_dir, Path(tmp))
        command = [sys.executable, "-m", "metalearner", "adapt", str(args.run.resolve()),
                   "--support", str(support), "--query", str(query),
                   "--label", "relation"]  # fmt: skip
        walls = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
            walls.append(time.perf_counter() - began)
            if done.returncode != 0:
                raise SystemExit(done.stderr)
        accuracy = next((line for line in done.stdout.splitlines() if "accuracy" in line), "")
        began = time.perf_counter()
        learner = metalearner.load(args.run)
        loading = time.perf_counter() - began
        tasks = []
        for _ in range(args.repeats + 1):  # the first warms up
            began = time.perf_counter()
            pre = learner.preprocessing
            sx, sy, _ = read_text_items([support], pre, label="relation", what="support")
            qx, _, _ = read_text_items([query], pre, label="relation", what="query")
            assert sy is not None
            learner.adapt(sx, sy).predict(qx)
            tasks.append(time.perf_counter() - began)
    body = (
        f"| what | median of {args.repeats} |\n|---|---|\n"
        f"| `metalearner adapt` command, whole process | {statistics.median(walls):.2f} s |\n"
        f"| `metalearner.load(RUN)` once | {loading:.2f} s |\n"
        f"| per task, loaded model: read + encode CSVs, adapt, predict | "
        f"{1000 * statistics.median(tasks[1:]):.0f} ms |\n\n"
        f"A 5-way 1-shot task of 25 queries (support.csv, query.csv) from held-out wiki "
        f"relations; the run: {args.run} ({learner.config.strategy}, "
        f"model {learner.meta['backbone']['name']} {Path(str(learner.config.model.path)).name}). "
        f"The command printed: {accuracy.strip()}"
    )
    print(body)
    if args.record:
        title = "adapt latency on new sentences (benchmarks/adapt_text.py)"
        cli = f".venv/bin/python benchmarks/adapt_text.py {args.run} --data-dir {args.data_dir}"
        machine.record(title, cli + f" --repeats {args.repeats} --record", body)


if __name__ == "__main__":
    main()
