"""A run from its settings to its folder: RunConfig, the run folder and its lock, checkpoints,
the experiment built from a config, devices and distributed training.
"""

from __future__ import annotations

from metalearner.runs.checkpoint import (
    Checkpoint,
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
)
from metalearner.runs.config import (
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    load_config,
    resolve,
    to_dict,
    to_yaml,
)
from metalearner.runs.devices import torch_device
from metalearner.runs.experiment import Experiment, build_experiment, seeded, task_stream
from metalearner.runs.folder import (
    TrainState,
    append_metrics,
    check_resumable,
    checkpoint_path,
    create_run,
    load_state,
    read_metrics,
    read_run_config,
    run_kind,
    run_lock,
    save_state,
    write_atomic,
)
from metalearner.runs.provenance import provenance

__all__ = [
    "Checkpoint",
    "Experiment",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "TrainState",
    "append_metrics",
    "build_experiment",
    "check_resumable",
    "checkpoint_exists",
    "checkpoint_path",
    "create_run",
    "load_checkpoint",
    "load_config",
    "load_state",
    "provenance",
    "read_metrics",
    "read_run_config",
    "resolve",
    "run_kind",
    "run_lock",
    "save_checkpoint",
    "save_state",
    "seeded",
    "task_stream",
    "to_dict",
    "to_yaml",
    "torch_device",
    "write_atomic",
]
