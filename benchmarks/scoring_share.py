"""How a `metalearner benchmark`'s wall time splits between training and scoring (issue 28).

A benchmark, not a test. It runs one benchmark in this process, timing each stage from outside
(so that it measures any version of the code alike): the training stage, and each strategy's
scoring on the whole suite (the main test tasks, the score-vs-steps curve, the shots and
label-noise sweeps), and the validations within training. Each run's metrics.jsonl gives its
seconds of outer steps (what the budget counts). Every stage runs on ``--threads`` torch threads
(1: on a machine shared with other work, CPU seconds then say what an idle core would take).

A default benchmark (600 test tasks, 200 per sweep point, 100 validation tasks, 10 minutes of
training per strategy) takes hours on a 2-core CPU, so the run here is a scaled one: ``--scale``
divides every task count, and the estimate for the defaults multiplies the scoring and the
validation seconds back by it (both are linear in tasks) and replaces the measured training
seconds by the default budget. Setup (building each experiment, decoding) is not scaled. With
``--quick`` the benchmark is ``benchmark --quick`` (100 test tasks, no sweeps), whose scoring is
not scaled either.

Usage:
    .venv/bin/python benchmarks/scoring_share.py --data-dir ../shared/data [--scale 10]
        [--budget 20s] [--threads 1] [--quick] [--json out.json] [--out folder]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from metalearner.benchmark import BenchmarkPlan, load_plan
from metalearner.benchmark import runner as stages
from metalearner.runs.folder import read_metrics
from metalearner.training import loop

DEFAULT = {"tasks": 600, "sweep_tasks": 200, "val_tasks": 100, "budget_s": 600.0}
STRATEGIES = ",".join(BenchmarkPlan().strategies)  # the plan's default list


def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Runs the scaled benchmark into ``out``; the seconds of each stage."""
    scale = args.scale
    # --quick scores its own default of test tasks (and no sweeps): those are not scaled.
    tasks = (
        {}
        if args.quick
        else {"tasks": DEFAULT["tasks"] // scale, "sweep_tasks": DEFAULT["sweep_tasks"] // scale}
    )
    plan = load_plan(
        dataset="omniglot", ways=5, shots=1, strategies=args.strategies, budget=args.budget,
        val_tasks=DEFAULT["val_tasks"] // scale, quick=args.quick or None, **tasks,
    )  # fmt: skip
    timed: dict[str, Any] = {"scoring": {}, "scoring_cpu": {}, "validation": 0.0}
    timed |= {"validation_cpu": 0.0, "choice": 0.0, "choice_cpu": 0.0}
    train_all, score_strategy = stages.train_all, stages.score_strategy
    validate, choose = loop.task_scores, loop.choose_adaptation

    def accumulated(fn: Any, key: str) -> Any:
        """``fn``, its wall and CPU seconds added to ``timed[key]`` and ``timed[key + "_cpu"]``."""

        def timed_fn(*a: Any, **k: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                timed[key] += time.perf_counter() - started
                timed[key + "_cpu"] += time.process_time() - cpu

        return timed_fn

    # Validation, and the adaptation chosen on the validation tasks when each run ends: both
    # linear in the validation tasks, both part of training (model selection).
    timed_validate = accumulated(validate, "validation")
    timed_choice = accumulated(choose, "choice")

    def timed_train_all(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return train_all(*a, **k)
        finally:
            timed["training"] = time.perf_counter() - started

    def timed_score(trained: Any, *a: Any, **k: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return score_strategy(trained, *a, **k)
        finally:
            timed["scoring"][trained.strategy] = time.perf_counter() - started
            timed["scoring_cpu"][trained.strategy] = time.process_time() - cpu

    stages.train_all, stages.score_strategy = timed_train_all, timed_score
    loop.task_scores, loop.choose_adaptation = timed_validate, timed_choice
    started = time.perf_counter()
    try:
        stages.run_benchmark(plan, out, data_dir=args.data_dir, quiet=True, log=lambda _: None)
    finally:
        stages.train_all, stages.score_strategy = train_all, score_strategy
        loop.task_scores, loop.choose_adaptation = validate, choose
    timed["total"] = time.perf_counter() - started
    runs = {}
    for name in plan.strategies:
        records = read_metrics(out / name) if (out / name).is_dir() else []
        if records:
            runs[name] = {"steps_s": records[-1]["time"], "wall_s": records[-1]["wall"]}
    timed["runs"] = runs
    return timed


def estimate(
    timed: dict[str, Any], scale: int, *, quick: bool = False, cpu: bool = False
) -> dict[str, float]:
    """The defaults' training and scoring seconds from a run scaled down by ``scale`` (its
    scoring not, with ``quick``): from wall seconds, or (``cpu``) from the CPU seconds of
    scoring and validation (what they would take on a machine with nothing else running)."""
    suffix = "_cpu" if cpu else ""
    scoring = (1 if quick else scale) * sum(timed["scoring" + suffix].values())
    validation = timed["validation" + suffix]
    # The adaptation chosen on the validation tasks when each run ends: model selection, part
    # of training as validation is, linear in the validation tasks (which --quick keeps).
    choice = scale * timed["choice" + suffix]
    steps = sum(r["steps_s"] for r in timed["runs"].values())
    # The training stage: outer steps (the budget), validations and the choice (linear in
    # tasks), the rest (building each run, checkpoints, the transfer runs' mean feature) as
    # measured.
    rest = timed["training"] - steps - timed["validation"] - timed["choice"]
    training = len(timed["runs"]) * DEFAULT["budget_s"] + scale * validation + choice + rest
    total = scoring + training
    return {
        "training_s": training, "scoring_s": scoring, "choice_s": choice,
        "share": scoring / total, "share_with_choice": (scoring + choice) / total,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--strategies", default=STRATEGIES)
    parser.add_argument("--budget", default="20s")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="benchmark --quick")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (all stages)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--out", type=Path, help="keep the benchmark folder here (new or empty)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.out is not None:
        timed = measure(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            timed = measure(args, Path(tmp) / "b")
    print(f"load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} torch threads")
    print(f"whole benchmark {timed['total']:.0f} s: training stage {timed['training']:.0f} s")
    print("| strategy | outer steps s | run wall s | scoring wall s | scoring CPU s |")
    print("|---|---|---|---|---|")
    for name, seconds in timed["scoring"].items():
        run = timed["runs"].get(name, {})
        steps, wall = run.get("steps_s", 0.0), run.get("wall_s", 0.0)
        cpu = timed["scoring_cpu"][name]
        print(f"| {name} | {steps:.0f} | {wall:.0f} | {seconds:.1f} | {cpu:.1f} |")
    scoring = sum(timed["scoring"].values())
    print(f"measured: scoring {scoring:.0f} s of {timed['total']:.0f} s "
          f"({100 * scoring / timed['total']:.0f}%)")  # fmt: skip
    print(f"validation within training: {timed['validation']:.0f} s wall, "
          f"{timed['validation_cpu']:.0f} s CPU; adaptation chosen at the end of the runs: "
          f"{timed['choice']:.0f} s wall, {timed['choice_cpu']:.0f} s CPU")  # fmt: skip
    for cpu in (False, True):
        est = estimate(timed, args.scale, quick=args.quick, cpu=cpu)
        print(f"defaults (10 min each, tasks x{args.scale}{' but --quick' * args.quick}, from "
              f"{'CPU' if cpu else 'wall'} "
              f"seconds): training {est['training_s']:.0f} s, scoring {est['scoring_s']:.0f} "
              f"s, scoring share {100 * est['share']:.0f}% (counting the adaptation chosen "
              f"on validation, {est['choice_s']:.0f} s, as scoring: "
              f"{100 * est['share_with_choice']:.0f}%)")  # fmt: skip
        timed["defaults_cpu" if cpu else "defaults"] = est
    if args.json:
        args.json.write_text(json.dumps(timed, indent=1) + "\n")


if __name__ == "__main__":
    main()
