"""The run folder: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/{latest,best}``, ``eval.json``.

A training state is a checkpoint (:mod:`metalearner.runs.checkpoint`): parameters, the optimiser's
state flattened into named tensors and every RNG state go into safetensors; the step, the
optimiser's hyperparameters and the best score so far into ``meta.json``. Restoring it puts a
run exactly where it was, so a resumed run ends bit-identical to one never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from metalearner.config.settings import from_dict
from metalearner.config.yaml_files import parse_yaml, read_saved_yaml
from metalearner.errors import ConfigError, DataError, writing
from metalearner.runs.checkpoint import (
    Checkpoint,
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
)
from metalearner.runs.checkpoint_schema import check_training_meta
from metalearner.runs.config import RunConfig, resolve, to_dict, to_yaml
from metalearner.runs.lock import LOCK, run_lock  # noqa: F401 (the run folder's lock)

CONFIG, METRICS, EVAL = "config.yaml", "metrics.jsonl", "eval.json"
LATEST, BEST = "checkpoints/latest", "checkpoints/best"


@dataclass(frozen=True)
class TrainState:
    """Where a run stands between two outer steps.

    Attributes:
        step: outer steps completed.
        params: the meta-parameters.
        optimizer: the optimiser's ``state_dict()``.
        rng: RNG states by name (``tasks``: the task generator's; ``torch``: the global CPU one).
        best: the best validation score so far and its step, or ``None``.
        elapsed: seconds spent in outer steps so far, over all sessions (validation and
            checkpoints excluded: what a time budget counts).
    """

    step: int
    params: dict[str, Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Tensor]
    best: dict[str, float] | None
    elapsed: float


def create_run(folder: Path, cfg: RunConfig | str) -> None:
    """Makes a new run folder holding the resolved config (a :class:`RunConfig`, or the YAML
    text of another kind of run's config: RL's).

    A run that stopped before its first checkpoint (killed, diverged, misconfigured) has
    nothing to resume or lose, so a new run takes its folder over, config and log replaced.
    The caller holds the folder's lock (:func:`run_lock`).

    Raises:
        ConfigError: if ``folder`` already holds a run with a checkpoint (resume it or choose
            another folder).
    """
    if (folder / CONFIG).exists():
        if has_checkpoint(folder):
            raise ConfigError(
                f"{folder} already holds a run; pass --resume to continue it or choose another "
                "--out."
            )
        (folder / METRICS).unlink(missing_ok=True)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_atomic(folder / CONFIG, cfg if isinstance(cfg, str) else to_yaml(cfg))


def has_checkpoint(folder: Path) -> bool:
    """Whether a run folder holds a checkpoint (latest or best, or one a crash moved aside)."""
    return checkpoint_exists(folder / LATEST) or checkpoint_exists(folder / BEST)


def check_resumable(
    folder: Path, trained: Any, now: Mapping[str, Any], may_change: frozenset[str]
) -> None:
    """Refuses to resume a run whose ``config.yaml`` was edited since its checkpoint was saved.

    Args:
        folder: the run folder.
        trained: the config saved in the checkpoint (JSON types); not a mapping: not checked.
        now: the config the run would resume with.
        may_change: dotted names of the settings a resumed run may change (its schedule).

    Raises:
        ConfigError: naming the first other setting that differs, and those that may.
    """
    if not isinstance(trained, Mapping):
        return
    changed = changed_setting(trained, now, may_change)
    if changed is not None:
        name, was, value = changed
        allowed = ", ".join(sorted(may_change))
        raise ConfigError(
            f"{folder / CONFIG} sets {name} to {value!r}, but the run was trained with {was!r}; "
            f"put that back to resume (a resumed run may change only {allowed}), or start a new "
            "run with another --out."
        )


def changed_setting(
    trained: Mapping[str, Any], now: Mapping[str, Any], may_change: frozenset[str]
) -> tuple[str, Any, Any] | None:
    """The first setting outside ``may_change`` whose value differs between two configs (JSON
    types): its dotted name, its trained value and its new one; ``None`` if there is none."""
    return _changed(trained, json.loads(json.dumps(now)), may_change)  # tuples as lists


def _changed(
    trained: Mapping[str, Any], now: Mapping[str, Any], may_change: frozenset[str], prefix: str = ""
) -> tuple[str, Any, Any] | None:
    for key in sorted(trained.keys() & now.keys()):  # settings of another version: not compared
        name, was, value = f"{prefix}{key}", trained[key], now[key]
        if isinstance(was, Mapping) and isinstance(value, Mapping):
            found = _changed(was, value, may_change, f"{name}.")
            if found is not None:
                return found
        elif was != value and name not in may_change:
            return name, was, value
    return None


def run_kind(folder: Path) -> str | None:
    """``"rl"`` or ``"supervised"``, told by the settings in a run folder's ``config.yaml``;
    ``None`` when there is none, or it is neither (the loaders then say what is wrong)."""
    try:
        raw = parse_yaml((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict):
        return None
    if "env" in raw and not {"strategy", "data"} & raw.keys():
        return "rl"
    if "env" not in raw and {"strategy", "data"} & raw.keys():
        return "supervised"
    return None


def read_run_config(folder: Path) -> RunConfig:
    """The resolved config of an existing run folder.

    Raises:
        DataError: ``folder`` is not a run folder.
    """
    file = folder / CONFIG
    if not file.is_file():
        raise DataError(
            f"{folder} is not a run folder (it has no {CONFIG}); give a folder written by "
            "`metalearner train`."
        )
    return resolve(from_dict(RunConfig, read_saved_yaml(file), ""))


def checkpoint_path(folder: Path, which: str = "best") -> Path:
    """A run's ``checkpoints/best`` (``which="best"``, falling back to latest before the first
    validation improved anything) or ``checkpoints/latest``.

    Raises:
        DataError: the run has no checkpoint yet.
    """
    best, latest = folder / BEST, folder / LATEST
    path = best if which == "best" and checkpoint_exists(best) else latest
    if not checkpoint_exists(path):
        raise DataError(f"{folder} has no checkpoint yet; train it first (or resume it).")
    return path


def save_state(
    path: Path, state: TrainState, cfg: RunConfig, info: Mapping[str, Any], metric: str
) -> None:
    """Writes ``state`` as a checkpoint with the run's config and model description."""
    tensors: dict[str, Tensor] = {f"params/{k}": v for k, v in state.params.items()}
    tensors |= {f"rng/{k}": v for k, v in state.rng.items()}
    groups = []
    for i, group in enumerate(state.optimizer["param_groups"]):
        groups.append({k: v for k, v in group.items() if k != "params"} | {"index": i})
    for idx, entries in state.optimizer["state"].items():
        for name, value in entries.items():
            tensors[f"optim/{idx}/{name}"] = torch.as_tensor(value)
    meta = {
        **info,
        "strategy": cfg.strategy,
        "config": to_dict(cfg),
        "step": state.step,
        "metric": metric,
        "best": state.best,
        "elapsed": state.elapsed,
        "param_names": list(state.params),
        "optimizer": {"param_groups": groups},
    }
    save_checkpoint(path, tensors, meta)


def load_state(path: Path) -> tuple[TrainState, Checkpoint]:
    """Reads a training state written by :func:`save_state`.

    Raises:
        DataError: not a training checkpoint, or one whose fields or tensor names are not what
            :func:`save_state` writes ("damaged or replaced"; :func:`check_training_meta`).
    """
    ckpt = load_checkpoint(path)
    if "param_names" not in ckpt.meta:
        raise DataError(f"{ckpt.path} is not a training checkpoint (no param_names in its meta).")
    check_training_meta(ckpt)
    names = ckpt.meta["param_names"]
    params = ckpt.group("params")
    per_param: dict[int, dict[str, Tensor]] = {}
    for key, value in ckpt.group("optim").items():
        idx, name = key.split("/", 1)
        per_param.setdefault(int(idx), {})[name] = value
    groups = [dict(g) for g in ckpt.meta["optimizer"]["param_groups"]]
    for g in groups:
        g.pop("index")
        g["params"] = list(range(len(names)))
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    best = ckpt.meta.get("best")
    state = TrainState(
        step=int(ckpt.meta["step"]),
        params={k: params[k] for k in names},
        optimizer={"state": per_param, "param_groups": groups},
        rng=ckpt.group("rng"),
        best=None if best is None else {"score": float(best["score"]), "step": int(best["step"])},
        elapsed=float(ckpt.meta.get("elapsed", 0.0)),
    )
    return state, ckpt


def append_metrics(folder: Path, record: Mapping[str, Any]) -> None:
    """Adds one line to ``metrics.jsonl`` (flushed, so a killed run keeps what it logged)."""
    with open(folder / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def truncate_metrics(folder: Path, step: int) -> None:
    """Drops lines logged after ``step``: a killed run logged steps its checkpoint lacks."""
    file = folder / METRICS
    if not file.exists():
        return
    kept = [
        line
        for line in file.read_text().splitlines()
        if line.strip() and _step_of(line) is not None and (_step_of(line) or 0) <= step
    ]
    write_atomic(file, "".join(line + "\n" for line in kept))


def check_writable(folder: Path) -> None:
    """Raises the :class:`OSError` that writing into ``folder`` would meet (a read-only file
    system, no permission) before minutes of work whose result could not be kept."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:  # it names the temporary file; the user knows the folder
        raise OSError(err.errno, err.strerror, os.fspath(folder)) from err


def write_atomic(file: Path, text: str | bytes) -> None:
    """Writes ``text`` (or bytes: a picture) to ``file`` through a temporary file and a rename:
    a kill mid-write leaves the old file whole, never half of the new one."""
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    try:
        with writing(file, tmp), open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    finally:
        # Left only when writing failed (a full disk); its removal must not hide why.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """Every record of ``metrics.jsonl``."""
    file = folder / METRICS
    if not file.exists():
        return []
    records = []
    for line in file.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a half-written last line of a killed run (a resume drops it)
    return [r for r in records if isinstance(r, dict)]


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a half-written last line of a killed run
