"""Many tasks' copies of a conv4 network, each with its own weights, in one pass.

Scoring adapts a copy of the network to each test task (Reptile: 50 steps of Adam on each
support set). Here ``T`` tasks go through together: the tasks' channels side by side in one
batch (``[S, T·C, H, W]``), each layer a grouped convolution with one group per task, and
BatchNorm's statistics per channel, which is per task and channel, the statistics each task's
own batch gives (or, inside :func:`~metalearner.nn.layers.reference_statistics`, its first
items': inductive mode). One task's step on five 28x28 images is too small to keep two CPU
threads busy; 50 tasks' are not: on two threads Reptile's adaptation took 0.35 s per task
instead of 0.60 s, on one thread the same as a loop over tasks (5-way 1-shot Omniglot,
benchmarks/RESULTS.md, "Time spent scoring").

Only for the built-in conv4 network (:func:`stacks` says whether a model is one); the result
equals a loop over tasks to float tolerance, not bitwise (grouped kernels sum in another order).

References:
    Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
    Networks", NeurIPS 2012 (grouped convolutions).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.nn.backbones import Conv4, Network
from metalearner.nn.layers import ConvBlock, batch_norm_by_reference, reference_count

Params = dict[str, Tensor]


def stacks(model: nn.Module) -> bool:
    """Whether :func:`stacked_call` runs ``model``: a conv4 backbone with a linear head."""
    return (
        isinstance(model, Network)
        and isinstance(model.features, Conv4)
        and all(isinstance(b, ConvBlock) for b in model.features.blocks)
    )


def stacked_call(model: nn.Module, params: Params, x: Tensor) -> Tensor:
    """``model`` under each task's own weights: ``[T, S, N]`` logits.

    Args:
        model: a network that :func:`stacks` accepts (only its structure is read).
        params: the model's parameters, each with a leading task dimension ``T``.
        x: ``[T, S, C, H, W]``: each task's own inputs (the same ``S`` for every task).
    """
    if not stacks(model):
        raise ValueError("stacked_call runs the built-in conv4 network only")
    tasks, items = x.shape[:2]
    h = x.transpose(0, 1).flatten(1, 2)  # [S, T·C, H, W]: task t's channels are block t
    assert isinstance(model, Network) and isinstance(model.features, Conv4)
    for name, block in model.features.blocks.named_children():
        assert isinstance(block, ConvBlock)
        p = f"features.blocks.{name}."
        conv = block.conv
        h = F.conv2d(
            h,
            params[p + "conv.weight"].flatten(0, 1),
            params[p + "conv.bias"].flatten(),
            conv.stride,
            conv.padding,
            groups=tasks,
        )
        weight, bias = params[p + "norm.weight"].flatten(), params[p + "norm.bias"].flatten()
        reference = reference_count()  # inductive: the first items' statistics (the support's)
        if reference is None:
            h = F.batch_norm(h, None, None, weight, bias, True, 0.0, block.norm.eps)
        else:
            h = batch_norm_by_reference(h, weight, bias, block.norm.eps, reference)
        h = F.relu(F.max_pool2d(h, 2))  # as ConvBlock: pooling first, ReLU is monotone
    z = h.unflatten(1, (tasks, -1)).transpose(0, 1).reshape(tasks, items, -1)  # [T, S, F]
    return z @ params["head.weight"].mT + params["head.bias"].unsqueeze(-2)
