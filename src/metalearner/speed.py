"""Opt-in speed paths for the per-task loop: a compiled query pass and bfloat16 autocast.

Second-order MAML differentiates the support pass twice (the inner gradient, then the outer
gradient through it), and ``torch.compile``'s AOTAutograd cannot compile a double backward, so
the support pass stays eager. The query pass is differentiated only once, so it can be
compiled: forward and backward then run as fused kernels (BatchNorm, ReLU, pooling and the loss
in a few loops) instead of one kernel per operation. Its meta-gradient equals the eager loop's
up to rounding (tests/test_speed.py checks it in float64; benchmarks/maml_speed.py in float32,
where several inner steps amplify rounding differences).

bfloat16 autocast runs convolutions and matrix products in bfloat16 (on CPUs with AVX512-BF16
or AMX, and on GPUs); the meta-gradient is then only as precise as bfloat16 (~1e-2 relative),
which is why it is an opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch

from metalearner.errors import ConfigError

Precision = Literal["float32", "bfloat16"]


def precision_context(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast context for ``precision``: none for ``"float32"`` (the parameters' dtype).

    Raises:
        ConfigError: for an unknown precision.
    """
    if precision == "float32":
        return nullcontext()
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(f"Unknown precision {precision!r}; use 'float32' or 'bfloat16'.")


def compile_once_differentiated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled for static shapes; use it only where it is differentiated once.

    The first call with a new input shape compiles (tens of seconds for conv4 on a CPU); later
    calls reuse the compiled kernels. Inside the compiled region
    :class:`metalearner.models.TaskBatchNorm2d` uses the fused BatchNorm kernel, so ``fn`` must
    see one task at a time and must not be vmapped.
    """
    return torch.compile(fn, dynamic=False)
