"""Where a run computes: the device named in its config, checked and prepared once.

Randomness never depends on the device: task sampling and initialisation draw from CPU
generators, and data moves to the device only after sampling, so a seed gives the same tasks on
a CPU and on a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch

from metalearner.errors import ConfigError


def torch_device(name: str) -> torch.device:
    """The device ``name`` ("cpu" or "cuda"), refused with one sentence if this machine lacks it.

    For the CPU, also keeps freed memory for reuse (:func:`retain_freed_memory`). For CUDA,
    asks cuBLAS for its deterministic workspace (``CUBLAS_WORKSPACE_CONFIG``), which
    ``torch.use_deterministic_algorithms`` needs for reproducible matrix products; it only takes
    effect if set before the first cuBLAS call, hence here.

    Raises:
        ConfigError: for an unknown device, or "cuda" where no CUDA device is available.
    """
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"Unknown device {name!r}; use 'cpu' or 'cuda'.")
    if name == "cuda":
        if not torch.cuda.is_available():
            # No option named: train takes --set device=..., evaluate and adapt take --device.
            raise ConfigError(
                "device 'cuda' is not available on this machine (PyTorch finds no CUDA GPU); "
                "choose device cpu."
            )
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        retain_freed_memory()
    return torch.device(name)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


@functools.cache
def retain_freed_memory() -> bool:
    """Keeps the memory this process frees for its next allocations (glibc's ``mallopt``).

    PyTorch's CPU tensors come from glibc's malloc, which serves large blocks (one task's first
    conv4 activation, ``[75, 64, 28, 28]``, is 15 MB) with fresh pages from ``mmap`` and returns
    them on free (how many depends on the history of frees, as its mmap threshold adapts), so
    every task of a meta-batch page-faults its activations in again: 280,000-350,000 minor page
    faults per 5-way second-order MAML meta-step on this project's CPU, and none once every
    block is served from the heap and the heap is never trimmed. The process then keeps its
    peak footprint between steps, which the next step would reach again anyway.
    ``benchmarks/maml_speed.py --allocator`` measures the speed-up.

    Returns:
        Whether it took effect: only with glibc (Linux); elsewhere nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Every block from the heap (no mmap), and the heap is never given back (2**31 - 1 bytes
    # of free memory at its top would be needed first).
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Runs the block with ``count`` CPU threads per op (``None``: unchanged), then restores.

    Raises:
        ConfigError: ``count`` is below 1.
    """
    if count is not None and count < 1:
        raise ConfigError(f"Setting 'threads' must be at least 1 or null, got {count}.")
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def precision(
    name: str, device: torch.device, *, autocast: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """The context a meta-step runs in: bfloat16 autocast, or nothing for float32.

    ``autocast=False`` for a strategy that applies the precision itself
    (``Strategy.applies_precision``: it knows which parts gain from bfloat16); autocast is the
    fallback for the others.
    """
    if name == "float32" or not autocast:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def deterministic() -> None:
    """CPU kernels that do not depend on thread timing, for bit-identical resumes.

    ``warn_only`` keeps ops without a deterministic variant usable (none of the CPU paths here
    need one). Deterministic mode also fills every ``torch.empty`` with NaN by default, which
    only changes a program that reads memory it never wrote (none here) and costs a pass over
    each new buffer: ProtoNets' bfloat16 step is 1.10-1.12x faster without it on the 2-core
    CPU of benchmarks/RESULTS.md (benchmarks/deterministic_fill.py), so it is off.

    References:
        PyTorch, ``torch.utils.deterministic.fill_uninitialized_memory``.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
