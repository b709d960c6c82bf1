"""Synthetic image classes as a user keeps them in folders: one pattern a class, noisy drawings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pattern(seed: int) -> np.ndarray:
    """A class's look: a random 4x4 grey pattern blown up to 24x24."""
    g = np.random.default_rng(seed)
    return np.kron(g.integers(0, 256, (4, 4)), np.ones((6, 6))).astype(np.uint8)


def write_class(folder: Path, seed: int, count: int, *, rgb: bool = False) -> list[Path]:
    """``count`` noisy drawings of class ``seed``, saved as PNGs of varied size and mode."""
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed + 1000)
    files = []
    for i in range(count):
        pixels = np.clip(pattern(seed) + g.integers(-12, 12, (24, 24)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels).resize((20 + 4 * i, 20 + 4 * i))
        if rgb:
            image = image.convert("RGB")
        files.append(folder / f"{i:02d}.png")
        image.save(files[-1])
    return files


# A tiny image-folder run's data and model (write_class's folders): 3-way 1-shot tasks of
# 8 training and 3 validation classes, a conv net of width 8 and depth 2.
FOLDER_RUN = [
    "data.dataset=folder",
    "data.ways=3",
    "data.shots=1",
    "data.queries=2",
    "data.meta_train_classes=8",
    "data.val_classes=3",
    "model.width=8",
    "model.depth=2",
]
