"""Meta-steps per second on 1 and 2 processes (torchrun, gloo) on the CPU (a benchmark).

Each workload is meta-trained for ``--steps`` outer steps three ways, as a user would run it:
one process with one thread, one process with two threads (what a 2-core machine gives without
torchrun), and ``torchrun --nproc-per-node 2`` with one thread per rank, each rank taking half
of every meta-batch. A step's time is read from the run's ``metrics.jsonl`` (training seconds
only, no validation or checkpoints); the first steps are dropped as warm-up and the median
taken. Scaling efficiency = (2-process rate) / (2 x 1-process 1-thread rate).

Usage:
    .venv/bin/python benchmarks/distributed.py --data-dir ../shared/data --record
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import machine  # benchmarks/machine.py
from metalearner.runs.folder import read_metrics

# (label, preset, extra settings): the paper's MAML meta-batch, and ProtoNets' cheap steps
# where the all-reduce of the gradients weighs most.
WORKLOADS = [
    ("MAML 5-way 1-shot, meta-batch 32", "omniglot-5w1s-maml", []),
    ("ProtoNets 60-way train, meta-batch 2", "omniglot-5w1s-protonet", ["meta_batch=2"]),
]
WARMUP = 2


def step_seconds(run: Path) -> float:
    """Median seconds per outer step after the warm-up steps."""
    times = [0.0, *(r["time"] for r in read_metrics(run))]
    steps = [b - a for a, b in itertools.pairwise(times)][WARMUP:]
    return statistics.median(steps)


def train(
    preset: str, extra: list[str], out: Path, *, procs: int, threads: int, args: argparse.Namespace
) -> float:
    settings = [*extra, f"steps={args.steps}", f"val_every={args.steps}", "val_tasks=2"]
    settings += ["log_every=1", f"threads={threads}"]
    cmd = ["-m", "metalearner", "train", "--preset", preset, "--data-dir", str(args.data_dir)]
    cmd += [*(f"--set={s}" for s in settings), f"--out={out}", "-q"]
    if procs > 1:
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
        cmd = [*launch, *cmd]
    shutil.rmtree(out, ignore_errors=True)
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *cmd], check=True, env=env, capture_output=True, text=True)
    return step_seconds(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12, help="outer steps per measurement")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-distributed"))
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    head = "| workload | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs x 1 thread |"
    rows = [
        head + " efficiency | vs 1 proc x 2 threads |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, preset, extra in WORKLOADS:
        base = args.out / preset
        one = train(preset, extra, base / "p1t1", procs=1, threads=1, args=args)
        both = train(preset, extra, base / "p1t2", procs=1, threads=2, args=args)
        two = train(preset, extra, base / "p2t1", procs=2, threads=1, args=args)
        rates = " | ".join(f"{1 / s:.3f} steps/s ({s:.2f} s)" for s in (one, both, two))
        rows.append(f"| {label} | {rates} | {one / two / 2:.2f} | {both / two:.2f}x |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.record:
        command = " ".join(["python", "benchmarks/distributed.py", *sys.argv[1:]])
        body = (
            f"{table}\n\nMedian of {args.steps - WARMUP} steps after {WARMUP} warm-up steps; "
            "training seconds from metrics.jsonl (no validation or checkpoints)."
        )
        title = "Meta-training on 1 and 2 processes (benchmarks/distributed.py)"
        machine.record(title, command, body)


if __name__ == "__main__":
    main()
