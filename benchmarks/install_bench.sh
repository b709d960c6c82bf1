#!/usr/bin/env bash
# Installs the libraries benchmarks/maml_speed.py compares against (the `bench` extra of
# pyproject.toml) without their dependencies: their requirements pin other torch versions, and
# pip extras cannot say --no-deps. TorchOpt also needs optree and graphviz (imported at load).
# learn2learn 0.2.0 is not installed: its sdist needs its C files regenerated with Cython 3 to
# build on Python 3.11, and it imports torchvision, whose PyPI wheel fails to load beside
# torch 2.13.0 ("operator torchvision::nms does not exist": PyPI's torchvision 0.28.0 and 0.29
# are CUDA builds); see benchmarks/RESULTS.md. A GPU machine has torchvision: there,
# scripts/gpu_check.sh installs the wheel that benchmarks/learn2learn_wheel.sh builds.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -c constraints.txt --no-deps higher torchopt optree graphviz
