"""What a checkpoint's metadata may say: its fields, their JSON types and their bounds.

A checkpoint is data (docs/design.md, rule 6): its digests (:mod:`.checkpoint`) catch damage and
hand edits, and these checks catch a checkpoint whose digests were recomputed over fields that
no code of this library writes, before a value reaches the allocator or a loop. Anything else
is "damaged or replaced", in one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from metalearner.runs.checkpoint import Checkpoint, damaged

# Bounds on what a checkpoint may record: far beyond any model this library trains, near
# enough that a damaged value is refused before it reaches the allocator or a loop.
MAX_PARAMS, MAX_STEP, MAX_DIM, MAX_INPUT, MAX_OPTION = 100_000, 10**12, 65_536, 1 << 24, 1 << 20
MAX_ADAPT_STEPS = 10_000  # adaptation steps per task (papers use 1 to 100)


def check_training_meta(ckpt: Checkpoint) -> None:
    """Refuses a training checkpoint (:func:`save_state`'s) whose metadata or tensor names are
    not what :func:`save_state` writes: fields missing or of the wrong JSON type, sizes out of
    bounds, tensors other than ``params/<each name>``, ``optim/<index>/<name>`` and ``rng/*``.

    Raises:
        DataError: naming the first problem ("damaged or replaced"), in one sentence.
    """
    meta, path = ckpt.meta, ckpt.path
    names = meta.get("param_names")
    if (
        not isinstance(names, list)
        or not 0 < len(names) <= MAX_PARAMS
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise damaged(path, "param_names is not a list of distinct parameter names")
    _check_int(path, meta, "step", 0, MAX_STEP)
    elapsed = meta.get("elapsed", 0.0)
    if not _number(elapsed) or elapsed < 0:
        raise damaged(path, f"elapsed is {elapsed!r}, not a number of seconds")
    best = meta.get("best")
    if best is not None and (
        not isinstance(best, dict)
        or not _number(best.get("score"))
        or not _is_int(best.get("step"))
    ):
        raise damaged(path, f"best is {best!r}, not a score and its step")
    optimizer = meta.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, dict) and _is_int(g.get("index")) for g in groups)
        or not all(_json_scalars(v) for g in groups for v in g.values())
    ):
        raise damaged(path, "optimizer.param_groups is not a list of optimiser settings")
    for key in ("config", "strategy_config", "preprocessing"):
        if key in meta and not isinstance(meta[key], dict):
            raise damaged(path, f"{key} is not a mapping")
    for key in ("strategy", "metric"):
        if key in meta and not isinstance(meta[key], str):
            raise damaged(path, f"{key} is not a name")
    check_adaptation(ckpt)
    if "backbone" in meta or "input_shape" in meta:
        check_model_meta(ckpt)
    for key in ckpt.tensors:
        group, _, rest = key.partition("/")
        if group == "params" and rest in names:
            continue
        if group == "rng" and rest and "/" not in rest:
            continue
        idx, _, name = rest.partition("/")
        if group == "optim" and idx.isdigit() and int(idx) < len(names) and name:
            continue
        raise damaged(path, f"it holds a tensor {key!r} that no training state has")
    missing = [n for n in names if f"params/{n}" not in ckpt.tensors]
    missing += [f"rng/{r}" for r in ("tasks", "torch") if f"rng/{r}" not in ckpt.tensors]
    if missing:
        raise damaged(path, f"it lacks {', '.join(missing[:3])}")


def check_model_meta(ckpt: Checkpoint) -> None:
    """Refuses a model checkpoint whose description of the model (``backbone``, ``input_shape``,
    ``config``, preprocessing) is missing, of the wrong JSON types or out of bounds.

    Raises:
        DataError: naming the first problem ("damaged or replaced"), in one sentence.
    """
    meta, path = ckpt.meta, ckpt.path
    backbone = meta.get("backbone")
    if not isinstance(backbone, dict) or not isinstance(backbone.get("name"), str):
        raise damaged(path, "backbone is not a model description")
    _check_int(path, backbone, "out_features", 1, MAX_DIM, "backbone.")
    for key, value in backbone.items():
        if _is_int(value) and not 0 <= value <= MAX_OPTION:
            raise damaged(path, f"backbone.{key} is {value}, out of bounds")
        if not _json_scalars(value):
            raise damaged(path, f"backbone.{key} is not a setting")
    shape = meta.get("input_shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 3
        or not all(_is_int(s) and 1 <= s <= MAX_DIM for s in shape)
        or math.prod(shape) > MAX_INPUT
    ):
        raise damaged(path, f"input_shape is {shape!r}, not an input shape this library trains")
    for key in ("strategy_config", "preprocessing"):
        if key in meta and not isinstance(meta[key], dict):
            raise damaged(path, f"{key} is not a mapping")
    if not isinstance(meta.get("config"), dict):
        raise damaged(path, "config is not a mapping")
    settings = meta.get("strategy_config", {})
    if settings.get("num_classes") is not None:
        _check_int(path, settings, "num_classes", 1, MAX_DIM, "strategy_config.")
    recorded = meta["config"].get("strategy_config")
    for where, options in (("strategy_config.", settings), ("config.strategy_config.", recorded)):
        for key in ("inner_steps", "eval_steps"):  # what adapt loops over
            if isinstance(options, dict) and options.get(key) is not None:
                _check_int(path, options, key, 0, MAX_ADAPT_STEPS, where)
    _check_preprocessing(path, meta.get("preprocessing", {}), shape)
    classes = meta.get("class_names", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise damaged(path, "class_names is not a list of names")
    if meta.get("dataset") is not None and not isinstance(meta.get("dataset"), str):
        raise damaged(path, "dataset is not a name")
    check_adaptation(ckpt)


def check_adaptation(ckpt: Checkpoint) -> None:
    """Refuses an ``adaptation`` (chosen on validation tasks,
    :mod:`metalearner.evaluation.choice`) that is not what a choice records: settings that are
    not numbers, adaptation steps out of bounds, a step, scores or candidates of the wrong type.

    Raises:
        DataError: naming the first problem ("damaged or replaced"), in one sentence.
    """
    path, choice = ckpt.path, ckpt.meta.get("adaptation")
    if choice is None:
        return  # written before adaptation was chosen, or never ended: the configured one
    if not isinstance(choice, dict):
        raise damaged(path, "adaptation is not a mapping")
    for key in ("settings", "configured"):
        settings = choice.get(key)
        if (
            not isinstance(settings, dict)
            or not 0 < len(settings) <= 16
            or not all(_number(v) for v in settings.values())
        ):
            raise damaged(path, f"adaptation.{key} is not a mapping of settings to numbers")
        _check_int(path, settings, "eval_steps", 0, MAX_ADAPT_STEPS, f"adaptation.{key}.")
    _check_int(path, choice, "step", 0, MAX_STEP, "adaptation.")
    _check_int(path, choice, "tasks", 1, MAX_INPUT, "adaptation.")
    if not isinstance(choice.get("strategy"), str) or not isinstance(choice.get("metric"), str):
        raise damaged(path, "adaptation.strategy or adaptation.metric is not a name")
    candidates = choice.get("candidates")
    if (
        not isinstance(candidates, list)
        or not 0 < len(candidates) <= MAX_OPTION
        or not all(
            isinstance(c, dict)
            and isinstance(c.get("settings"), dict)
            and all(c.get(k) is None or _number(c.get(k)) for k in ("mean", "ci95"))
            for c in candidates
        )
    ):
        raise damaged(path, "adaptation.candidates is not a list of settings and scores")


def _check_preprocessing(path: Path, pre: Mapping[str, Any], shape: list[int]) -> None:
    """What turns a user's files into inputs must produce the recorded input shape."""
    if len(shape) == 3 and "size" in pre:  # images: decoded to [channels, *size]
        if pre.get("size") != shape[1:] or pre.get("channels", 1) != shape[0]:
            raise damaged(
                path,
                f"preprocessing makes {pre.get('channels')}x{pre.get('size')} images, "
                f"the model takes {shape}",
            )
        if not isinstance(pre.get("invert", False), bool) or not isinstance(
            pre.get("resample", "lanczos"), str
        ):
            raise damaged(path, "preprocessing.invert or preprocessing.resample is not a setting")
    if pre.get("kind") == "text" and "tokenizer" in pre:  # a pretrained encoder's own
        markers = pre.get("markers")
        if not isinstance(pre["tokenizer"], str) or not (
            isinstance(markers, list)
            and len(markers) == 4
            and all(isinstance(m, str) for m in markers)
        ):
            raise damaged(path, "preprocessing.tokenizer or preprocessing.markers is not a setting")
        _check_int(path, pre, "max_length", 1, MAX_DIM, "preprocessing.")
    elif pre.get("kind") == "text":
        words = pre.get("vocabulary")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise damaged(path, "preprocessing.vocabulary is not a list of words")
        _check_int(path, pre, "max_length", 1, MAX_DIM, "preprocessing.")


def _check_int(
    path: Path, meta: Mapping[str, Any], key: str, low: int, high: int, prefix: str = ""
) -> None:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise damaged(path, f"{prefix}{key} is {value!r}, not a whole number in [{low}, {high}]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_scalars(value: Any) -> bool:
    """A setting: null, a boolean, a finite number, text, or a short list of those."""
    if isinstance(value, list):
        return len(value) <= 16 and all(_json_scalars(v) for v in value)
    return value is None or isinstance(value, (bool, str)) or _number(value)


def check_tensors(
    path: Path, group: str, saved: Mapping[str, Tensor], expected: Mapping[str, Tensor]
) -> None:
    """Refuses a checkpoint whose tensors of ``group`` differ from ``expected`` in names,
    shapes or dtypes (``expected``: the same tensors as the code builds them now).

    Raises:
        DataError: naming the first difference ("damaged or replaced").
    """
    missing, extra = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected)
    if missing or extra:
        names = _names(f"{group}/{k}" for k in missing)
        unknown = _names(f"{group}/{k}" for k in extra)
        what = f"it lacks {names}" if missing else f"it holds unknown tensors {unknown}"
        raise damaged(path, what)
    for name, want in expected.items():
        got = saved[name]
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise damaged(
                path,
                f"{group}/{name} is {_kind(got)}, the model needs {_kind(want)}",
            )


def _names(names: Iterable[str]) -> str:
    listed = list(names)
    return ", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")


def _kind(t: Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"
