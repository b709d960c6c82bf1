"""conv4's layers, and the kernels they use where one task's batch runs outside ``vmap``.

Inputs carry an optional leading task dimension (``[S, C, H, W]`` or ``[T, S, C, H, W]``);
BatchNorm keeps no running statistics, ever. It normalises in one of two modes
(:data:`NormMode`, a run's ``model.norm``):

- ``transductive`` (the papers' protocol): each task's batch with its own statistics, so a
  prediction depends on the other items predicted with it;
- ``inductive``: every item with the statistics of a *reference* set, the task's support set.
  :func:`normalise_with` runs the model on ``cat(reference, x)`` inside
  :func:`reference_statistics`, where BatchNorm takes its statistics from the first items
  only, and keeps the outputs of ``x``: a prediction for an item no longer depends on the
  other items predicted with it.

Inside :func:`per_task_kernels` a single task's batch may use kernels that are exact only
outside ``torch.func.vmap`` (the fused BatchNorm) or faster there (channels-last on a CPU).

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (the conv block). Nichol et al., "On First-Order Meta-Learning Algorithms", 2018
    (transductive BatchNorm, and its alternatives, section 6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.errors import ConfigError
from metalearner.nn.norm import task_batch_norm

NormMode = Literal["transductive", "inductive"]
"""How BatchNorm normalises a task's queries: with their own statistics, or the support set's."""
NORM_MODES: tuple[NormMode, ...] = get_args(NormMode)

_PER_TASK: ContextVar[bool] = ContextVar("metalearner_per_task", default=False)
# The number of leading items along the batch dimension whose statistics normalise every item
# (inductive mode); None: each batch's own (transductive).
_REFERENCE: ContextVar[int | None] = ContextVar("metalearner_reference", default=None)


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


def norm_mode(value: str, setting: str = "model.norm") -> NormMode:
    """``value`` checked as a BatchNorm mode (``setting`` names it in the error).

    Raises:
        ConfigError: ``value`` is not one of :data:`NORM_MODES`.
    """
    if value not in NORM_MODES:
        raise ConfigError(
            f"{setting} must be transductive or inductive, got {value!r}: transductive "
            "normalises a task's queries with their own statistics, inductive with the support "
            "set's."
        )
    return cast(NormMode, value)


@contextmanager
def reference_statistics(count: int | None) -> Iterator[None]:
    """BatchNorm inside takes its statistics from the first ``count`` items of each task's batch.

    The items are those along the batch dimension (``S`` of ``[S, C, H, W]`` or
    ``[T, S, C, H, W]``), and the statistics normalise every item of the batch; ``None``
    restores each batch's own statistics. Most callers want :func:`normalise_with`. Not for
    code being compiled by ``torch.compile``, which cannot read the setting.
    """
    token = _REFERENCE.set(count)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def normalise_with(
    forward: Callable[[Tensor], Tensor], reference: Tensor | None, x: Tensor, *, dim: int = 0
) -> Tensor:
    """``forward(x)`` with BatchNorm normalising by the statistics of ``reference`` (inductive).

    Runs ``forward`` on ``cat([reference, x], dim)`` inside :func:`reference_statistics` and
    returns the outputs of ``x``, so that an item's output depends on ``reference`` and on the
    item alone: ``normalise_with(f, r, x)[i] == normalise_with(f, r, x[i : i + 1])[0]`` up to
    rounding. The reference's own outputs are those of ``forward(reference)``. ``reference``
    ``None`` gives ``forward(x)`` (transductive: ``x`` normalised by its own statistics).

    Args:
        forward: the model on a batch (items along ``dim``; outputs keep that dimension).
        reference: the items whose statistics normalise (a task's support set), or ``None``.
        x: the items to predict.
        dim: the items' dimension: 0 for one task ``[S, ...]``, 1 for tasks ``[T, S, ...]``.

    Example:
        >>> logits = normalise_with(lambda v: net(v), support_x, query_x)
    """
    if reference is None:
        return forward(x)
    count = reference.shape[dim]
    with reference_statistics(count):
        out = forward(torch.cat([reference, x], dim))
    return out.narrow(dim, count, out.shape[dim] - count)


def has_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` normalises with batch statistics (so that the norm mode matters):
    ours, or a stock BatchNorm layer (which :mod:`metalearner.nn.pure` runs so)."""
    kinds = (TaskBatchNorm2d, nn.modules.batchnorm._BatchNorm)
    return any(isinstance(m, kinds) for m in module.modules())


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

    Inside :func:`reference_statistics` (inductive mode) the statistics are those of the first
    items of each task's batch and normalise all of them, written with the same plain
    operations in every path: autograd derives them exactly, under ``vmap`` too.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        compiling = torch.compiler.is_compiling()
        if x.dim() == 4 and compiling:
            # Compiled code is never vmapped (it runs one task at a time); the compiler
            # derives and fuses BatchNorm's derivatives itself.
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        # Not read while compiling: a context variable would break the graph.
        reference = None if compiling else _REFERENCE.get()
        if reference is not None:
            return batch_norm_by_reference(x, self.weight, self.bias, self.eps, reference)
        if x.dim() == 4 and per_task_eager():
            return task_batch_norm(x, self.weight, self.bias, self.eps)
        dims = (-4, -2, -1)
        centred = x - x.mean(dims, keepdim=True)
        var = centred.square().mean(dims, keepdim=True)
        scale = self.weight[:, None, None] * torch.rsqrt(var + self.eps)
        return centred * scale + self.bias[:, None, None]


def batch_norm_by_reference(
    x: Tensor, weight: Tensor, bias: Tensor, eps: float, count: int
) -> Tensor:
    """BatchNorm of ``[..., S, C, H, W]`` with the statistics of its first ``count`` items.

    Every item is normalised with them (inductive mode): plain operations, whose first and
    second derivatives autograd takes exactly, inside ``torch.func.vmap`` or not.
    """
    dims = (-4, -2, -1)
    reference = x.narrow(-4, 0, count)
    mean = reference.mean(dims, keepdim=True)
    # The reference's deviations only: the other items must not move the variance.
    var = (reference - mean).square().mean(dims, keepdim=True)
    scale = weight[:, None, None] * torch.rsqrt(var + eps)
    return (x - mean) * scale + bias[:, None, None]


def reference_count() -> int | None:
    """The count set by :func:`reference_statistics` (``None``: each batch's own statistics),
    for BatchNorm written outside :class:`TaskBatchNorm2d`; not for code being compiled."""
    return _REFERENCE.get()


class ConvBlock(nn.Module):
    """3x3 conv (padding 1), per-task BatchNorm, ReLU, 2x2 max-pool (floor)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = TaskBatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(task_conv2d(self.conv, x))
        lead = x.shape[:-3]
        # relu(max_pool(h)) == max_pool(relu(h)) as ReLU is monotone; pooling first makes the
        # ReLU and its backward touch a quarter of the values.
        h = F.relu(F.max_pool2d(h.flatten(0, -4), 2))
        return h.unflatten(0, lead)


def task_conv2d(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv`` applied to ``[..., S, C, H, W]``, the leading dimensions ((S,) or (T, S)) as one
    flat batch; channels-last where that is faster (one task's batch on a CPU, outside vmap)."""
    lead = x.shape[:-3]
    h = x.flatten(0, -4)
    weight = conv.weight
    if _channels_last_here(x) and h.stride(1) != 1:
        weight = _channels_last(weight)  # the output, and every later layer, is then too
    h = F.conv2d(h, weight, conv.bias, conv.stride, conv.padding)
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


Normalize = Sequence[Sequence[float]]
"""A dataset's per-channel ``(mean, std)`` of pixels in ``[0, 1]``: two sequences of C floats."""


class ChannelNorm(nn.Module):
    """Subtracts a fixed mean and divides by a fixed deviation per channel of ``[..., C, H, W]``
    images: the input normalisation of the colour benchmarks' reference code (the dataset's
    ``normalize``), inside the backbone so that training, scoring and adapting a checkpoint to
    new images all see the same inputs. No parameters: the values are the data's, not learned.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std, default=1.0) <= 0:
            raise ConfigError(
                f"normalize needs one mean and one positive deviation per channel, got {mean} "
                f"and {std}."
            )
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        # The constants as tensors, per device and dtype, made once: a copy from the host on
        # every call would synchronise a GPU, and is not allowed inside a CUDA graph's capture
        # (the warm-up calls before it make them).
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-3] != len(self.mean):
            raise ValueError(f"normalize has {len(self.mean)} channels, the images {x.shape[-3]}")
        key = (x.device, x.dtype)
        constants = self._constants.get(key)
        if constants is None:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
            scale = 1.0 / torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
            constants = (mean, scale)
            if not torch.compiler.is_compiling():  # compiled code holds them as constants
                self._constants[key] = constants
        mean, scale = constants
        return (x - mean) * scale
