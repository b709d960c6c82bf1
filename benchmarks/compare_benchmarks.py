"""Two benchmark folders' scores of the same strategies, paired on their shared test tasks.

A benchmark, not a test. ``metalearner benchmark`` pairs the strategies of one run; this pairs
one strategy across two runs that differ in one setting (``--set model.norm=inductive`` against
the default, a longer budget, another commit), which scored the same fixed test tasks: the same
dataset, task shape, number of tasks and seed, checked from both folders' plans before anything
is compared. Each row: both scores with their 95% CIs, and the mean per-task difference (second
minus first) with its paired 95% CI and p-value (``metalearner.evaluation.paired``).

Usage:
    .venv/bin/python benchmarks/compare_benchmarks.py FIRST SECOND [--label-first transductive]
        [--label-second inductive] [--record "TITLE"]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

import machine  # benchmarks/machine.py
from metalearner.evaluation.paired import paired
from metalearner.evaluation.scores import summarize

# What fixes a benchmark's test tasks: runs that agree on these scored the same tasks.
SAME_TASKS = ("dataset", "path", "ways", "shots", "queries", "tasks", "seed")


def results(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A benchmark folder's plan and each strategy's stored result."""
    found = {}
    plan: dict[str, Any] = {}
    for path in sorted((folder / "results").glob("*.json")):
        stored = json.loads(path.read_text())
        plan = stored["key"]["plan"]
        found[stored["result"]["strategy"]] = stored["result"]
    if not found:
        sys.exit(f"{folder} holds no scored strategy (results/*.json); run the benchmark first.")
    return plan, found


def mean_ci(scores: list[float]) -> str:
    """``98.06% ± 0.28``: the mean per-task accuracy and its 95% CI, as the reports print it."""
    score = summarize(torch.tensor(scores, dtype=torch.float64))
    return f"{100 * score.mean:.2f}% ± {100 * score.ci95:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--label-first", default="first")
    parser.add_argument("--label-second", default="second")
    parser.add_argument("--record", default="", help="RESULTS.md section title")
    args = parser.parse_args()
    (plan_a, a), (plan_b, b) = results(args.first), results(args.second)
    differ = [k for k in SAME_TASKS if plan_a.get(k) != plan_b.get(k)]
    if differ:
        sys.exit(f"The two benchmarks scored different test tasks ({', '.join(differ)} differ).")
    one, two = args.label_first, args.label_second
    rows = [
        f"| strategy | {one} | {two} | {two} − {one} (paired 95% CI) | p "
        f"| tasks {two} better / worse |",
        "|---|---|---|---|---|---|",
    ]
    for name in [s for s in a if s in b]:
        x, y = a[name]["scores"], b[name]["scores"]
        d = paired(two, one, y, x)
        rows.append(
            f"| {name} | {mean_ci(x)} | {mean_ci(y)} | {100 * d.mean:+.2f} ± {100 * d.ci95:.2f} "
            f"pts | {d.p:.2g} | {d.wins} / {d.losses} |"
        )
    table = "\n".join(rows)
    print(table)
    if args.record:
        command = " ".join(shlex.quote(w) for w in [".venv/bin/python", *sys.argv])
        machine.record(args.record, command, table)


if __name__ == "__main__":
    main()
