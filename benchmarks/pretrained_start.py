"""ProtoNets from a transfer-pretrained backbone vs from scratch, same budget (a benchmark).

Omniglot 5-way 1-shot. Under one total training budget (``--budget``, counted as every run
counts it: seconds in outer steps, validation and checkpoints not included):

- **pretrained start** (P>M>F's pretrain → meta-train, Hu et al. 2022): the ``finetune``
  transfer baseline pretrains the backbone on shuffled mini-batches of every training class
  for half the budget, then ProtoNets meta-trains from its backbone
  (``model.init_from=<finetune run>``) for the other half;
- **from scratch**: ProtoNets meta-trains from a fresh initialisation for the whole budget.

Each run has the settings ``metalearner benchmark`` gives it (ProtoNets' Omniglot preset;
finetune's defaults on the MAML preset's data and model), so the backbones match. Both
ProtoNets runs are scored on the same fixed test tasks, each beside the no-training floor
(a nearest class mean on the pixels) on those tasks. Prints a table; ``--record`` writes it into
benchmarks/RESULTS.md with the command, the machine and the commit (and pretrained_start.json).
Running the same command again resumes unfinished runs.

References:
    Hu et al., "Pushing the Limits of Simple Pipelines for Few-Shot Learning: External Data and
    Fine-Tuning Make a Difference", CVPR 2022 (P>M>F). Chen et al., "A Closer Look at Few-shot
    Classification", ICLR 2019 (the transfer baseline). Snell et al., "Prototypical Networks
    for Few-shot Learning", NeurIPS 2017.

Usage:
    .venv/bin/python benchmarks/pretrained_start.py --data-dir ../shared/data --budget 10m --record
    .venv/bin/python benchmarks/pretrained_start.py --data-dir ../shared/data --budget 20s \
        --tasks 20 --val-tasks 10 --out /tmp/pretrained-start-smoke   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py
from metalearner.benchmark.plan import BenchmarkPlan, parse_budget
from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.checkpoint import checkpoint_exists
from metalearner.runs.config import RunConfig, load_config, to_dict
from metalearner.runs.folder import LATEST
from metalearner.training.loop import meta_train

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--budget", default="10m", help="total training time: 10m, 90s, 1h")
    parser.add_argument("--tasks", type=int, default=600, help="fixed test tasks")
    parser.add_argument("--val-tasks", type=int, default=100, help="fixed validation tasks")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-pretrained-start"))
    parser.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--record", action="store_true", help="record in RESULTS.md")
    args = parser.parse_args()
    seconds = parse_budget(args.budget).seconds
    if seconds is None:
        parser.error("--budget is a duration (10m, 90s): the two arms share wall-clock time")

    plan = BenchmarkPlan(
        dataset="omniglot", ways=5, shots=1, budget=args.budget, tasks=args.tasks,
        val_tasks=args.val_tasks, strategies=("protonet", "finetune"), overrides=tuple(args.set),
    )  # fmt: skip
    pretrain = args.out / "finetune-half"
    arms = {
        "finetune-half": _budgeted(plan.run_config("finetune"), seconds / 2),
        "protonet-from-finetune": _budgeted(
            plan.run_config("protonet"), seconds / 2, [f"model.init_from={pretrain}"]
        ),
        "protonet-from-scratch": _budgeted(plan.run_config("protonet"), seconds),
    }
    rows: dict[str, dict[str, Any]] = {}
    for name, cfg in arms.items():
        folder = args.out / name
        started = time.perf_counter()
        result = meta_train(
            cfg, folder, resume=checkpoint_exists(folder / LATEST), data_dir=args.data_dir,
            quiet=True,
        )  # fmt: skip
        trained = time.perf_counter() - started
        if name == "finetune-half":  # the first half of an arm: scored only as a part of it
            rows[name] = {"steps": result.step, "seconds": cfg.time_budget, "wall": trained}
            continue
        scores = evaluate(folder, curve=False, data_dir=args.data_dir)
        floor = scores.floor
        rows[name] = {
            "steps": result.step, "seconds": cfg.time_budget, "wall": trained,
            "accuracy": 100 * scores.score.mean, "ci95": 100 * scores.score.ci95,
            "floor": 100 * floor.mean if floor else None,
            "floor_ci95": 100 * floor.ci95 if floor else None,
            "beats_floor": floor.beats if floor else None, "tasks": scores.num_tasks,
        }  # fmt: skip
        print(f"{name}: {scores.line()}", flush=True)
    table = _table(rows, seconds)
    print(table)
    if args.record:
        (HERE / "pretrained_start.json").write_text(json.dumps(rows, indent=2) + "\n")
        sets = " ".join(f"--set {s}" for s in args.set)
        command = (
            f".venv/bin/python benchmarks/pretrained_start.py --data-dir {args.data_dir} "
            f"--budget {args.budget} --tasks {args.tasks} {sets}"
        )
        title = "ProtoNets from a transfer-pretrained backbone vs from scratch, Omniglot 5-way "
        title += "1-shot (benchmarks/pretrained_start.py)"
        machine.record(title, command.rstrip(), table)


def _budgeted(cfg: RunConfig, seconds: float, extra: list[str] | None = None) -> RunConfig:
    """``cfg`` trained for ``seconds`` of outer steps, validated ~6 times as in a benchmark."""
    sets = [f"time_budget={seconds}", f"val_every_seconds={seconds / 6}", *(extra or [])]
    return load_config(base=to_dict(cfg), overrides=sets)


def _table(rows: dict[str, dict[str, Any]], seconds: float) -> str:
    pre, warm = rows["finetune-half"], rows["protonet-from-finetune"]
    cold = rows["protonet-from-scratch"]
    lines = [
        f"Total budget {_minutes(seconds)} of outer steps per arm, test tasks "
        f"{cold['tasks']} (the same for both).",
        "",
        "| start | training | steps | test accuracy | floor (no training) |",
        "|---|---|---|---|---|",
        f"| pretrained (finetune, then ProtoNets) | {_minutes(pre['seconds'])} + "
        f"{_minutes(warm['seconds'])} | {pre['steps']} + {warm['steps']} | {_score(warm)} | "
        f"{_floor(warm)} |",
        f"| from scratch (ProtoNets) | {_minutes(cold['seconds'])} | {cold['steps']} | "
        f"{_score(cold)} | {_floor(cold)} |",
        "",
    ]
    gain = warm["accuracy"] - cold["accuracy"]
    half = math.hypot(warm["ci95"], cold["ci95"])  # unpaired: wider than a paired interval
    lines.append(
        f"Pretrained start minus scratch: {gain:+.2f} ± {half:.2f} points (unpaired 95% CI)."
    )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g} min"


def _score(row: dict[str, Any]) -> str:
    return f"{row['accuracy']:.2f}% ± {row['ci95']:.2f}"


def _floor(row: dict[str, Any]) -> str:
    if row["floor"] is None:
        return "-"
    verdict = "" if row["beats_floor"] else " (not beaten)"
    return f"{row['floor']:.2f}% ± {row['floor_ci95']:.2f}{verdict}"


if __name__ == "__main__":
    main()
