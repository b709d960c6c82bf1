"""ResNet-12, the few-shot papers' residual backbone (MetaOptNet's and RFS's variant).

Four residual blocks of 64, 160, 320 and 640 channels. Each: three 3x3 convolutions (no bias),
each followed by BatchNorm, with leaky ReLU (slope 0.1) after the first two; a shortcut of a
1x1 convolution and BatchNorm added to the third; leaky ReLU and 2x2 max-pooling (floor).
Dropout follows the first two blocks and DropBlock the last two, only inside
:func:`metalearner.nn.dropblock.drop_blocks`. Global average pooling then gives 640 features:
84x84 images pool to 42, 21, 10 and 5 pixels a side.

It runs as conv4 does (:mod:`metalearner.nn.layers`): inputs ``[S, C, H, W]`` or
``[T, S, C, H, W]`` (``T`` tasks, each normalised on its own), BatchNorm is
:class:`~metalearner.nn.layers.TaskBatchNorm2d` (no running statistics; transductive, or
inductive inside ``reference_statistics``), and a single task's batch inside
``per_task_kernels`` takes the fused BatchNorm and the channels-last layout. So MAML (second
order, under ``vmap`` or in the per-task loop), ProtoNets and the transfer baselines run it
unchanged.

Departures from the reference code, each for a reason:

- Global average pooling, RFS's (MetaOptNet flattens the 5x5x640 map into 16,000 features).
- Max-pooling before the block's last leaky ReLU: the same function (leaky ReLU is increasing,
  so it commutes with a max) at a quarter of the activation's cost.
- No running statistics and no ramp of the drop rate kept in the module (RFS and MetaOptNet
  count forward passes in the block): a module here holds no state that a call changes.

References:
    Oreshkin, Rodríguez and Lacoste, "TADAM: Task dependent adaptive metric for improved
    few-shot learning", NeurIPS 2018, and Mishra et al., "A Simple Neural Attentive
    Meta-Learner", ICLR 2018 (the design). Lee, Maji, Ravichandran and Soatto, "Meta-Learning
    with Differentiable Convex Optimization", CVPR 2019 (64-160-320-640, DropBlock; checked
    against kjunelee/MetaOptNet models/ResNet12_embedding.py). Tian, Wang, Krishnan, Tenenbaum
    and Isola, "Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?",
    ECCV 2020 (average pooling; checked against WangYueFt/rfs models/resnet.py). He et al.,
    "Delving Deep into Rectifiers", ICCV 2015 (the initialisation).
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.errors import ConfigError
from metalearner.nn.dropblock import drop_block, drop_units
from metalearner.nn.layers import ChannelNorm, Normalize, TaskBatchNorm2d, task_conv2d

WIDTHS = (64, 160, 320, 640)
"""The channels of the four blocks at ``width`` 64 (the papers'); ``width`` scales them all."""
BLOCKS = len(WIDTHS)
SLOPE = 0.1
"""The leaky ReLU's slope for negative inputs (MetaOptNet's and RFS's)."""


class FanOutConv2d(nn.Conv2d):
    """A bias-free convolution initialised as ResNets are: Kaiming normal over the fan-out.

    :func:`metalearner.nn.backbones.build_model` draws it so, as RFS and MetaOptNet do, so
    that a ResNet-12 starts where theirs does (every one feeds BatchNorm, so the scale of its
    weights changes only the effective step size, not the function).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[..., S, C, H, W]`` convolved; the leading dimensions are one flat batch."""
        return task_conv2d(self, x)


class ResidualBlock(nn.Module):
    """Three 3x3 convolutions and a 1x1 shortcut, each with BatchNorm; leaky ReLU, 2x2 max-pool,
    then dropout (``block_size`` ``None``) or DropBlock of ``block_size`` squares."""

    def __init__(self, in_channels: int, out_channels: int, *, block_size: int | None) -> None:
        super().__init__()
        self.conv1 = FanOutConv2d(in_channels, out_channels, 3)
        self.norm1 = TaskBatchNorm2d(out_channels)
        self.conv2 = FanOutConv2d(out_channels, out_channels, 3)
        self.norm2 = TaskBatchNorm2d(out_channels)
        self.conv3 = FanOutConv2d(out_channels, out_channels, 3)
        self.norm3 = TaskBatchNorm2d(out_channels)
        self.shortcut = FanOutConv2d(in_channels, out_channels, 1)
        self.shortcut_norm = TaskBatchNorm2d(out_channels)
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)), SLOPE)
        h = F.leaky_relu(self.norm2(self.conv2(h)), SLOPE)
        h = self.norm3(self.conv3(h)) + self.shortcut_norm(self.shortcut(x))
        lead = h.shape[:-3]
        h = F.leaky_relu(F.max_pool2d(h.flatten(0, -4), 2), SLOPE).unflatten(0, lead)
        return drop_units(h) if self.block_size is None else drop_block(h, self.block_size)


class ResNet12(nn.Module):
    """Four residual blocks and global average pooling: ``[..., C, H, W] -> [..., widths[-1]]``.

    Args:
        in_channels: image channels (3 for mini-ImageNet and the others, 1 for Omniglot).
        widths: the four blocks' channels.
        block_size: the side of DropBlock's squares in the last two blocks (5 at 84x84, 2 at
            32x32 in the papers).
        normalize: per-channel ``(mean, std)`` taken from the images first (the dataset's;
            :class:`~metalearner.nn.layers.ChannelNorm`), or ``None``.

    Attributes:
        feature_dim: ``widths[-1]``, the size of the feature vector.
    """

    def __init__(
        self,
        in_channels: int = 3,
        *,
        widths: tuple[int, ...] = WIDTHS,
        block_size: int = 5,
        normalize: Normalize | None = None,
    ) -> None:
        super().__init__()
        self.normalize = ChannelNorm(*normalize) if normalize else None
        if len(widths) != BLOCKS or min(widths) < 1:
            raise ConfigError(f"ResNet-12 has {BLOCKS} blocks of >= 1 channel, got {widths}.")
        chans = (in_channels, *widths)
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(a, b, block_size=block_size if i >= 2 else None)
                for i, (a, b) in enumerate(itertools.pairwise(chans))
            )
        )
        self.feature_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 4:
            raise ValueError(f"resnet12 expects [..., S, C, H, W] inputs, not {list(x.shape)}")
        if self.normalize is not None:
            x = self.normalize(x)
        return self.blocks(x).mean((-2, -1))


def resnet12_features(
    in_channels: int,
    image_size: tuple[int, int],
    *,
    width: int = 64,
    normalize: Normalize | None = None,
) -> ResNet12:
    """ResNet-12 for ``image_size`` images, its channels ``width / 64`` times the papers'.

    ``width`` 64 gives 64-160-320-640 (640 features); smaller widths scale every block alike
    (8: 8-20-40-80), for tests and small machines. DropBlock's square is as large as the last
    block's map (4 halvings of the image): 5 at 84x84 and 2 at 32x32, the sizes RFS and
    MetaOptNet chose for mini-ImageNet and CIFAR-FS.

    Raises:
        ConfigError: the images are too small for four 2x2 poolings, or ``width`` < 1.
    """
    if width < 1:
        raise ConfigError(f"model.width={width}: ResNet-12 needs at least 1 channel a block.")
    h, w = image_size
    for _ in range(BLOCKS):
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise ConfigError(
            f"{image_size[0]}x{image_size[1]} images are too small for ResNet-12's "
            f"{BLOCKS} pooling blocks; use images of at least 16x16 (84x84 in the papers)."
        )
    widths = tuple(max(1, round(width * c / WIDTHS[0])) for c in WIDTHS)
    return ResNet12(in_channels, widths=widths, block_size=min(h, w), normalize=normalize)
