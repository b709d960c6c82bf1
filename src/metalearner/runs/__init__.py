"""A run from its settings to its folder: RunConfig, the run folder and its lock, checkpoints,
the experiment built from a config, devices and distributed training.
"""

from __future__ import annotations

from metalearner.runs.config import (
    load_config,
    ModelConfig,
    OptimizerConfig,
    resolve,
    RunConfig,
    to_dict,
    to_yaml,
)
from metalearner.runs.folder import (
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
    TrainState,
    write_atomic,
)
from metalearner.runs.checkpoint import (
    Checkpoint,
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
)
from metalearner.runs.experiment import build_experiment, Experiment, seeded, task_stream
from metalearner.runs.devices import torch_device
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
