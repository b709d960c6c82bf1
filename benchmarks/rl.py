"""Meta-RL under a wall-clock budget: MAML-TRPO vs pretrained vs random (a benchmark, not a test).

For each environment, meta-trains MAML-TRPO with the paper's settings for at most ``--minutes``
of training, then the pretrained baseline with the same budget and environment steps per
iteration (``metalearner rl train --baselines``), and evaluates all three policies (the third is
the random initialisation) on the same fixed test tasks: average return before and after 1, 2, 3
policy-gradient steps, mean ± 95% CI over tasks. Prints a table; ``--record`` writes it into
benchmarks/RESULTS.md with the command, the machine and the commit, in place of the last run of
the same environments (and writes rl.json).

Published (MAML, after one step): 2D navigation −20.3 ± 3.2 (Raghu et al. 2020, ANIL paper's
reproduction), HalfCheetah velocity −139.0 ± 18.9; both after hundreds of meta-iterations.

Running the same command again resumes unfinished runs (a run that used its budget is only
evaluated again). Each environment's runs use one CPU thread, so on a 2-core machine two
processes, ``--envs navigation2d`` and ``--envs halfcheetah-vel``, run side by side.

Usage:
    .venv/bin/python benchmarks/rl.py --minutes 30 --envs navigation2d,halfcheetah-vel --record
    .venv/bin/python benchmarks/rl.py --minutes 0.2 --tasks 4 --out /tmp/rl-smoke   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import machine  # benchmarks/machine.py
from metalearner.rl.config import load_rl_config, read_config
from metalearner.rl.evaluate import evaluate_rl
from metalearner.rl.families import get_family
from metalearner.rl.train import PRETRAIN, train_rl
from metalearner.runs.folder import CONFIG, read_metrics

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="training budget per run")
    parser.add_argument("--envs", default="navigation2d,halfcheetah-vel")
    parser.add_argument("--tasks", type=int, default=40, help="fixed test tasks")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-rl"))
    parser.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--record", action="store_true", help="record in RESULTS.md")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    for env in args.envs.split(","):
        folder = args.out / env
        started = time.perf_counter()
        if (folder / CONFIG).exists():
            train_rl(read_config(folder / CONFIG), folder, resume=True, quiet=True)
        else:
            sets = [f"time_budget={args.minutes * 60}", "iterations=100000", "baselines=true"]
            cfg = load_rl_config(env, [*sets, *args.set])
            train_rl(cfg, folder, quiet=True)
        trained = time.perf_counter() - started
        scores = evaluate_rl(folder, num_tasks=args.tasks)
        speed = {"maml": _seconds(folder), "pretrained": _seconds(folder / PRETRAIN), "random": 0}
        for curve in scores.curves:
            rows.append({
                "env": env, "policy": curve.policy, "budget_min": args.minutes,
                "iterations": scores.iterations[curve.policy],
                "s_per_iteration": speed[curve.policy], "mean": curve.mean, "ci95": curve.ci95,
                "tasks": scores.num_tasks, "published": get_family(env).published,
                "wall_min": trained / 60,
            })  # fmt: skip
        print(_table([r for r in rows if r["env"] == env]), flush=True)
    table = _table(rows)
    print(table)
    if args.record:
        # Other environments' rows stay: each environment may be run by its own process.
        saved = HERE / "rl.json"
        kept = json.loads(saved.read_text()) if saved.exists() else []
        envs = {r["env"] for r in rows}
        kept = [r for r in kept if r["env"] not in envs]
        saved.write_text(json.dumps([*kept, *rows], indent=2) + "\n")
        sets = " ".join(f"--set {s}" for s in args.set)
        command = (
            f".venv/bin/python benchmarks/rl.py --minutes {args.minutes:g} --envs {args.envs} "
            f"--tasks {args.tasks} {sets} --record"
        ).strip()
        envs_title = ", ".join(args.envs.split(","))  # each set of environments has its section
        title = f"Meta-RL under a training budget: {envs_title} (benchmarks/rl.py)"
        machine.record(title, command, table)


def _seconds(folder: Path) -> float:
    """Mean seconds per iteration of a run (rollouts and update)."""
    lines = read_metrics(folder)
    return sum(r["seconds"] for r in lines) / len(lines) if lines else float("nan")


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| env | policy | budget | iterations (s each) | before | after 1 step | after 2 steps "
        "| after 3 steps | published |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{m:.1f} ± {h:.1f}" for m, h in zip(r["mean"], r["ci95"], strict=True)]
        cells += [""] * (4 - len(cells))
        budget = "untrained" if r["policy"] == "random" else f"{r['budget_min']:g} min"
        lines.append(
            f"| {r['env']} | {r['policy']} | {budget} | {r['iterations']} "
            f"({r['s_per_iteration']:.1f}) | {' | '.join(cells[:4])} | "
            f"{r['published'] if r['policy'] == 'maml' else ''} |"
        )
    return (
        "\n".join(lines) + f"\n\n{rows[0]['tasks'] if rows else 0} fixed test tasks, mean ± 95% CI."
    )


if __name__ == "__main__":
    main()
