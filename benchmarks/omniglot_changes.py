"""Which speed-ups matter: each change's effect on steps/s and on accuracy at a fixed budget.

Trains one Omniglot preset for the same wall-clock budget of outer steps once per change, each
change added to those above it (the starting point first), and scores every run's best
checkpoint (chosen on validation tasks) on the preset's 600 fixed test tasks; one run, one
machine, so the rows compare. The table goes into benchmarks/RESULTS.md in place of the last
run of the same preset, budget and ``--set`` overrides (which the rows' own come after).

The changes for ProtoNets, in order:

- the paper's setting (float32, its learning-rate schedule) on one thread, as ``benchmark
  --workers 2`` gives each run;
- two threads (one run alone on the 2-core machine);
- ``precision=bfloat16``: the backbone under bfloat16 autocast (AVX512-BF16 CPUs, GPUs);
  ProtoNets keeps prototypes and distances in float32;
- ``optimizer.schedule=cosine``: cosine decay that ends at the time budget instead of the
  paper's step decay written for tens of thousands of steps
  (:func:`metalearner.training.optimizer.lr_factor`);
- ``data.train_on_val=true``: the validation classes trained on too, as Snell et al.'s reported
  models were (their code's "trainval" mode); that row's validation is of seen classes.

For MAML: the preset as it was (15 queries a class in training episodes), then as many as shots
(Finn et al.'s code: ``data.train_queries``), each task's inner steps and query pass compiled
(``strategy_config.batching=compiled``), and cosine to the budget.

Usage:
    .venv/bin/python benchmarks/omniglot_changes.py --data-dir ../shared/data \
        --preset omniglot-5w1s-protonet --minutes 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py
from metalearner.config.presets import get_preset
from omniglot import train_and_score  # benchmarks/omniglot.py

HERE = Path(__file__).resolve().parent

# Per strategy: (what changes, the overrides it adds to those of the rows above it); "{shots}"
# stands for the preset's shots.
CHANGES: dict[str, list[tuple[str, list[str]]]] = {
    "protonet": [
        ("the paper's setting, float32, 1 thread", ["threads=1"]),
        ("+ 2 threads", ["threads=2"]),
        ("+ bfloat16 backbone", ["precision=bfloat16"]),
        ("+ cosine to the budget", ["optimizer.schedule=cosine"]),
        ("+ validation classes trained on too (Snell et al.'s trainval)",
         ["data.train_on_val=true"]),
    ],
    "maml": [
        ("15 training queries a class (the preset before 2026-12-07), 2 threads",
         ["threads=2", "data.train_queries=15"]),
        ("+ as many training queries as shots (Finn et al.'s code)",
         ["data.train_queries={shots}"]),
        ("+ compiled tasks", ["strategy_config.batching=compiled"]),
        ("+ cosine to the budget", ["optimizer.schedule=cosine"]),
    ],
}  # fmt: skip
CHANGES["fomaml"] = CHANGES["maml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-omniglot-changes"))
    parser.add_argument("--preset", default="omniglot-5w1s-protonet")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget of each run")
    parser.add_argument(
        "--set", action="append", default=[], help="overrides for every run, before each row's"
    )
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    preset = get_preset(args.preset).load()
    changes = CHANGES.get(str(preset["strategy"]))
    if changes is None:
        raise SystemExit(f"No changes listed for {preset['strategy']}; use one of {list(CHANGES)}.")
    rows: list[dict[str, Any]] = []
    overrides = list(args.set)
    for number, (change, adds) in enumerate(changes):
        overrides = [*overrides, *(a.format(shots=preset["data"]["shots"]) for a in adds)]
        folder = args.out / f"{args.preset}-{number}"
        row = train_and_score(args.preset, args.minutes, overrides, folder, args.data_dir)
        rows.append({"change": change, "overrides": list(overrides), **row})
        print(_table(rows[-1:], first=rows[0]), flush=True)
    table = _table(rows)
    print(table)
    # Each preset's last rows, as RESULTS.md keeps a section for each.
    out = HERE / "omniglot_changes.json"
    kept = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**kept, args.preset: rows}, indent=2) + "\n")
    if not args.no_record:
        sets = " ".join(f"--set {s}" for s in args.set)
        command = (
            f".venv/bin/python benchmarks/omniglot_changes.py --data-dir {args.data_dir} "
            f"--preset {args.preset} --minutes {args.minutes:g} {sets}"
        )
        title = f"Each change's effect at a fixed budget: {args.preset}, {args.minutes:g} min"
        title += f" with {', '.join(args.set)}" if args.set else ""
        machine.record(title + " (benchmarks/omniglot_changes.py)", command.rstrip(), table)


def _table(rows: list[dict[str, Any]], *, first: dict[str, Any] | None = None) -> str:
    head = (
        "| change | steps (best) | steps/s | × first row | best validation "
        "| test accuracy (tasks) | wall (outer steps / validation / checkpoints) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    base = first or (rows[0] if rows else None)  # the row the speed-ups are relative to
    first_rate = None if base is None else base["steps_per_s"]
    for r in rows:
        rate = r["steps_per_s"]
        ratio = f"{rate / first_rate:.2f}" if rate and first_rate else "-"
        val = "-" if r["best_val"] is None else f"{r['best_val']:.2f}%"
        if "data.train_on_val=true" in r.get("overrides", []):
            val += " (classes trained on)"
        lines.append(
            f"| {r['change']} | {r['steps']} ({r['best_step']}) | "
            f"{'-' if rate is None else f'{rate:.2f}'} | {ratio} | {val} | "
            f"{r['accuracy']:.2f}% ± {r['ci95']:.2f} ({r['tasks']}) | {r['trained_min']:.1f} min "
            f"({r['outer_min']:.1f} / {r['validating_min']:.2f} / {r['saving_min']:.2f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
