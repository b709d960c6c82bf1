"""The outer loop: meta-training a strategy on a task stream; its optimiser, schedule, progress."""

from __future__ import annotations

from metalearner.training.loop import TrainingDivergedError, TrainResult, meta_train
from metalearner.training.optimizer import lr_factor, make_optimizer
from metalearner.training.progress import TrainingProgress

__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "TrainingProgress",
    "lr_factor",
    "make_optimizer",
    "meta_train",
]
