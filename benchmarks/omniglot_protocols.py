"""One checkpoint, two Omniglot test protocols: upright test characters, or each rotation a class.

A benchmark, not a test. Finn et al.'s MAML code and Snell et al.'s ProtoNets code draw their
test tasks from the test characters at 0, 90, 180 and 270 degrees, each rotation a class of its
own (``data.test_rotations``); before, every run here was tested on upright characters alone.
This scores each given run's best checkpoint, with the adaptation its run chose on validation,
on the 600 test tasks of its config drawn both ways, so the protocol's share of a gap to a
published number is measured rather than guessed.

Usage:
    .venv/bin/python benchmarks/omniglot_protocols.py --data-dir ../shared/data RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from metalearner.evaluation.choice import adapted, stored_choice
from metalearner.evaluation.evaluator import summarize, task_scores
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.runs.folder import load_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (Omniglot)")
    args = parser.parse_args()
    print("| run | split | step | upright test characters | rotated, a class each |")
    print("|---|---|---|---|---|")
    for folder in args.runs:
        cfg = load_config(folder / "config.yaml")
        path = folder / "checkpoints" / "best"
        state, ckpt = load_state(path)
        scores = []
        for rotated in (False, True):
            data = dataclasses.replace(cfg.data, test_rotations=rotated)
            tested = dataclasses.replace(cfg, data=data)
            exp = build_experiment(tested, data_dir=args.data_dir, start=False)
            strategy = adapted(exp.strategy, stored_choice(ckpt.meta, cfg.strategy), path)
            params = exp.strategy.completed(state.params)
            s = summarize(task_scores(strategy, params, exp.test_tasks(tested)))
            scores.append(f"{s.mean:.2%} ± {100 * s.ci95:.2f}")
        print(f"| {folder.name} | {cfg.data.split} | {state.step} | {' | '.join(scores)} |")


if __name__ == "__main__":
    main()
