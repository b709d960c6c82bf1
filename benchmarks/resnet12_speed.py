"""Second-order MAML meta-steps with ResNet-12 beside conv4 at 84x84: time and peak memory.

A benchmark, not a test. Both networks take the same meta-step (mean query cross-entropy after
the inner SGD steps, second-order terms included, ``metalearner.strategies`` MAML) on the same
batch of random mini-ImageNet-shaped RGB images (84x84, 5-way 1-shot, 15 queries a class, a
meta-batch of 2 tasks, 5 inner steps of 0.01: MAML's mini-ImageNet settings but for the
meta-batch). Steps of the two models alternate round after round, so that load from other
work on the machine spreads over both alike, and the table gives each one's times and their
ratio to conv4's. ResNet-12 is the papers' 64-160-320-640 (``--width 64``); conv4 the
64-channel one (MAML used 32 on mini-ImageNet: ``--conv4-width 32``).

Memory: on a CPU the most bytes of tensors alive at once during a step (tensor_memory.py: the
profiler's allocations, the weights and batch held included); on a GPU (``--device cuda``)
``torch.cuda.max_memory_allocated`` over one step, the quantity learn2learn and TorchOpt users
run out of with second-order MAML on ResNet-12. DropBlock is off, as in every meta-step
(metalearner.nn.dropblock).

Usage:
    .venv/bin/python benchmarks/resnet12_speed.py [--rounds 3] [--device cpu|cuda] [--record]
    .venv/bin/python benchmarks/resnet12_speed.py --width 4 --conv4-width 4 --size 32 \
        --rounds 1 --inner-steps 1   # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

from machine import record  # benchmarks/machine.py
from metalearner.nn.backbones import build_model
from metalearner.runs.devices import retain_freed_memory
from metalearner.strategies import build, get_strategy
from metalearner.strategies.base import resolve_batching
from metalearner.tasks import TaskBatch
from tensor_memory import tensor_peak  # benchmarks/tensor_memory.py

MODELS = ("conv4", "resnet12")
BASELINE = "conv4"


def make_batch(args: argparse.Namespace, device: torch.device) -> TaskBatch:
    """Random uint8-valued RGB images and their labels (seeded: the same for both models)."""
    n, k, q, t, s = args.ways, args.shots, args.queries, args.tasks, args.size
    g = torch.Generator().manual_seed(1)
    sx = torch.randint(0, 256, (t, n * k, 3, s, s), generator=g).float() / 255
    qx = torch.randint(0, 256, (t, n * q, 3, s, s), generator=g).float() / 255
    sy = torch.arange(n).repeat_interleave(k).expand(t, -1).contiguous()
    qy = torch.arange(n).repeat_interleave(q).expand(t, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy).to(device)


def meta_step(
    model: str, args: argparse.Namespace, device: torch.device
) -> tuple[Callable[[], Tensor], int]:
    """One model's meta-step (returning its flat meta-gradient) and its parameter count."""
    width = args.width if model == "resnet12" else args.conv4_width
    net = build_model(model, (3, args.size, args.size), args.ways, generator=0, width=width)
    maml = build(
        "maml",
        net,
        {"inner_lr": args.inner_lr, "inner_steps": args.inner_steps, "batching": args.batching},
    )
    params = {k: v.to(device) for k, v in maml.init_params(0).items()}
    batch = make_batch(args, device)

    def step() -> Tensor:
        grads, _ = maml.meta_grads(params, batch)
        flat = torch.cat([g.flatten() for g in grads.values()])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return flat

    return step, sum(v.numel() for v in params.values())


def peak_bytes(step: Callable[[], Tensor], device: torch.device) -> int:
    """The most bytes of tensors alive at once during a step, on ``device``."""
    if device.type != "cuda":
        return tensor_peak(step)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    return torch.cuda.max_memory_allocated()


def measure(args: argparse.Namespace) -> str:
    device = torch.device(args.device)
    steps, sizes, peaks = {}, {}, {}
    for model in MODELS:
        steps[model], sizes[model] = meta_step(model, args, device)
        grads = steps[model]()  # warm-up, and a check that the step computes something
        if not bool(torch.isfinite(grads).all()):
            raise SystemExit(f"{model}: the meta-gradient is not finite")
        peaks[model] = peak_bytes(steps[model], device)
    times: dict[str, list[float]] = {m: [] for m in MODELS}
    for _ in range(args.rounds):
        for model, step in steps.items():
            start = time.perf_counter()
            step()
            times[model].append(time.perf_counter() - start)
    base = statistics.median(times[BASELINE])
    fastest = getattr(get_strategy("maml"), "MEASURED", {})
    vmap = resolve_batching(args.batching, device=device, measured=fastest)
    lines = [
        f"{args.ways}-way {args.shots}-shot {args.queries}-query, {args.size}x{args.size} RGB, "
        f"meta-batch {args.tasks}, {args.inner_steps} inner step(s) of {args.inner_lr}, "
        f"second order, batching {'vmap' if vmap else 'loop'}; float32 on {device.type}, "
        f"{args.rounds} interleaved rounds",
        "",
        f"{'model':22s} {'params':>10s} {'min s':>8s} {'median s':>9s} {'x conv4':>8s} "
        f"{'peak MB':>8s} {'x conv4':>8s}",
        "-" * 80,
    ]
    for model in MODELS:
        width = args.width if model == "resnet12" else args.conv4_width
        median = statistics.median(times[model])
        lines.append(
            f"{f'{model} (width {width})':22s} {sizes[model]:10,d} {min(times[model]):8.3f} "
            f"{median:9.3f} {median / base:7.2f}x {peaks[model] / 2**20:8.0f} "
            f"{peaks[model] / peaks[BASELINE]:7.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps of each model")
    parser.add_argument("--width", type=int, default=64, help="ResNet-12 width (64: 64-...-640)")
    parser.add_argument("--conv4-width", type=int, default=64)
    parser.add_argument("--size", type=int, default=84, help="image side")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--tasks", type=int, default=2, help="meta-batch")
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--batching", default="auto", choices=["auto", "loop", "vmap"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cpu":
        retain_freed_memory()  # as a metalearner run does
    table = measure(args)
    print(table, flush=True)
    if args.record:
        title = f"ResNet-12 MAML meta-step on {args.device} (benchmarks/resnet12_speed.py)"
        record(title, f".venv/bin/python {shlex.join(sys.argv)}", f"```\n{table}\n```")


if __name__ == "__main__":
    main()
