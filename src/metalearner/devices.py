"""Where a run computes: the device named in its config, checked and prepared once.

Randomness never depends on the device: task sampling and initialisation draw from CPU
generators, and data moves to the device only after sampling, so a seed gives the same tasks on
a CPU and on a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from metalearner.errors import ConfigError


def torch_device(name: str) -> torch.device:
    """The device ``name`` ("cpu" or "cuda"), refused with one sentence if this machine lacks it.

    For CUDA, also asks cuBLAS for its deterministic workspace (``CUBLAS_WORKSPACE_CONFIG``),
    which ``torch.use_deterministic_algorithms`` needs for reproducible matrix products; it only
    takes effect if set before the first cuBLAS call, hence here.

    Raises:
        ConfigError: for an unknown device, or "cuda" where no CUDA device is available.
    """
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"Unknown device {name!r}; use 'cpu' or 'cuda'.")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' is not available on this machine; use --set device=cpu."
            )
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


@contextlib.contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Runs the block with ``count`` CPU threads per op (``None``: unchanged), then restores."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def precision(
    name: str, device: torch.device, strategy_config: Any
) -> contextlib.AbstractContextManager[Any]:
    """The context a meta-step runs in: bfloat16 autocast, or nothing for float32.

    A strategy with its own precision option (set from the run's by config.resolve) knows which
    parts gain from bfloat16; autocast is the fallback for the others.
    """
    if name == "float32" or hasattr(strategy_config, "precision"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def deterministic() -> None:
    """CPU kernels that do not depend on thread timing, for bit-identical resumes.

    ``warn_only`` keeps ops without a deterministic variant usable (none of the CPU paths here
    need one).
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
