"""Seconds per outer step of every preset on this machine, for ``metalearner presets``.

A benchmark, not a test. Each preset trains a few outer steps in a temporary folder (its own
config, only ``steps`` raised past what is timed and validation pushed beyond it); the seconds
of outer steps come from the run's metrics.jsonl (``time``: what a budget counts, without
validation, checkpoints or data loading). The first step is a warm-up and is not counted; the
number of timed steps is chosen from it to take about ``--seconds`` each. The result goes to
``src/metalearner/config/preset_costs.json`` (``--out`` elsewhere) with the machine, for the
device measured; other devices' numbers already in the file are kept.

Usage:
    .venv/bin/python benchmarks/preset_costs.py --data-dir ../shared/data [--device cpu]
        [--seconds 20] [--only NAME,...] [--note "on shaped_data.py stand-ins"]
        [--per-task NAME,...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from metalearner.config import get_preset, list_presets, read_yaml
from metalearner.runs.config import load_config
from metalearner.runs.folder import read_metrics
from metalearner.training.loop import meta_train

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "metalearner" / "config" / "preset_costs.json"


def seconds_per_step(
    name: str, args: argparse.Namespace, folder: Path, *, per_task: bool = False
) -> tuple[float, int]:
    """The preset's seconds per outer step (after one warm-up step), and its steps.

    ``per_task``: steps of one task are timed and the time multiplied by the preset's meta-batch
    (a meta-step costs its tasks' sum), for a meta-batch whose activations would not fit in
    this machine's memory at once.
    """
    raw = read_yaml(get_preset(name).path)
    base = load_config(base=raw)
    steps, tasks = int(base.steps), int(base.meta_batch or 1)
    one = ["meta_batch=1"] if per_task else []

    def train(until: int, *, resume: bool) -> float:
        far = 10 * until + 1000  # no validation or schedule end within what is timed
        cfg = load_config(
            base=raw,
            overrides=[
                f"steps={far}", f"val_every={far}", "log_every=1", f"device={args.device}",
                # A run stopped early validates as at its end: a few tasks, as that is not timed.
                "val_tasks=5", *one,
            ],
        )  # fmt: skip
        meta_train(cfg, folder, resume=resume, data_dir=args.data_dir, quiet=True, stop_at=until)
        return float(read_metrics(folder)[-1]["time"])

    warm = train(1, resume=False)
    first = train(2, resume=True) - warm  # one timed step says how many fit in the time
    timed = max(2, min(200, math.ceil(args.seconds / max(first, 1e-3))))
    total = train(2 + timed, resume=True) - warm
    return total / (1 + timed) * (tasks if per_task else 1), steps


def machine(device: str) -> str:
    """The machine in words: its CPU and threads (or GPU), and torch's version."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{cores}-core {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per preset")
    parser.add_argument("--only", default="", help="comma-separated presets (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--note", default="", help="recorded with each preset measured now")
    parser.add_argument(
        "--per-task",
        default="",
        help="comma-separated presets timed a task at a time (their meta-batch does not fit)",
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or [p.name for p in list_presets()]
    raw: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    when = f"commit {commit}, {datetime.date.today().isoformat()}"
    machines = raw.setdefault("machines", {})
    if not args.only or args.device not in machines:
        machines[args.device] = f"{machine(args.device)}; {when}"
    presets = raw.setdefault("presets", {})
    per_task = {n for n in args.per_task.split(",") if n}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            one = name in per_task
            per_step, steps = seconds_per_step(name, args, Path(tmp) / "run", per_task=one)
        entry = presets.setdefault(name, {"seconds_per_step": {}})
        entry["seconds_per_step"][args.device] = round(per_step, 4)
        entry["steps"] = steps
        # When and on what: a preset measured alone (--only) may be of another commit than the
        # machine line's, or on stand-ins of its data (benchmarks/shaped_data.py).
        how = "; timed a task at a time × the meta-batch (all at once exceed the memory)"
        note = f"{when}{args.note and '; ' + args.note}{how if one else ''}"
        entry.setdefault("measured", {})[args.device] = note
        print(f"{name}: {per_step:.3f} s/step × {steps}", flush=True)
        # After each preset, so that a run killed later (out of memory) keeps what it measured.
        write_json(args.out, raw)
    print(f"wrote {args.out}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` into ``path`` atomically: a temporary file beside it, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
