"""metalearner: learn from many related tasks so a model adapts to a new one from a few examples.

Two ideas carry the package: a task generator (:mod:`metalearner.tasks`) turns data into a
stream of small tasks, and a learning strategy (:mod:`metalearner.strategies`) learns from that
stream and adapts to a new task. The stage folders read as the pipeline (see docs/design.md):
``data`` → ``tasks`` → ``strategies`` → ``training`` → ``runs`` → ``evaluation``, with
``inference`` for a trained run's new tasks and ``search``, ``benchmark``, ``rl`` around them.

This module is the public face: explicit re-exports only; nothing inside the package imports it.
"""

import metalearner.functional as functional
import metalearner.nn as nn
import metalearner.strategies as strategies
import metalearner.tasks as tasks
from metalearner._version import __version__ as __version__
from metalearner.errors import ConfigError as ConfigError
from metalearner.errors import DataError as DataError
from metalearner.errors import MetalearnerError as MetalearnerError
from metalearner.inference import Learner as Learner
from metalearner.inference import Prediction as Prediction
from metalearner.inference import TaskModel as TaskModel
from metalearner.inference import load as load

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
