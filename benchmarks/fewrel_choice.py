"""Choosing FewRel's pooling and step on validation relations, never on the test ones.

``benchmarks/fewrel.py`` fine-tunes a pretrained encoder on the wiki split's 10 training
relations and scores it on the 6 held-out ones. Its validation (held-out *sentences* of the
training relations) cannot see how well the encoder transfers to relations it has not seen, so
the pooling and the outer step are chosen here instead: each candidate ``pooling:lr`` fine-tunes
with ProtoNets on 5 of the 10 training relations for ``--budget`` and is validated, every 45
seconds, on 5-way tasks of the other 5 (``data.val_classes=5``). No test relation is read.
Prints each candidate's validation curve; ``--record`` writes the table into RESULTS.md.

Usage:
    .venv/bin/python benchmarks/fewrel_choice.py --data-dir ../shared/data --budget 3m --record
    .venv/bin/python benchmarks/fewrel_choice.py --data-dir ../shared/data --budget 20s \
        --candidates mean:2e-5 --out /tmp/fewrel-choice-smoke        # a smoke run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import machine  # benchmarks/machine.py
from fewrel import run_config  # benchmarks/fewrel.py
from metalearner.training.loop import meta_train

CANDIDATES = "entity-start:2e-5,mean:2e-5,entity-mean:2e-5,entity-mean:5e-6"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default=None,
                        help="a Hugging Face model folder or Hub id "
                        "(default: <data-dir>/models/all-MiniLM-L6-v2)")  # fmt: skip
    parser.add_argument("--candidates", default=CANDIDATES, help="pooling:lr, comma-separated")
    parser.add_argument("--budget", default="3m", help="training per candidate: 3m, 90s")
    parser.add_argument("--val-tasks", type=int, default=100, help="validation tasks per point")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-fewrel-choice"))
    parser.add_argument("--record", action="store_true", help="record in RESULTS.md")
    args = parser.parse_args()
    model = args.model or str(args.data_dir / "models" / "all-MiniLM-L6-v2")
    lines = ["| pooling | outer step | validation accuracy (5 held-out training relations) "
             "at steps (seconds of training) | best |", "|---|---|---|---|"]  # fmt: skip
    for candidate in args.candidates.split(","):
        pooling, lr = candidate.split(":")
        options = argparse.Namespace(
            model=model, budget=args.budget, pooling=pooling, lr=float(lr), tasks=args.val_tasks,
            set=["data.val_classes=5", "val_every_seconds=45", f"val_tasks={args.val_tasks}"],
        )  # fmt: skip
        folder = args.out / f"{pooling}-{lr}"
        if not (folder / "checkpoints" / "best").is_dir():
            resume = (folder / "config.yaml").is_file()
            meta_train(run_config(options, "protonet"), folder, resume=resume,
                       data_dir=args.data_dir)  # fmt: skip
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        curve = [(r["step"], r["time"], 100 * r["val_accuracy"]) for r in rows
                 if "val_accuracy" in r]  # fmt: skip
        points = ", ".join(f"{a:.1f}% at {s} ({t:.0f} s)" for s, t, a in curve)
        best = max((a for _, _, a in curve), default=float("nan"))
        lines.append(f"| {pooling} | {float(lr):g} | {points} | {best:.1f}% |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + (
        f"\n\nProtoNets, 5-way 1-shot episodes, {args.budget} of training per candidate on 5 of "
        f"the wiki split's 10 training relations; {args.val_tasks} fixed 5-way 1-shot "
        "validation tasks of the other 5 per point (95% CI at 100 tasks: about ±2 points). The "
        "6 test relations are not read."
    )
    print(table)
    if args.record:
        command = (f".venv/bin/python benchmarks/fewrel_choice.py --data-dir {args.data_dir} "
                   f"--candidates {args.candidates} --budget {args.budget} --record")  # fmt: skip
        machine.record("FewRel: pooling and step chosen on validation relations "
                       "(benchmarks/fewrel_choice.py)", command, table)  # fmt: skip


if __name__ == "__main__":
    main()
