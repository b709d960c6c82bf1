"""The pure functional core: parameters as dicts, adaptation, meta-gradients, compiled paths.

``from metalearner import functional as fx`` gives the TorchOpt/higher-style API: a model as
``fx.functional(module)``, adaptation as ``fx.adapt(...)``, meta-gradients as
``fx.meta_gradient(...)``.
"""

from __future__ import annotations

from metalearner.functional.compiled import CapturedFunction, compile_task, precision_context
from metalearner.functional.core import (
    LearningRate,
    LossFn,
    ModelFn,
    Params,
    TaskFn,
    accuracy,
    adapt,
    adapt_path,
    buffers_of,
    floats,
    functional,
    map_tasks,
    meta_gradient,
    meta_gradient_tensors,
    params_of,
    path_predictors,
    predictions,
    subset,
    summed_meta_gradient,
    task_loss,
)

__all__ = [
    "CapturedFunction",
    "LearningRate",
    "LossFn",
    "ModelFn",
    "Params",
    "TaskFn",
    "accuracy",
    "adapt",
    "adapt_path",
    "buffers_of",
    "compile_task",
    "floats",
    "functional",
    "map_tasks",
    "meta_gradient",
    "meta_gradient_tensors",
    "params_of",
    "path_predictors",
    "precision_context",
    "predictions",
    "subset",
    "summed_meta_gradient",
    "task_loss",
]
