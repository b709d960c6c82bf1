"""conv4's layers, and the kernels they use where one task's batch runs outside ``vmap``.

Inputs carry an optional leading task dimension (``[S, C, H, W]`` or ``[T, S, C, H, W]``);
BatchNorm normalises with each task's own batch statistics and keeps no running statistics.
Inside :func:`per_task_kernels` a single task's batch may use kernels that are exact only
outside ``torch.func.vmap`` (the fused BatchNorm) or faster there (channels-last on a CPU).

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (the conv block). Nichol et al., "On First-Order Meta-Learning Algorithms", 2018
    (transductive BatchNorm, section 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.nn.norm import task_batch_norm

_PER_TASK: ContextVar[bool] = ContextVar("metalearner_per_task", default=False)


@contextmanager
def per_task_kernels() -> Iterator[None]:
    """Lets conv4 use kernels that are exact only outside ``torch.func.vmap``, for one task's batch.

    - BatchNorm: PyTorch's fused kernels, about 15% faster per MAML step on a CPU than the plain
      formula (their vmap batching rule, however, gives wrong second-order gradients), with a
      lean second derivative (:func:`metalearner.nn.norm.task_batch_norm`).
    - Inner gradients: :func:`metalearner.functional.adapt` takes them with plain
      ``torch.autograd.grad`` instead of ``torch.func.grad`` (see there).
    - Layout (CPU only): activations channels-last. Max-pooling and BatchNorm over a 5-way
      query batch run several times faster channels-last than in the default layout on a CPU,
      and a second-order MAML meta-step about a quarter faster (benchmarks/maml_speed.py
      measures the meta-step against the libraries).

    Only code that never vmaps may enter this context (the per-task loop of
    :func:`metalearner.functional.map_tasks` does).
    """
    token = _PER_TASK.set(True)
    try:
        yield
    finally:
        _PER_TASK.reset(token)


def per_task_eager() -> bool:
    """Whether this is eager code inside :func:`per_task_kernels`: one task, never vmapped."""
    # Checked first: reading the context variable would break a graph being compiled.
    if torch.compiler.is_compiling():
        return False
    return _PER_TASK.get()


class TaskBatchNorm2d(nn.Module):
    """BatchNorm over each task's batch; no running statistics, ever.

    Statistics are taken over the batch and spatial dimensions of each task: dims
    ``(-4, -2, -1)`` of a ``[..., S, C, H, W]`` input, so ``[S, C, H, W]`` (one task) and
    ``[T, S, C, H, W]`` (``T`` tasks, each normalised on its own) share one code path.

    Written with plain tensor operations instead of ``F.batch_norm`` on purpose: under
    ``torch.func.vmap`` the stock kernel's double backward gives a wrong second-order
    meta-gradient (conv biases feeding the norm, whose true gradient is exactly zero, receive
    non-zero gradients; tests/test_maml_gradients.py checks this). Inside
    :func:`per_task_kernels` a single task's batch uses the fused kernels with a lean second
    derivative (:func:`metalearner.nn.norm.task_batch_norm`), and in code being compiled by
    ``torch.compile`` (only the per-task loop compiles) ``F.batch_norm``.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and torch.compiler.is_compiling():
            # Compiled code is never vmapped (it runs one task at a time); the compiler
            # derives and fuses BatchNorm's derivatives itself.
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        if x.dim() == 4 and per_task_eager():
            return task_batch_norm(x, self.weight, self.bias, self.eps)
        dims = (-4, -2, -1)
        centred = x - x.mean(dims, keepdim=True)
        var = centred.square().mean(dims, keepdim=True)
        scale = self.weight[:, None, None] * torch.rsqrt(var + self.eps)
        return centred * scale + self.bias[:, None, None]


class ConvBlock(nn.Module):
    """3x3 conv (padding 1), per-task BatchNorm, ReLU, 2x2 max-pool (floor)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = TaskBatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-3]  # (S,) or (T, S): convolutions see one flat batch
        h = x.flatten(0, -4)
        weight = self.conv.weight
        if _channels_last_here(x) and h.stride(1) != 1:
            weight = _channels_last(weight)  # the output, and every later block, is then too
        h = F.conv2d(h, weight, self.conv.bias, self.conv.stride, self.conv.padding)
        h = self.norm(h.unflatten(0, lead))
        # relu(max_pool(h)) == max_pool(relu(h)) as ReLU is monotone; pooling first makes the
        # ReLU and its backward touch a quarter of the values.
        h = F.relu(F.max_pool2d(h.flatten(0, -4), 2))
        return h.unflatten(0, lead)


def _channels_last_here(x: Tensor) -> bool:
    # One task's batch in eager code that never vmaps (see per_task_kernels); code being
    # compiled is left to the compiler, whose kernels were slower channels-last here.
    return x.dim() == 4 and x.device.type == "cpu" and per_task_eager()


def _channels_last(weight: Tensor) -> Tensor:
    """``weight`` with channels-last strides, so that the convolution's output is channels-last.

    With one input channel both layouts address the same memory, and ``.contiguous`` keeps the
    strides it has; only new strides tell the kernel which layout to write.
    """
    if weight.shape[1] == 1 and weight.is_contiguous():
        kh, kw = weight.shape[2:]
        return weight.as_strided(weight.shape, (kh * kw, 1, kw, 1))
    return weight.contiguous(memory_format=torch.channels_last)
