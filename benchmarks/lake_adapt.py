"""Lake's 20-way one-shot runs as a user would meet them: folders of PNGs through ``adapt``.

A benchmark, not a test. Meta-trains a strategy on Omniglot's background alphabets only (Lake's
split: the runs' evaluation alphabets are never seen; checkpoint and adaptation chosen on tasks
within one of the 5 validation alphabets, the kind of task Lake's runs are), lays the 20 runs
out as task folders (``runNN/support/<class>/``, ``runNN/query/<class>/``, the original PNGs),
and runs ``metalearner adapt RUN --support runNN/support --query runNN/query`` on each, as a
user would. Prints each run's accuracy and the mean over the runs ± 1.96·sd/√20, and appends
the table to benchmarks/RESULTS.md.

Usage:
    .venv/bin/python benchmarks/lake_adapt.py --data-dir ../shared/data \
        --preset omniglot-20w1s-protonet --minutes 10 [--set KEY=VALUE ...] [--run EXISTING_RUN]
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py
from metalearner.config.presets import get_preset
from metalearner.runs.config import load_config
from metalearner.tasks import export_lake_runs
from metalearner.training.loop import meta_train

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--preset", default="omniglot-20w1s-protonet")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--run", type=Path, help="adapt this run instead of training one")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-lake"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    run, trained = args.run, "given"
    if run is None:
        cfg = load_config(
            base=get_preset(args.preset).load(),
            # Validated as Lake's runs are drawn: upright characters of one unseen alphabet.
            overrides=[
                "data.split=lake",
                "data.test_rotations=false",
                "data.val_within_groups=true",
                f"time_budget={args.minutes * 60}",
                *args.set,
            ],
        )
        started = time.perf_counter()
        result = meta_train(cfg, args.out, data_dir=args.data_dir, quiet=True)
        run = args.out
        trained = f"{args.preset} on the background alphabets (data.split=lake"
        trained += "".join(f", {o}" for o in args.set)
        trained += f"), {result.step} steps in {(time.perf_counter() - started) / 60:.1f} min"
        if result.best is not None and cfg.data.train_on_val:  # nothing chosen on it
            trained += f", validation {result.best['score']:.2%} (of characters trained on)"
        elif result.best is not None:
            trained += f", best validation {result.best['score']:.2%} at step "
            trained += f"{int(result.best['step'])}"
    scores = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in export_lake_runs(tmp, args.data_dir):
            out = subprocess.run(
                [sys.executable, "-m", "metalearner", "adapt", str(run), "--support",
                 str(folder / "support"), "--query", str(folder / "query"), "--output",
                 str(folder / "predictions.csv")],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            found = re.search(r"accuracy ([\d.]+)%", out)
            assert found, out
            scores.append(float(found.group(1)))
            print(f"{folder.name}: {scores[-1]:.1f}%", flush=True)
    mean = statistics.fmean(scores)
    ci = 1.96 * statistics.stdev(scores) / math.sqrt(len(scores))
    line = f"| {trained} | {len(scores)} | {mean:.2f}% ± {ci:.2f} | "
    line += f"{min(scores):.0f}% – {max(scores):.0f}% |"
    table = "| model | runs | accuracy (mean ± 95% CI) | range |\n|---|---|---|---|\n" + line
    if trained != "given":
        table += f"\n\n- {machine.validation_curve(run)}"
    print(table)
    if not args.no_record:
        machine.record(
            "Lake's 20-way runs as task folders through `metalearner adapt` "
            "(benchmarks/lake_adapt.py)",
            " ".join([".venv/bin/python benchmarks/lake_adapt.py", *sys.argv[1:]]),
            table,
        )


if __name__ == "__main__":
    main()
