"""ProtoNets' training step under each ``batching``: loop, vmap, compiled episodes (a benchmark).

Trains a ProtoNets preset for a fixed number of steps through ``metalearner train`` (validated
at its last step only), once per batching and precision, rounds alternated so that load from
elsewhere spreads over every setting, and reads the run's own clock (metrics.jsonl's ``time``:
seconds in outer steps, no validation in it). Steps/s is taken after the first ``--warm``
steps, so a compiled episode's compilation (and the first allocations) shows only in the first
column. This is what ``ProtoNet.MEASURED`` (the path ``batching: auto`` takes on each device)
and the README's word on ``compiled`` rest on; on a GPU session pass ``--device cuda``.

Usage:
    .venv/bin/python benchmarks/protonet_batching.py --data-dir ../shared/data [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import machine  # benchmarks/machine.py

BATCHINGS = ("loop", "vmap", "compiled")
PRECISIONS = ("bfloat16", "float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--preset", default="omniglot-5w1s-protonet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=700, help="steps each run trains")
    parser.add_argument("--warm", type=int, default=200, help="steps before the timed ones")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not 0 < args.warm < args.steps or args.steps % 100 or args.warm % 100:
        raise SystemExit("--warm and --steps must be multiples of 100 with 0 < warm < steps.")
    rates: dict[tuple[str, str], list[float]] = {}
    firsts: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for prec in PRECISIONS:
            for batching in BATCHINGS:
                first, rate = _train(args, prec, batching)
                firsts.setdefault((prec, batching), []).append(first)
                rates.setdefault((prec, batching), []).append(rate)
                print(f"{prec} {batching}: first 100 steps {first:.1f} s, {rate:.2f} steps/s",
                      flush=True)  # fmt: skip
    rows = [
        f"| precision | batching | first 100 steps (s) | steps/s after step {args.warm} "
        "(rounds) | × loop |",
        "|---|---|---|---|---|",
    ]
    for prec in PRECISIONS:
        loop = statistics.median(rates[(prec, "loop")])
        for batching in BATCHINGS:
            rate = statistics.median(rates[(prec, batching)])
            each = ", ".join(f"{r:.2f}" for r in rates[(prec, batching)])
            first = statistics.median(firsts[(prec, batching)])
            rows.append(
                f"| {prec} | {batching} | {first:.1f} | {rate:.2f} ({each}) | {rate / loop:.2f} |"
            )
    table = "\n".join(rows)
    print(table)
    if not args.no_record:
        command = (
            f".venv/bin/python benchmarks/protonet_batching.py --data-dir {args.data_dir} "
            f"--preset {args.preset} --device {args.device} --steps {args.steps} "
            f"--warm {args.warm} --rounds {args.rounds}"
        )
        title = f"ProtoNets' batching on {args.device}: {args.preset}"
        machine.record(title + " (benchmarks/protonet_batching.py)", command, table)


def _train(args: argparse.Namespace, prec: str, batching: str) -> tuple[float, float]:
    """(seconds of the first 100 steps, steps/s after ``warm``) of one fresh training run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        sets = [
            f"steps={args.steps}", "val_every=1000000", "log_every=100", f"precision={prec}",
            f"strategy_config.batching={batching}", f"device={args.device}",
        ]  # fmt: skip
        command = [sys.executable, "-m", "metalearner", "train", "--preset", args.preset,
                   "--data-dir", str(args.data_dir), "--out", str(out), "-q"]  # fmt: skip
        subprocess.run(
            [*command, *(f"--set={s}" for s in sets)], check=True, stdout=subprocess.DEVNULL
        )
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    clock = {line["step"]: line["time"] for line in lines if "time" in line}
    return clock[100], (args.steps - args.warm) / (clock[args.steps] - clock[args.warm])


if __name__ == "__main__":
    main()
