"""Time from a loaded model to predictions for a new 5-way 1-shot task with 75 queries.

A benchmark, not a test. For each strategy a conv4 (64 channels, 28x28 grey, Omniglot's shape)
is meta-trained for one step on synthetic images (the weights do not change the time), saved,
and loaded with ``metalearner.load``; then ``learner.adapt(support, labels, steps=S)`` and
``task.predict(queries)`` are timed together, median of ``--repeats``, with the inputs either
already decoded (``uint8`` arrays) or as PNG files (decoding included).

Targets on the 2-core CPU (issue 7): ProtoNets < 50 ms, MAML with 10 steps < 200 ms.

Usage:
    .venv/bin/python benchmarks/adapt.py [--repeats 30] [--record]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import machine  # benchmarks/machine.py
import metalearner
from metalearner.runs.config import load_config
from metalearner.training.loop import meta_train

HERE = Path(__file__).resolve().parent
WAYS, QUERIES = 5, 15
CASES = [("protonet", None, 50.0), ("maml", 10, 200.0)]  # strategy, steps, target ms


def synthetic_folder(root: Path, classes: int = 20, per_class: int = 4) -> None:
    """Random 28x28 grey PNGs, one sub-folder per class."""
    g = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            pixels = g.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c:02d}" / f"{i}.png")


def train_one_step(strategy: str, data: Path, out: Path) -> Path:
    overrides = [
        "data.dataset=folder", f"data.path={data}", f"strategy={strategy}", "steps=1",
        f"data.ways={WAYS}", "data.queries=1", "data.meta_train_classes=12", "data.val_classes=5",
        "val_tasks=1", "meta_batch=1",
    ]  # fmt: skip
    if strategy == "protonet":
        overrides.append(f"strategy_config.train_ways={WAYS}")
    meta_train(load_config(overrides=overrides), out, quiet=True)
    return out


def time_case(run: Path, steps: int | None, files: bool, repeats: int, root: Path) -> list[float]:
    learner = metalearner.load(run)
    g = np.random.default_rng(1)
    support = g.integers(0, 256, (WAYS, 1, 28, 28), dtype=np.uint8)
    query = g.integers(0, 256, (WAYS * QUERIES, 1, 28, 28), dtype=np.uint8)
    labels = [f"class{i}" for i in range(WAYS)]
    if files:
        paths = []
        for i, pixels in enumerate([*support, *query]):
            paths.append(root / f"item{i:03d}.png")
            Image.fromarray(pixels[0]).save(paths[-1])
        support_in, query_in = paths[:WAYS], paths[WAYS:]
    else:
        support_in, query_in = support, query
    times = []
    for _ in range(repeats + 3):  # three warm-ups
        t = time.perf_counter()
        learner.adapt(support_in, labels, steps=steps).predict(query_in)
        times.append(1000 * (time.perf_counter() - t))
    return times[3:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic_folder(root / "data")
        for strategy, steps, target in CASES:
            run = train_one_step(strategy, root / "data", root / strategy)
            for files in (False, True):
                folder = root / f"{strategy}-{files}"
                folder.mkdir()
                times = time_case(run, steps, files, args.repeats, folder)
                median = statistics.median(times)
                rows.append(
                    f"| {strategy} | {steps if steps is not None else '-'} | "
                    f"{'PNG files' if files else 'uint8 arrays'} | {median:.1f} | "
                    f"{sorted(times)[int(0.9 * len(times))]:.1f} | < {target:g} | "
                    f"{'yes' if median < target else 'NO'} |"
                )
                print(rows[-1], flush=True)
    head = "| strategy | steps | inputs | median ms | p90 ms | target ms | met |"
    table = "\n".join([head, "|---|---|---|---|---|---|---|", *rows])
    print("\n" + table)
    if args.record:
        machine.record(
            "Adaptation latency, 5-way 1-shot, 75 queries (benchmarks/adapt.py)",
            f".venv/bin/python benchmarks/adapt.py --repeats {args.repeats} --record",
            table,
        )


if __name__ == "__main__":
    main()
