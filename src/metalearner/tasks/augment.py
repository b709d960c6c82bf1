"""Augmentations: new classes from old ones (rotations, for episodes), and label-preserving
image augmentations for supervised pretraining on mini-batches."""

from __future__ import annotations

import torch
from torch import Tensor

from metalearner.data.labeled import LabeledSet
from metalearner.errors import ConfigError


def with_rotations(
    data: LabeledSet, classes: Tensor, *, angles: tuple[int, ...] = (90, 180, 270)
) -> tuple[LabeledSet, Tensor]:
    """Adds each class rotated by each angle as a new class (Omniglot's standard augmentation).

    A rotated character is a different character to a reader, so rotations multiply the number
    of meta-training classes by four (Santoro et al. 2016; used by MAML and ProtoNets). Only the
    given classes are rotated: pass the meta-training split so validation and test stay unrotated.

    Args:
        data: a labeled set of images ``[M, C, H, W]``.
        classes: ``[C']`` global class ids to augment.
        angles: multiples of 90 degrees.

    Returns:
        ``(data, classes)``: the set with the rotated classes appended (existing ids unchanged),
        and ``classes`` followed by the new ids.

    References:
        Santoro et al., "Meta-Learning with Memory-Augmented Neural Networks", ICML 2016.
    """
    if any(a % 90 or a % 360 == 0 for a in angles):
        raise ConfigError(f"Rotation angles {angles} must be 90, 180 or 270 degrees.")
    if data.x.dim() < 3:
        raise ConfigError(f"{data.name} holds feature vectors, not images; it cannot be rotated.")
    member = torch.zeros(data.num_classes, dtype=torch.bool)
    member[classes] = True
    rows = member[data.y].nonzero().flatten()
    # New id of (class c, angle i): num_classes + i * len(classes) + position of c in `classes`.
    position = torch.full((data.num_classes,), -1, dtype=torch.int64)
    position[classes] = torch.arange(len(classes))
    xs, ys, names = [data.x], [data.y], list(data.class_names)
    groups = list(data.groups)
    for i, angle in enumerate(angles):
        xs.append(torch.rot90(data.x[rows], k=(angle // 90) % 4, dims=(-2, -1)))
        ys.append(data.num_classes + i * len(classes) + position[data.y[rows]])
        names += [f"{data.class_names[c]}@rot{angle}" for c in classes.tolist()]
        if groups:
            # A rotated alphabet is a new group as a rotated character is a new class: a task
            # drawn within one group (Lake's within-alphabet runs) never mixes orientations.
            groups += [f"{data.groups[c]}@rot{angle}" for c in classes.tolist()]
    new_ids = data.num_classes + torch.arange(len(angles) * len(classes))
    out = data.with_classes(torch.cat(xs), torch.cat(ys), tuple(names), tuple(groups))
    return out, torch.cat([classes, new_ids])


def is_colour(x: Tensor) -> bool:
    """Whether stored examples are colour images (``uint8 [M, 3, H, W]``), which
    :func:`augment_images` serves."""
    return x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3


def augment_images(images: Tensor, generator: torch.Generator) -> Tensor:
    """The standard augmentation of supervised pretraining on colour images, per image.

    Random crop after zero-padding by a tenth of the side (8 pixels at 84x84, as Tian et al.
    and Lee et al.), an eighth up to 32x32 (4 pixels at CIFAR's 32x32, as both),
    horizontal flip with probability 1/2, and colour jitter of brightness, contrast and
    saturation, each by a factor drawn from [0.6, 1.4] (torchvision's ``ColorJitter(0.4, 0.4,
    0.4)``, applied in that fixed order). Written with tensor operations (no torchvision), all
    randomness from ``generator``.

    Args:
        images: ``[B, 3, H, W]`` floats in ``[0, 1]``.
        generator: the source of every random draw.

    Returns:
        ``[B, 3, H, W]`` augmented images in ``[0, 1]``.

    References:
        Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019. Tian et al.,
        "Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?", ECCV
        2020 (RandomCrop with padding 8, 4 on CIFAR, flip, ColorJitter 0.4). Lee et al.,
        "Meta-Learning with Differentiable Convex Optimization", CVPR 2019 (the same).
    """
    side = images.shape[-1]
    padding = max(side // 8 if side <= 32 else side // 10, 1)
    out = random_crop(images, padding, generator)
    out = random_flip(out, generator)
    return colour_jitter(out, 0.4, generator)


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Each image ``[B, C, H, W]`` zero-padded by ``padding`` on every side and cropped back to
    ``H x W`` at a uniformly random offset (``torchvision.transforms.RandomCrop(padding=p)``)."""
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(images.device)
    rows = (top[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    index = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[index, channel, rows, cols]


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image ``[B, C, H, W]`` mirrored left to right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def colour_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Brightness, contrast and saturation of each RGB image ``[B, 3, H, W]`` in ``[0, 1]``
    scaled by factors from ``[1 - strength, 1 + strength]``, as torchvision's ``ColorJitter``
    defines them (contrast and saturation blend with the grey image's mean and the grey image),
    clamped to ``[0, 1]`` after each."""
    factors = 1 + strength * (2 * torch.rand(3, images.shape[0], generator=generator) - 1)
    brightness, contrast, saturation = factors.to(images)[:, :, None, None, None]
    out = (images * brightness).clamp(0, 1)
    mean = _grey(out).mean(dim=(-3, -2, -1), keepdim=True)
    out = (mean + contrast * (out - mean)).clamp(0, 1)
    grey = _grey(out)
    return (grey + saturation * (out - grey)).clamp(0, 1)


def _grey(images: Tensor) -> Tensor:
    """``[B, 1, H, W]``: the ITU-R 601-2 luma that torchvision's ``rgb_to_grayscale`` uses."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images * weights[:, None, None]).sum(-3, keepdim=True)
