"""Tensor memory on a CPU: the most bytes of tensors alive at once during a step.

The CPU has no ``torch.cuda.max_memory_allocated``; this is its analogue for a benchmark, from
the tensors Python holds and the profiler's record of every allocation and free that goes
through PyTorch's CPU allocator (compiled code's included).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile, record_function


def held_tensor_bytes() -> int:
    """Bytes of the tensor storages Python objects hold (weights, batch) and their gradients."""
    gc.collect()  # garbage freed later, unseen by the profiler, would count as held
    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        # type(), not isinstance(): the latter reads __class__, which warns on some of torch's
        # own lazily deprecated module attributes.
        if not issubclass(type(obj), Tensor) or obj.layout != torch.strided:
            continue
        for t in (obj, obj.grad if obj.is_leaf else None):  # a library's .grad lives in C++
            if t is None or t.device.type != "cpu":
                continue
            try:
                storage = t.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, NotImplementedError):
                continue  # a tracer's stand-in (fake or functorch-wrapped), not memory
    return sum(storages.values())


def tensor_peak(step: Callable[[], object]) -> int:
    """Most bytes of CPU tensors alive at once during one ``step``: the CPU's analogue of
    ``torch.cuda.max_memory_allocated``.

    What the process holds besides tensors (the interpreter, libraries' code and caches, memory
    the allocator keeps) is left out: whole-process RSS is ~230 MB before any work here, and
    identical processes spread by +-25 MB, more than the tensor memory of a 5-way task. It is
    the tensors held before the step plus the highest point of the step's running total of
    allocations and frees, from the profiler's memory events (every allocation and free that goes
    through PyTorch's CPU allocator, compiled code's included). The profiler misses the free of a
    block allocated before it started (a library's old gradients, freed by ``zero_grad``), so
    it runs a step before the measured one.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
        held = held_tensor_bytes()
        with record_function("measured step"):
            step()
    # The raw events, in time order; key_averages() sums per operator and loses the order.
    events = list(prof.profiler.kineto_results.events())
    mark = next(e for e in events if e.name() == "measured step")
    start, end = mark.start_ns(), mark.start_ns() + mark.duration_ns()
    memory = [e for e in events if e.name() == "[memory]" and start <= e.start_ns() <= end]
    live = rise = 0
    for e in sorted(memory, key=lambda e: e.start_ns()):
        live += e.nbytes()
        rise = max(rise, live)
    return held + rise
