"""Task augmentations that create new classes from old ones."""

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
            groups += [data.groups[c] for c in classes.tolist()]
    new_ids = data.num_classes + torch.arange(len(angles) * len(classes))
    out = data.with_classes(torch.cat(xs), torch.cat(ys), tuple(names), tuple(groups))
    return out, torch.cat([classes, new_ids])
