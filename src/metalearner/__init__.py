"""metalearner: learn from many related tasks so a model adapts to a new one from a few examples.

Two ideas carry the package: a task generator (:mod:`metalearner.tasks`) turns data into a
stream of small tasks, and a learning strategy (:mod:`metalearner.strategies`) learns from that
stream and adapts to a new task. The stage folders read as the pipeline (see docs/design.md):
``data`` → ``tasks`` → ``strategies`` → ``training`` → ``runs`` → ``evaluation``, with
``inference`` for a trained run's new tasks and ``search``, ``benchmark``, ``rl`` around them.

This module is the public face: explicit re-exports only; nothing inside the package imports it.
Those that need torch are imported the first time they are used, so ``import metalearner`` (and
the command line's help, which imports it first) takes milliseconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from metalearner._version import __version__ as __version__
from metalearner.errors import ConfigError as ConfigError
from metalearner.errors import DataError as DataError
from metalearner.errors import MetalearnerError as MetalearnerError

if TYPE_CHECKING:
    import metalearner.functional as functional
    import metalearner.nn as nn
    import metalearner.strategies as strategies
    import metalearner.tasks as tasks
    from metalearner.inference import Learner as Learner
    from metalearner.inference import Prediction as Prediction
    from metalearner.inference import TaskModel as TaskModel
    from metalearner.inference import load as load

# Imported on first use (PEP 562): they import torch, which takes seconds, and the command line's
# help and errors, which import this package first, must not wait for it.
_LAZY = {
    "functional": ("metalearner.functional", None),
    "nn": ("metalearner.nn", None),
    "strategies": ("metalearner.strategies", None),
    "tasks": ("metalearner.tasks", None),
    "Learner": ("metalearner.inference", "Learner"),
    "Prediction": ("metalearner.inference", "Prediction"),
    "TaskModel": ("metalearner.inference", "TaskModel"),
    "load": ("metalearner.inference", "load"),
}

__all__ = [
    "ConfigError",
    "DataError",
    "Learner",
    "MetalearnerError",
    "Prediction",
    "TaskModel",
    "__version__",
    "functional",
    "load",
    "nn",
    "strategies",
    "tasks",
]


def __getattr__(name: str) -> object:
    """A public name of :data:`_LAZY`, imported the first time it is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'metalearner' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    found = value if attribute is None else getattr(value, attribute)
    globals()[name] = found  # asked once: later look-ups find it without this function
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
