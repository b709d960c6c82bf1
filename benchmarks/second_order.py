"""What the per-task loop's second-order machinery is worth: BatchNorm's derivative, inner grads.

A benchmark, not a test. Second-order MAML's per-task loop (``batching: loop``) runs each task
in :func:`metalearner.nn.layers.per_task_kernels`, where two choices are made:

- BatchNorm: :func:`metalearner.nn.norm.task_batch_norm` (PyTorch's fused kernels with a
  closed-form second derivative) or ``F.batch_norm`` (the same fused kernels, with PyTorch's
  ~100-operation composite double backward);
- the inner gradient: ``torch.autograd.grad`` or ``torch.func.grad`` (functorch wraps every
  operation, and a custom autograd Function such as the lean BatchNorm, in its own layer).

The four combinations run the same meta-step on the same Omniglot-shaped batch as
benchmarks/maml_speed.py, interleaved round by round in one process so that machine load
spreads over all of them alike, and each is checked to compute the same meta-gradient in
float64. "stock + torch.func" is what the loop did before metalearner.nn.norm.

Usage:
    .venv/bin/python benchmarks/second_order.py [--settings 5way 20way] [--rounds 5] [--record]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

import metalearner.functional.core as fx
import metalearner.nn.layers as layers
from machine import record  # benchmarks/machine.py
from maml_speed import SETTINGS, build_path  # benchmarks/maml_speed.py
from metalearner.nn.norm import task_batch_norm
from metalearner.runs.devices import retain_freed_memory


def stock_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    return F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)


VARIANTS = {  # name -> (BatchNorm in per-task code, inner gradients by torch.autograd)
    "lean + torch.autograd": (task_batch_norm, True),
    "lean + torch.func": (task_batch_norm, False),
    "stock + torch.autograd": (stock_batch_norm, True),
    "stock + torch.func": (stock_batch_norm, False),
}
BASELINE = "stock + torch.func"


@contextmanager
def variant(name: str) -> Iterator[None]:
    """The per-task loop with one variant's BatchNorm and inner-gradient API."""
    norm, use_autograd = VARIANTS[name]
    saved = layers.task_batch_norm, fx.per_task_eager
    layers.task_batch_norm = norm
    if not use_autograd:
        fx.per_task_eager = lambda: False  # adapt then takes torch.func.grad, as outside
    try:
        yield
    finally:
        layers.task_batch_norm, fx.per_task_eager = saved


def step_of(name: str, setting: str, dtype: torch.dtype) -> Callable[[], Tensor]:
    _, flat = build_path("ours: loop", setting, torch.device("cpu"), dtype)

    def run() -> Tensor:
        with variant(name):
            return flat()

    return run


def measure(setting: str, rounds: int) -> str:
    reference = step_of(BASELINE, setting, torch.float64)()
    errors = {}
    for name in VARIANTS:
        grads = step_of(name, setting, torch.float64)()
        errors[name] = float((grads - reference).norm() / reference.norm())
    steps = {name: step_of(name, setting, torch.float32) for name in VARIANTS}
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[BASELINE])
    n, k, q, tasks, inner, lr = SETTINGS[setting]
    lines = [
        f"{setting}: {n}-way {k}-shot {q}-query, meta-batch {tasks}, {inner} inner step(s), "
        f"lr {lr}; float32, {rounds} interleaved rounds",
        "",
        f"{'variant':24s} {'min s':>7s} {'median s':>9s} {'speed-up':>9s} {'f64 err':>9s}",
        "-" * 62,
    ]
    for name, t in times.items():
        median = statistics.median(t)
        lines.append(
            f"{name:24s} {min(t):7.3f} {median:9.3f} {base / median:8.2f}x {errors[name]:9.1e}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    retain_freed_memory()  # as a metalearner run and every maml_speed.py worker do
    tables = []
    for setting in args.settings:
        tables.append(measure(setting, args.rounds))
        print(tables[-1] + "\n", flush=True)
    if args.record:
        command = f".venv/bin/python {shlex.join(sys.argv)}"
        body = "\n\n".join(f"```\n{t}\n```" for t in tables)
        record("Second-order machinery of the per-task loop (benchmarks/second_order.py)",
               command, body)  # fmt: skip


if __name__ == "__main__":
    main()
