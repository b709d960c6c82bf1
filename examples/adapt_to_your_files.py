"""From a folder of your images to predictions on a new task, in Python.

The script draws a small image folder (one sub-folder per class: noisy strokes at a per-class
angle), meta-trains Prototypical Networks on it, then adapts the trained model to three classes
it never saw (strokes at angles between the training ones) from one image each and predicts
their other images: the same steps as ``metalearner train`` and ``metalearner adapt`` on your
own files.

Run: ``python examples/adapt_to_your_files.py [--out runs/example] [--steps 200]``

References:
    Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import metalearner
from metalearner.runs import load_config
from metalearner.training import meta_train


def draw_classes(folder: Path, angles: dict[str, float], per_class: int = 8) -> None:
    """A sub-folder of ``per_class`` 28x28 PNGs per class: a stroke at the class's angle."""
    rng = np.random.default_rng(len(angles))
    for name, angle in angles.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("L", (28, 28), 0)
            dx, dy = 11 * math.cos(angle), 11 * math.sin(angle)
            cx, cy = 14 + rng.normal(0, 1.5), 14 + rng.normal(0, 1.5)
            ImageDraw.Draw(image).line([cx - dx, cy - dy, cx + dx, cy + dy], fill=255, width=3)
            image.save(folder / name / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/example"))
    parser.add_argument("--steps", type=int, default=200, help="meta-training steps")
    args = parser.parse_args()

    images, new = args.out / "images", args.out / "new_task"
    draw_classes(images, {f"class{c:02d}": math.pi * c / 12 for c in range(12)})
    names = ["new0", "new1", "new2"]  # between the training angles, 60 degrees apart
    draw_classes(new, {n: math.pi * (4 * i + 0.5) / 12 for i, n in enumerate(names)})
    cfg = load_config(
        overrides=[
            "strategy=protonet", "data.dataset=folder", f"data.path={images}",
            "data.ways=3", "data.shots=1", "data.queries=3",
            "data.meta_train_classes=9", "data.val_classes=3",
            f"steps={args.steps}", "val_every=100", "val_tasks=20", "model.width=16",
        ]
    )  # fmt: skip
    run = args.out / "run"
    meta_train(cfg, run, quiet=True)

    # The new task: one labeled image of each new class, then the others to predict.
    learner = metalearner.load(run)
    task = learner.adapt([new / n / "0.png" for n in names], names)
    queries = [(new / n / f"{i}.png", n) for n in names for i in range(1, 8)]
    prediction = task.predict([path for path, _ in queries])
    correct = sum(p == n for p, (_, n) in zip(prediction.labels, queries, strict=True))
    print(f"new classes, 3-way 1-shot: {correct} of {len(queries)} query images right")


if __name__ == "__main__":
    main()
