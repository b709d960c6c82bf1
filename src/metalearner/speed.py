"""Opt-in speed paths for the per-task loop: a compiled task and bfloat16 autocast.

Second-order MAML differentiates the support pass twice: the inner gradient, then the outer
gradient through it. Written with ``torch.func.grad`` (as :func:`metalearner.functional.adapt`
is), the inner gradient is traced by ``torch.compile`` into ordinary forward operations, so a
whole task (every inner step and the query pass) becomes one graph that AOTAutograd
differentiates once: BatchNorm, ReLU, pooling and their derivatives run as a few fused loops
instead of one kernel per operation. Its meta-gradient equals the eager loop's up to rounding
(tests/test_speed.py checks it in float64; benchmarks/maml_speed.py in float32, where several
inner steps amplify rounding differences).

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


def compile_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, one task's meta-objective, compiled for static shapes.

    The first call with a new input shape compiles (about 40 s for conv4 5-way with one inner
    step on a CPU, 110 s for 20-way with five); later calls reuse the compiled kernels. Inside
    the compiled region :class:`metalearner.layers.TaskBatchNorm2d` uses the fused BatchNorm
    kernel, so ``fn`` must see one task at a time and must not be vmapped.
    """
    return torch.compile(fn, dynamic=False)
