"""A trained run on new tasks: load it, adapt to a support set, predict; read a user's files."""

from __future__ import annotations

from metalearner.inference.learner import Learner, Prediction, TaskModel, load
from metalearner.inference.predictions import adapt_files

__all__ = [
    "Learner",
    "Prediction",
    "TaskModel",
    "adapt_files",
    "load",
]
