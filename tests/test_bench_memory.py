"""benchmarks/tensor_memory.py (maml_speed.py's CPU memory measure) on steps of known memory."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tensor_memory import held_tensor_bytes, tensor_peak

MB = 1_000_000
SLACK = 64 * 1024  # the profiler's own small allocations, if any


def test_the_peak_is_what_is_held_plus_the_most_a_step_holds_at_once() -> None:
    before = held_tensor_bytes()
    weights = torch.zeros(MB // 4)  # 1 MB held throughout

    def step() -> torch.Tensor:
        a = torch.ones(8 * MB // 4)
        b = torch.ones(4 * MB // 4)  # 12 MB alive at once
        del a
        c = torch.ones(6 * MB // 4)  # 10 MB
        return torch.cat((b, c))  # 20 MB for a moment, then all freed

    peak = tensor_peak(step) - before
    assert abs(peak - (1 + 20) * MB) < SLACK, peak
    assert weights.numel()  # held until here


def test_gradients_freed_and_made_again_by_a_step_are_counted_once() -> None:
    """A library's step frees last step's .grad (zero_grad) before making new ones; the
    profiler misses frees of blocks allocated before it started, which would count them twice.
    """
    before = held_tensor_bytes()
    weight = torch.nn.Parameter(torch.zeros(2 * MB // 4))
    weight.grad = torch.ones(2 * MB // 4)  # 2 MB held in C++, seen through .grad

    def step() -> None:
        weight.grad = None  # what zero_grad() does
        weight.grad = torch.full((2 * MB // 4,), 2.0)

    assert held_tensor_bytes() - before == 4 * MB
    peak = tensor_peak(step) - before
    assert abs(peak - 4 * MB) < SLACK, peak
