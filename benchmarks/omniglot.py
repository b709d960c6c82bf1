"""Omniglot accuracy under a wall-clock training budget (a benchmark, not a test).

Trains each preset for at most its ``--run`` minutes of outer steps (the run stops early, validated
and saved, its adaptation chosen on validation tasks), evaluates its best checkpoint on the preset's
600 fixed test tasks, prints a table and writes it into benchmarks/RESULTS.md with the command, the
machine and the commit, in place of the last run of the same presets and overrides. The table
gives the wall time and where it went (outer steps, validation, checkpoints; the rest chose the
adaptation), steps per second, the adaptation used, the score under the preset's own adaptation
(its paper's protocol) where validation chose another, and the no-training floor on the same tasks;
below it each run's validation score against training time (still rising at the budget, or flat).

Targets on the 2-core CPU (issue 29): ProtoNets 5-way 1-shot >= 98.8% and 20-way 1-shot >= 96.0%
within 20 minutes each; MAML 5-way 1-shot >= 98.0% within 60 minutes. Published (tens of
thousands of GPU iterations): ProtoNets 98.8 / 96.0, MAML 98.7 / 95.8. Each preset is tested as
its paper's code tests: ProtoNets on Vinyals et al.'s alphabet split, MAML on a shuffle of the
characters, both with rotated test characters as classes of their own (``data.test_rotations``).
Snell et al.'s reported models were retrained on the training and validation classes together
for the length their validated run took (their code's "trainval" mode): ``--set
data.train_on_val=true`` trains so; the run's last checkpoint is then the one tested (its
validation tasks are of classes it trained on, so nothing is chosen on them).

Usage:
    .venv/bin/python benchmarks/omniglot.py --data-dir ../shared/data \
        --run omniglot-5w1s-protonet:20:98.8 --run omniglot-20w1s-protonet:20:96.0 \
        --run omniglot-5w1s-maml:60:98.0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py
from metalearner.config.presets import get_preset
from metalearner.evaluation.choice import settings_text
from metalearner.evaluation.evaluator import EvalResult, evaluate
from metalearner.runs.config import load_config
from metalearner.training.loop import meta_train

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-omniglot"))
    parser.add_argument(
        "--run", action="append", required=True, metavar="PRESET:MINUTES:TARGET",
        help="a preset, its training budget in minutes and the target test accuracy in %%",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    rows = []
    for spec in args.run:
        preset, minutes, target = spec.split(":")
        row = train_and_score(preset, float(minutes), args.set, args.out / preset, args.data_dir)
        rows.append({**row, "target": float(target), "met": row["accuracy"] >= float(target)})
        print(_table(rows[-1:]), f"\n- {preset}: {row['curve']}", flush=True)
    table = _table(rows) + "\n\n" + "\n".join(f"- {r['preset']}: {r['curve']}" for r in rows)
    print(table)
    (HERE / "omniglot.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not args.no_record:
        _record(table, args)


def train_and_score(
    preset: str, minutes: float, overrides: list[str], folder: Path, data_dir: Path
) -> dict[str, Any]:
    """Trains ``preset`` for ``minutes`` of outer steps into ``folder`` and scores its best
    checkpoint on the preset's test tasks; returns the table's row (all but the target)."""
    cfg = load_config(
        base=get_preset(preset).load(), overrides=[f"time_budget={minutes * 60}", *overrides]
    )
    started = time.perf_counter()
    result = meta_train(cfg, folder, data_dir=data_dir, quiet=True)
    trained = time.perf_counter() - started
    scores = evaluate(folder, curve=False, data_dir=data_dir)
    outer, validating, saving = _time_split(folder)
    return {
        "preset": preset, "budget_min": minutes, "trained_min": trained / 60,
        "outer_min": outer / 60, "validating_min": validating / 60, "saving_min": saving / 60,
        "steps_per_s": result.step / outer if outer else None,
        "steps": result.step, "best_step": (result.best or {}).get("step"),
        "best_val": None if result.best is None else 100 * result.best["score"],
        "accuracy": 100 * scores.score.mean, "ci95": 100 * scores.score.ci95,
        "tasks": scores.num_tasks, "published": get_preset(preset).expected,
        **_adaptation(scores), **_floor(scores), "curve": machine.validation_curve(folder),
    }  # fmt: skip


def _time_split(folder: Path) -> tuple[float, float, float]:
    """Seconds in outer steps (what the budget counts), in validations and in checkpoints (all
    but the last one's), from the last line of the run's metrics; the rest of the wall time
    chose the adaptation and logged."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    outer, validating, saving = (float(last.get(k, 0.0)) for k in ("time", "validating", "saving"))
    return outer, validating, saving


def _adaptation(scores: EvalResult) -> dict[str, object]:
    """How the test tasks were adapted and, where validation chose other settings than the
    preset's (its paper's protocol), the score under the preset's own."""
    how = scores.adaptation
    if how is None:  # a strategy without adaptation steps (ProtoNets)
        return {"adaptation": "-", "protocol": "-", "protocol_accuracy": None}
    protocol = how.protocol_score
    return {
        "adaptation": f"{settings_text(how.settings)} ({how.chosen_on})",
        "protocol": settings_text(how.configured),
        "protocol_accuracy": None if protocol is None else 100 * protocol.mean,
        "protocol_ci95": None if protocol is None else 100 * protocol.ci95,
    }


def _floor(scores: EvalResult) -> dict[str, object]:
    """The no-training floor on the same test tasks."""
    floor = scores.floor
    return {"floor": None if floor is None else 100 * floor.mean}


def _table(rows: list[dict[str, object]]) -> str:
    head = (
        "| preset | budget | wall (outer steps / validation / checkpoints) | steps (best) "
        "| steps/s | adapted with "
        "| test accuracy (tasks) | with the preset's adaptation | floor | target | met |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = "-" if r.get("steps_per_s") is None else f"{r['steps_per_s']:.3f}"
        if r.get("adaptation") == "-":
            protocol = "-"
        elif r.get("protocol_accuracy") is None:
            protocol = "the same"
        else:
            protocol = f"{r['protocol_accuracy']:.2f}% ± {r['protocol_ci95']:.2f} ({r['protocol']})"
        floor = "-" if r.get("floor") is None else f"{r['floor']:.2f}%"
        lines.append(
            f"| {r['preset']} | {r['budget_min']:g} min | {r['trained_min']:.1f} min "
            f"({r['outer_min']:.1f} / {r['validating_min']:.2f} / {r['saving_min']:.2f}) | "
            f"{r['steps']} ({r['best_step']}) | {rate} | "
            f"{r['adaptation']} | {r['accuracy']:.2f}% ± {r['ci95']:.2f} ({r['tasks']}) | "
            f"{protocol} | {floor} | "
            f"≥ {r['target']}% | {'yes' if r['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def _record(table: str, args: argparse.Namespace) -> None:
    runs = " ".join(f"--run {r}" for r in args.run)
    sets = " ".join(f"--set {s}" for s in args.set)
    command = f".venv/bin/python benchmarks/omniglot.py --data-dir {args.data_dir} {runs} {sets}"
    # Each set of presets and overrides (a device, a precision) has a section of its own.
    what = ", ".join(r.split(":")[0] for r in args.run)
    what += f" with {', '.join(args.set)}" if args.set else ""
    title = f"Omniglot under a training budget: {what} (benchmarks/omniglot.py)"
    machine.record(title, command.rstrip(), table)


if __name__ == "__main__":
    main()
