"""Writes stand-ins of the colour benchmarks with their real shapes, for timing where the real
files are not on the machine (``benchmarks/preset_costs.py --data-dir`` this folder).

A meta-step's time depends on the images' shape, the class counts and the batch sizes, never on
the pixels: these files hold every class of the published splits (mini-ImageNet's 64/16/20
wnids, all 100 CIFAR-100 classes for CIFAR-FS and FC100), in the files' own formats (the test
fixtures' writers: tests/imagenet_fixture.py, tests/cifar_fixture.py), with random pictures and
``--per-class`` of them a class instead of 600. Never score on them: they are noise.

Usage:
    .venv/bin/python benchmarks/shaped_data.py OUT_DIR [--per-class 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cifar_fixture import write_fake_cifar100  # noqa: E402
from imagenet_fixture import write_fake_mini  # noqa: E402
from metalearner.data.splits import split_list  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=20, help="images a class (>= K + Q)")
    args = parser.parse_args()
    classes = {s: split_list(f"mini_imagenet_{s}") for s in ("train", "val", "test")}
    write_fake_mini(args.out, form="cache", classes=classes, per_class=args.per_class)
    # CIFAR-100 holds train and test images of each class: half the count in each.
    write_fake_cifar100(args.out, per_class=max(1, args.per_class // 2))
    print(f"wrote mini-imagenet/ and cifar-100/ stand-ins to {args.out}")


if __name__ == "__main__":
    main()
