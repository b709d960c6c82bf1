"""Where a new run's parameters start: saved weights (``model.weights``), or the backbone of a
finished run (``model.init_from``), instead of a fresh initialisation.

Both write the weights into the network and mark what they wrote with
:func:`~metalearner.nn.backbones.keep_weights`, so every strategy's ``init_params`` starts
from them and initialises only the rest (a head). Only a new run starts so: a resumed run
continues from its own checkpoint, and ``evaluate``, ``adapt`` and ``load`` read the trained
parameters, none of them these sources again. What a run started from is recorded in its
checkpoints' metadata (``start``: the file or checkpoint, with its digest).

- ``model.weights``: a safetensors file whose names are the network's (``features.*`` and
  ``head.*``, as a run's checkpoint holds them under ``params/``) or, for a ``python`` model, its
  factory module's own ``state_dict`` names. Every backbone (``features.*``) parameter must be
  in it, each name must be the model's and each shape the model's; the head may be left out
  (a new head is then initialised from the seed).
- ``model.init_from``: a run folder (its best checkpoint, as ``evaluate`` takes) or one of its
  checkpoint folders, of the same backbone (name, options, input shape), that did not train on
  this run's test classes (same dataset: the same class split). Its ``features.*`` start this
  run; its head is not taken: the number of ways, or the kind of head (a transfer baseline's
  pretraining head over every training class), may differ.

References:
    Hu et al., "Pushing the Limits of Simple Pipelines for Few-Shot Learning: External Data
    and Fine-Tuning Make a Difference" (P>M>F), CVPR 2022: pretrain, then meta-train from the
    pretrained backbone, then fine-tune.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from metalearner.errors import ConfigError, DataError
from metalearner.nn.backbones import FEATURES, HEAD, Network, keep_weights
from metalearner.runs.checkpoint import META, checkpoint_exists, file_sha256
from metalearner.runs.checkpoint_schema import check_tensors
from metalearner.runs.folder import CONFIG, LATEST, checkpoint_path, load_state


def load_weights(file: str, network: Network, own_names: Mapping[str, str]) -> dict[str, Any]:
    """Writes the weights of the safetensors ``file`` into ``network``, kept by initialisation.

    Args:
        file: ``model.weights``.
        network: the run's network.
        own_names: a user's module's names for the network's tensors
            (:attr:`~metalearner.runs.models.BuiltModel.own_names`).

    Returns:
        What the run records: the file's path and sha256, and whether the head was taken.

    Raises:
        ConfigError: no such file, or names or shapes that are not the model's.
        DataError: the file is not safetensors.
    """
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.weights {path} is not a file; give a .safetensors file of the model's weights."
        )
    try:
        saved = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(
            f"model.weights {path} cannot be read as safetensors ({err}); save the weights with "
            "safetensors.torch.save_file(model.state_dict(), path)."
        ) from None
    own = network.state_dict(keep_vars=True)
    taken: dict[str, Tensor] = {}
    for key, value in saved.items():
        name = key if key in own else own_names.get(key)
        if name is None:
            raise ConfigError(
                f"model.weights {path} holds {key!r}, which the model has no tensor of (its names "
                f"are like {_like(own, own_names)}); save this model's state_dict."
            )
        if tuple(value.shape) != tuple(own[name].shape):
            raise ConfigError(
                f"model.weights {path} holds {key!r} of shape {list(value.shape)}, the model's "
                f"is {list(own[name].shape)}; save the weights of a model with these settings "
                "and input shape."
            )
        taken[name] = value
    params = [n for n, _ in network.named_parameters()]
    theirs = {v: k for k, v in own_names.items()} if not set(saved) & set(own) else {}
    missing = [n for n in params if n.startswith(FEATURES) and n not in taken]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ConfigError(
            f"model.weights {path} lacks {theirs.get(missing[0], missing[0])!r}{more} of the "
            "backbone; save every backbone parameter (the head may be left out: a new one is "
            "then initialised)."
        )
    head = [n for n in params if n.startswith(HEAD)]
    given = [n for n in head if n in taken]
    if given and len(given) < len(head):
        lacking = next(n for n in head if n not in taken)
        raise ConfigError(
            f"model.weights {path} holds part of the head but not "
            f"{theirs.get(lacking, lacking)!r}; save the whole head, or none of it for a new one."
        )
    _write(network, taken, head=bool(given))
    return {"weights": str(path.resolve()), "sha256": file_sha256(path), "head": bool(given)}


def load_backbone(
    source: str,
    network: Network,
    backbone: Mapping[str, Any],
    input_shape: Sequence[int],
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """Writes the backbone (``features.*``) of the run ``source`` into ``network``, kept by
    initialisation; the head is the new run's own.

    Args:
        source: ``model.init_from``: a run folder or a checkpoint folder.
        network: the new run's network.
        backbone: the new run's model description (a checkpoint's ``backbone``).
        input_shape: one example's shape in the new run.
        data: the new run's data as a checkpoint records it (``dataset``, ``class_names``,
            ``split``), to refuse a source that trained on this run's test classes.

    Returns:
        What the run records: the checkpoint's path, strategy, step and digests.

    Raises:
        ConfigError: ``source`` is no run, its backbone is not this run's, or it trained on
            this run's test classes.
        DataError: it has no checkpoint yet, or a damaged one.
    """
    folder = Path(source).expanduser()
    if (folder / META).is_file():
        path = folder  # a checkpoint folder: checkpoints/latest, say
    elif (folder / CONFIG).is_file() or checkpoint_exists(folder / LATEST):
        path = checkpoint_path(folder)
    else:
        what = "is not a run folder (no config.yaml)" if folder.exists() else "does not exist"
        raise ConfigError(
            f"model.init_from {folder} {what}; give the folder of a finished run, e.g. "
            "runs/omniglot-finetune."
        )
    state, ckpt = load_state(path)
    theirs, shape = ckpt.meta.get("backbone"), ckpt.meta.get("input_shape")
    if not isinstance(theirs, dict) or not isinstance(shape, list):
        raise DataError(f"{path} records no backbone; start from a run trained by metalearner.")
    if _without_head(theirs) != _without_head(backbone) or shape != list(input_shape):
        raise ConfigError(
            f"model.init_from {folder} trained {_describe(theirs, shape)}, this run builds "
            f"{_describe(backbone, input_shape)}; start from a run with the same model settings "
            "and input shape."
        )
    seen = _seen_test_classes(ckpt.meta, data)
    if seen:
        raise ConfigError(
            f"model.init_from {folder} trained on {len(seen)} of this run's test classes (such "
            f"as {seen[0]!r}), so its scores would not be few-shot; train both with the same "
            "data.split, data.split_seed and class counts."
        )
    features = {k: v for k, v in state.params.items() if k.startswith(FEATURES)}
    expected = {k: v.detach() for k, v in network.named_parameters() if k.startswith(FEATURES)}
    check_tensors(path, "params", features, expected)  # same backbone: anything else is damage
    _write(network, features, head=False)
    return {
        "init_from": str(path.resolve()),
        "strategy": ckpt.meta.get("strategy"),
        "step": state.step,
        "sha256": ckpt.meta.get("sha256"),
        "meta_sha256": ckpt.meta.get("meta_sha256"),
        "taken": "features",
    }


def _write(network: Network, tensors: Mapping[str, Tensor], *, head: bool) -> None:
    own = network.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value.to(own[name].dtype))
    keep_weights(network.features)
    if head:
        keep_weights(network.head)


def _seen_test_classes(source: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """The new run's test classes that the source run trained on, where both read one dataset.

    Checked by class name, so a split of other sizes or another seed is caught as well."""
    if source.get("dataset") != data.get("dataset") or "split" not in data:
        return []  # another dataset (a cross-domain start), or regression: no classes
    names, theirs = source.get("class_names"), source.get("split")
    if not isinstance(names, list) or not isinstance(theirs, dict):
        return []
    held = {i for part in theirs.values() if isinstance(part, list) for i in part}
    trained = {str(n) for i, n in enumerate(names) if i not in held}
    ours = data["class_names"]
    return [str(ours[i]) for i in data["split"]["test"] if str(ours[i]) in trained]


def _without_head(backbone: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in backbone.items() if k != "out_features"}


def _describe(backbone: Mapping[str, Any], shape: Sequence[int]) -> str:
    options = ", ".join(
        f"{k} {v}" for k, v in sorted(_without_head(backbone).items()) if k != "name"
    )
    name = f"{backbone.get('name')}" + (f" ({options})" if options else "")
    return f"{name} on {'x'.join(str(s) for s in shape)} inputs"


def _like(own: Mapping[str, Tensor], own_names: Mapping[str, str]) -> str:
    shown = ", ".join(repr(n) for n in list(own)[:2])
    if own_names:  # a user's module: its own names load too
        shown += " or the module's own " + ", ".join(repr(n) for n in list(own_names)[:2])
    return shown
