"""What deterministic mode's NaN-filling of new tensors costs a training step (a benchmark).

Training runs in deterministic mode for bit-identical resumes
(:func:`metalearner.runs.devices.deterministic`). By default PyTorch's deterministic mode also
fills every ``torch.empty`` with NaN (``torch.utils.deterministic.fill_uninitialized_memory``),
a pass over each new buffer that changes nothing for a program that never reads memory it has
not written; the project turns it off. This times each preset's meta-step through its run's
strategy (the experiment's own tasks, model and precision) in fresh processes, filling and not,
alternated round after round so that load from elsewhere spreads over both, and prints the
median milliseconds a step and their ratio.

Usage:
    .venv/bin/python benchmarks/deterministic_fill.py --data-dir ../shared/data [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import machine  # benchmarks/machine.py

# (preset, its overrides): ProtoNets as the 20-minute runs train it, MAML's per-task loop.
CASES = [
    ("omniglot-5w1s-protonet", ["precision=bfloat16"]),
    ("omniglot-20w1s-protonet", ["precision=bfloat16"]),
    ("omniglot-5w1s-maml", []),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0, help="timed per process")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.data_dir, args.seconds)
        return
    rows = ["| preset | filled: ms a step | not filled | filled / not |", "|---|---|---|---|"]
    for preset, sets in CASES:
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for fill in (True, False):
                out = subprocess.run(
                    [sys.executable, __file__, "--data-dir", str(args.data_dir), "--seconds",
                     str(args.seconds), "--worker", preset, str(fill), *sets],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                times[fill].append(json.loads(out.splitlines()[-1])["ms"])
        filled, plain = (statistics.median(times[f]) for f in (True, False))
        name = preset + "".join(f", {s}" for s in sets)
        rows.append(f"| {name} | {filled:.1f} | {plain:.1f} | {filled / plain:.3f} |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if not args.no_record:
        command = (
            f".venv/bin/python benchmarks/deterministic_fill.py --data-dir {args.data_dir} "
            f"--rounds {args.rounds}"
        )
        machine.record("Deterministic mode's filling of new tensors (benchmarks/"
                       "deterministic_fill.py)", command, table)  # fmt: skip


def _worker(spec: list[str], data_dir: Path, seconds: float) -> None:
    import torch

    from metalearner.config.presets import get_preset
    from metalearner.runs.config import load_config
    from metalearner.runs.devices import deterministic, precision, torch_device
    from metalearner.runs.experiment import build_experiment, seeded, task_stream

    preset, fill, sets = spec[0], spec[1] == "True", spec[2:]
    cfg = load_config(base=get_preset(preset).load(), overrides=sets)
    device = torch_device("cpu")
    deterministic()
    torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
    exp = build_experiment(cfg, data_dir=data_dir)
    params = exp.strategy.init_params(seeded(cfg.seed))
    tasks = task_stream(cfg.seed)

    def step(number: int) -> None:
        batch = exp.training_batch(number, cfg.meta_batch or 1, tasks)
        with precision(cfg.precision, device, autocast=not exp.strategy.applies_precision):
            exp.strategy.meta_grads(params, batch)

    for number in range(5):  # warm-up: first allocations, kernels' one-time set-up
        step(number)
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        step(steps)
        steps += 1
    print(json.dumps({"ms": 1000 * (time.perf_counter() - started) / steps}))


if __name__ == "__main__":
    main()
