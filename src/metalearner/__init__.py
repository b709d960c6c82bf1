"""metalearner: learn from many related tasks so a model adapts to a new one from a few examples.

Two ideas carry the package: a task generator (:mod:`metalearner.tasks`) turns data into a
stream of small tasks, and a learning strategy (:mod:`metalearner.strategies`) learns from that
stream and adapts to a new task.
"""

from metalearner import functional, models, strategies, tasks
from metalearner.errors import ConfigError, DataError, MetalearnerError
from metalearner.learner import Learner, Prediction, TaskModel, load

__version__ = "0.1.0"

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
    "models",
    "strategies",
    "tasks",
]
