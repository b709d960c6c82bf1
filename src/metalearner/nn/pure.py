"""A user's module as a pure function: its stock layers run as metalearner's own do.

``torch.func`` runs a module as a function of a parameter dict. Two kinds of stock layer break
that, and a copy of the module (its tensors shared, not copied) runs without them:

- **BatchNorm** (``nn.BatchNorm1d/2d/3d`` with running statistics, the default) adds to
  ``num_batches_tracked`` and the running statistics in place, which ``torch.func.grad`` and
  ``vmap`` refuse (a captured tensor mutated). In the copy it normalises with the statistics of
  the batch in front of it, as :class:`~metalearner.nn.layers.TaskBatchNorm2d` does:
  transductive, or inductive inside :func:`~metalearner.nn.layers.reference_statistics` (the
  statistics of a task's support set). Running statistics are kept but never read nor updated,
  so an inner loop leaves them as they were; in training and in eval mode alike.
- **Dropout** draws random numbers: a meta-step would no longer be a function of its arguments
  (DESIGN.md rule 3), and ``vmap`` refuses random operations. The copy runs in eval mode, so
  dropout layers pass their inputs through.

The user's module is never changed: its flags, buffers and class stay as they were.

References:
    Nichol et al., "On First-Order Meta-Learning Algorithms", 2018 (transductive BatchNorm,
    section 6). Ioffe & Szegedy, "Batch Normalization", ICML 2015.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from metalearner.nn.layers import per_task_eager, reference_count
from metalearner.nn.norm import task_batch_norm

PURE = "_metalearner_pure"
"""The attribute that marks a module made by :func:`pure_copy` (a private name)."""

# Layers whose forward depends on the training flag (dropout, inside or on its own).
_DROPOUT = (_DropoutNd, nn.MultiheadAttention, nn.TransformerEncoderLayer,
            nn.TransformerDecoderLayer, nn.RNNBase)  # fmt: skip


def is_pure(module: nn.Module) -> bool:
    """Whether ``module`` already runs as a pure function: a copy made by :func:`pure_copy`, or a
    module with no stock BatchNorm and no dropout active (metalearner's own backbones)."""
    if getattr(module, PURE, False):
        return True
    if isinstance(module, _BatchNorm) and not isinstance(module, _ByBatch):
        return False
    if module.training and isinstance(module, _DROPOUT):
        return False
    return all(is_pure(child) for child in module.children())


def pure(module: nn.Module) -> nn.Module:
    """``module`` itself where it already runs as a pure function, otherwise :func:`pure_copy`."""
    return module if is_pure(module) else pure_copy(module)


def pure_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that shares its parameters and buffers (the same tensors), in eval
    mode, its stock BatchNorm layers normalising with batch statistics (see the module's notes).

    Example:
        >>> fn = pure_copy(resnet)  # resnet keeps its running statistics and its mode
        >>> out = torch.func.functional_call(fn, params, (x,))
    """
    shared = itertools.chain(module.parameters(), module.buffers())
    memo: dict[int, Any] = {id(t): t for t in shared}
    twin = copy.deepcopy(module, memo)
    for m in twin.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, _ByBatch):
            m.__class__ = _by_batch(type(m))
    twin.eval()
    setattr(twin, PURE, True)
    return twin


class _ByBatch(nn.Module):
    """The forward of a stock BatchNorm layer in a :func:`pure_copy`: batch statistics only."""

    weight: Tensor | None
    bias: Tensor | None
    eps: float

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, C, ...]`` normalised per channel over the batch (and any spatial dims)."""
        return batch_norm(x, self.weight, self.bias, self.eps)


_BY_BATCH: dict[type, type] = {}


def _by_batch(kind: type) -> type:
    # A subclass of the layer's own class, so isinstance and its attributes stay as they were.
    if kind not in _BY_BATCH:
        _BY_BATCH[kind] = type(f"{kind.__name__}ByBatch", (_ByBatch, kind), {})
    return _BY_BATCH[kind]


def batch_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """BatchNorm of ``[N, C, ...]`` with the statistics of its own items, or inside
    :func:`~metalearner.nn.layers.reference_statistics` with those of its first items.

    Under ``vmap`` (and for the reference statistics) written with plain operations, whose
    second derivative autograd takes exactly: the stock kernel's batching rule gives wrong
    second-order gradients (see :class:`~metalearner.nn.layers.TaskBatchNorm2d`). In eager code
    of one task (:func:`~metalearner.nn.layers.per_task_kernels`) and in compiled code the fused
    kernels, with :func:`~metalearner.nn.norm.task_batch_norm`'s lean second derivative for
    images.
    """
    compiling = torch.compiler.is_compiling()
    count = None if compiling else reference_count()
    if count is None and (compiling or per_task_eager()):
        if x.dim() == 4 and weight is not None and bias is not None and not compiling:
            return task_batch_norm(x, weight, bias, eps)
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
    dims = [0, *range(2, x.dim())]
    reference = x if count is None else x.narrow(0, 0, count)
    mean = reference.mean(dims, keepdim=True)
    # The reference's deviations only: other items must not move the variance.
    var = (reference - mean).square().mean(dims, keepdim=True)
    y = (x - mean) * torch.rsqrt(var + eps)
    shape = (1, -1, *([1] * (x.dim() - 2)))
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y
