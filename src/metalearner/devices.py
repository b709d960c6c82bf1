"""Where a run computes: the device named in its config, checked and prepared once.

Randomness never depends on the device: task sampling and initialisation draw from CPU
generators, and data moves to the device only after sampling, so a seed gives the same tasks on
a CPU and on a GPU.
"""

from __future__ import annotations

import os

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
