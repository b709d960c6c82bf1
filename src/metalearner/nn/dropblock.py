"""DropBlock and dropout that draw from an explicit generator, and only inside :func:`drop_blocks`.

ResNet-12 as RFS and MetaOptNet train it regularises its blocks: dropout after the first two,
DropBlock (contiguous squares of a feature map zeroed together) after the last two. Both draw
random numbers, and a meta-step must stay a function of its arguments (docs/design.md rule 3;
``torch.func.vmap`` refuses random operations, see :mod:`metalearner.nn.pure`'s note on
dropout). So here they are the identity unless the caller enters :func:`drop_blocks` with a
``torch.Generator``: MAML's meta-step, ProtoNets' episodes, adaptation and evaluation never do,
and run unchanged.

Where it belongs: the transfer baselines' supervised pretraining step
(``strategies/transfer.py``, ``_Transfer.meta_grads``, around ``fx.meta_gradient`` beside
``per_task_kernels()``), which RFS regularises this way and which never vmaps. It is entered
there with a generator seeded by the mini-batch (:data:`metalearner.tasks.minibatches.DROP_SEED`,
from the run's seed and the batch number, as its augmentation is drawn), so that a resumed run
drops what an uninterrupted one would.

References:
    Ghiasi, Lin and Le, "DropBlock: A regularization method for convolutional networks",
    NeurIPS 2018 (the seed rate γ, blocks wholly inside the map, rescaling by the kept share).
    Srivastava et al., "Dropout", JMLR 2014. Lee et al., "Meta-Learning with Differentiable
    Convex Optimization", CVPR 2019, and Tian et al., "Rethinking Few-Shot Image
    Classification", ECCV 2020 (where they sit in ResNet-12, rate 0.1; their code,
    kjunelee/MetaOptNet models/dropblock.py and WangYueFt/rfs models/resnet.py, was read for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearner.errors import ConfigError


@dataclass(frozen=True)
class _Dropping:
    generator: torch.Generator
    rate: float


_DROPPING: ContextVar[_Dropping | None] = ContextVar("metalearner_dropping", default=None)


@contextmanager
def drop_blocks(generator: torch.Generator | None, rate: float = 0.1) -> Iterator[None]:
    """Inside, ResNet-12's dropout and DropBlock drop ``rate`` of their units, drawn from
    ``generator``; outside, they pass their inputs through.

    Not for code that vmaps (``vmap`` refuses the random draws) or is compiled. RFS and
    MetaOptNet ramp the rate linearly from 0 to 0.1 over their first 40,000 forward passes;
    a caller that wants the ramp passes each step's rate.

    Args:
        generator: where every mask comes from; the same generator state, the same masks.
            ``None``: nothing is dropped (a batch that brings no seed of its own).
        rate: the share of units dropped, in ``[0, 1)`` (DropBlock's ``1 - keep_prob``).

    Raises:
        ConfigError: ``rate`` is outside ``[0, 1)``.

    Example:
        >>> with drop_blocks(torch.Generator().manual_seed(step), 0.1):
        ...     loss = F.cross_entropy(net(x), y)
    """
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"A drop rate of {rate} is outside [0, 1); use e.g. 0.1 (RFS's).")
    if generator is None:
        yield
        return
    token = _DROPPING.set(_Dropping(generator, float(rate)))
    try:
        yield
    finally:
        _DROPPING.reset(token)


def _dropping() -> _Dropping | None:
    # Checked first: reading the context variable would break a graph being compiled.
    if torch.compiler.is_compiling():
        return None
    active = _DROPPING.get()
    return active if active is not None and active.rate > 0 else None


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator) -> Tensor:
    # Drawn where the generator lives (a CPU generator cannot fill a CUDA tensor), then moved.
    u = torch.rand(shape, generator=generator, device=generator.device)
    return u.to(device=like.device, dtype=like.dtype)


def drop_units(x: Tensor) -> Tensor:
    """Dropout of ``x`` inside :func:`drop_blocks` (kept units scaled by ``1 / (1 - rate)``);
    ``x`` itself outside."""
    active = _dropping()
    if active is None:
        return x
    keep = _uniform(tuple(x.shape), x, active.generator) >= active.rate
    return x * keep / (1.0 - active.rate)


def drop_block(x: Tensor, block_size: int) -> Tensor:
    """DropBlock of ``x`` ``[..., C, H, W]`` inside :func:`drop_blocks`; ``x`` itself outside.

    Every item and channel gets its own mask: see :func:`block_mask`. The kept values are scaled
    by the number of units over the number kept, over the whole tensor, so the mean activation
    is unchanged (the paper's normalisation, as RFS and MetaOptNet apply it).
    """
    active = _dropping()
    if active is None:
        return x
    keep = block_mask(x, block_size, active.rate, active.generator)
    return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))


def block_mask(x: Tensor, block_size: int, rate: float, generator: torch.Generator) -> Tensor:
    """DropBlock's mask for ``x`` ``[..., H, W]``: 0 where a block is dropped, 1 elsewhere.

    Block seeds are drawn, each with probability γ, at the positions where a
    ``block_size``-square fits wholly inside the map (``(H - b + 1) x (W - b + 1)``), and each
    seed zeroes the square it is the top-left corner of. With
    ``γ = rate / b² · H W / ((H - b + 1)(W - b + 1))`` the expected share of zeros is
    ``rate`` were the squares never to overlap (slightly less, as they may). A ``block_size``
    larger than the map is cut to it: a block then covers the whole map.

    Args:
        x: the features (only their shape, device and dtype are read).
        block_size: the side ``b`` of a dropped square.
        rate: the share of units to drop.
        generator: where the seeds are drawn from.
    """
    h, w = x.shape[-2:]
    b = max(1, min(block_size, h, w))
    gamma = rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
    seeds = (_uniform((*x.shape[:-2], h - b + 1, w - b + 1), x, generator) < gamma).to(x.dtype)
    # Each seed spreads over the b x b square to its lower right: a max over the b x b window
    # ending at each position of the seeds, padded by b - 1 zeros on every side.
    flat = F.pad(seeds.reshape(-1, 1, *seeds.shape[-2:]), (b - 1, b - 1, b - 1, b - 1))
    dropped = F.max_pool2d(flat, b, stride=1)
    return (1.0 - dropped).reshape(x.shape)
