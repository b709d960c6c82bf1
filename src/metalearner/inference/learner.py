"""Step four of the pipeline: a meta-trained model adapts to a new task and predicts.

``load`` reads a checkpoint (data only: safetensors + JSON, checksum-verified, never pickled),
rebuilds its backbone and strategy from the recorded config, and returns a :class:`Learner`.
``Learner.adapt`` takes a new task's few labeled examples and returns a :class:`TaskModel`
whose ``predict`` gives class names and probabilities (or regression predictions).

Inputs are converted exactly as in training, from what the checkpoint recorded: image files,
bytes or PIL images of any size and mode are decoded, converted to the stored channels, resized
with the same filter, inverted if training inverted them, and scaled to ``[0, 1]``. An array or
tensor is taken as already converted: it must have the model's input shape.

BatchNorm runs in the run's mode (``model.norm``; ``load(..., norm=...)`` overrides it). In
``transductive`` mode (the MAML and Reptile papers' protocol, the default) the items given to
``predict`` are normalised with their own statistics, so they are scored together: give it a
task's whole query set, not one item at a time (a single item would be normalised against
itself; fewer items than the task's classes warn once). In ``inductive`` mode they are
normalised with the support set's statistics, and an item's prediction depends on it alone.

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017. Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning",
    NeurIPS 2017 (any number of classes at test time).

Example:
    >>> learner = metalearner.load("runs/omniglot-5w1s-protonet")
    >>> task = learner.adapt(["a.png", "b.png"], ["alpha", "beta"])
    >>> task.predict(["q1.png", "q2.png"]).labels
    ['beta', 'alpha']
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metalearner.data.images import ImageSettings, decode_image
from metalearner.data.registry import find
from metalearner.errors import ConfigError, DataError
from metalearner.evaluation.choice import adapted, stored_choice
from metalearner.inference.textfiles import encode_records
from metalearner.nn.layers import NormMode, norm_mode
from metalearner.runs.checkpoint import Checkpoint, damaged, load_checkpoint
from metalearner.runs.checkpoint_schema import (
    check_model_meta,
    check_tensors,
    check_training_meta,
)
from metalearner.runs.config import RunConfig, load_config
from metalearner.runs.devices import torch_device
from metalearner.runs.folder import checkpoint_path
from metalearner.runs.models import build_network
from metalearner.strategies import Params, Predictor, Strategy, build
from metalearner.tasks import to_float

Inputs = Any
"""A sequence of image paths, bytes or PIL images (image models; converted as in training), or
a tensor/array ``[M, *input_shape]``: ``uint8`` images are scaled to ``[0, 1]`` as in training,
floats are taken as already scaled; rows of feature values for table and regression models;
for text models records ``{"tokens", "h", "t"}`` (:mod:`metalearner.inference.textfiles`) or ids."""


@dataclass(frozen=True)
class Prediction:
    """A task model's answer for a batch of query items.

    Attributes:
        labels: the predicted class name of each item (classification), else empty.
        probabilities: ``[Q]`` the probability of each predicted class (classification), or the
            predictions themselves (regression).
        scores: ``[Q, N]`` every class's probability, columns in ``classes`` order
            (classification), or ``[Q]`` predictions (regression).
        classes: the task's class names, in column order.
    """

    labels: list[str]
    probabilities: Tensor
    scores: Tensor
    classes: tuple[str, ...]


class TaskModel:
    """A model adapted to one task; ``predict`` scores query items."""

    def __init__(self, learner: Learner, predictor: Predictor, classes: tuple[str, ...]):
        self.learner, self.classes = learner, classes
        self._predictor = predictor
        self._warned = False

    def predict(self, x: Inputs) -> Prediction:
        """Predicts the given query items: together in transductive mode (their BatchNorm
        statistics are theirs), each on its own in inductive mode (the support set's).

        Warns (once per task model) where transductive BatchNorm is given fewer items than the
        task has classes: so few items' statistics make predictions near chance.

        Raises:
            DataError: an item cannot be read or has the wrong shape.
        """
        inputs = self.learner.prepare(x, what="query")
        few = few_items_warning(self.learner, len(inputs), len(self.classes))
        if few and not self._warned:
            self._warned = True
            warnings.warn(few, FewItemsWarning, stacklevel=2)
        with torch.no_grad():
            out = self._predictor(inputs).float().cpu()
        if self.learner.kind == "regression":
            values = out.reshape(-1)
            return Prediction([], values, values, ())
        # A head meta-trained for more ways than the task has: its extra outputs were never
        # given a class here, so they are left out before the softmax.
        probs = out[:, : len(self.classes)].softmax(dim=1)
        best, index = probs.max(dim=1)
        return Prediction([self.classes[i] for i in index.tolist()], best, probs, self.classes)


class Learner:
    """A meta-trained strategy with its parameters and the preprocessing it was trained with.

    Attributes:
        strategy: the learning strategy, bound to the checkpoint's backbone, adapting as
            chosen on the run's validation tasks (``adaptation``) where the checkpoint holds
            a choice, else as configured.
        adaptation: that choice (:mod:`metalearner.evaluation.choice`), or ``None``.
        params: the meta-trained parameters, on ``device``.
        config: the run's resolved config.
        meta: the checkpoint's metadata (backbone, input shape, preprocessing, versions).
        kind: ``"classification"`` or ``"regression"``.
        max_ways: the most classes a task may have (the head's outputs), or ``None`` for any
            number (ProtoNets: the head is the prototypes).
        text: whether the model reads sentences (:mod:`metalearner.inference.textfiles`).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        config: RunConfig,
        device: torch.device,
        *,
        norm: NormMode | None = None,
    ):
        self.meta, self.config, self.device = checkpoint.meta, config, device
        out_features = self.meta["backbone"]["out_features"]
        self.input_shape = tuple(int(s) for s in self.meta["input_shape"])
        # The run's network (a python model's factory imported again); parameters from below.
        model = build_network(self.meta["backbone"], self.input_shape, seed=0).network
        settings = dict(config.strategy_config)
        recorded = self.meta.get("strategy_config", {}).get("num_classes")
        if recorded is not None and settings.get("num_classes") is None:
            settings["num_classes"] = recorded  # filled in from the data (transfer baselines)
        mode = norm or config.model.norm  # the run's BatchNorm mode unless overridden
        self.strategy: Strategy = build(config.strategy, model, settings, norm=mode)
        # Adapting as chosen on the run's validation tasks when it ended, where it was.
        self.adaptation = stored_choice(self.meta, config.strategy)
        self.strategy = adapted(self.strategy, self.adaptation, checkpoint.path)
        params = self.strategy.completed(checkpoint.group("params"))
        expected = self.strategy.init_params(0)
        # Names, shapes and dtypes as the recorded model has them: anything else is refused
        # here, in one sentence, rather than as a shape error (or a hang) inside adapt.
        check_tensors(checkpoint.path, "params", params, expected)
        self.params: Params = {k: params[k].to(device) for k in expected}
        # The dataset's entry says regression or classification; one not registered here (a
        # user's own, in another session) was classified, as every dataset but sinusoids is.
        trained_on = find(self.meta.get("dataset"))
        self.kind = trained_on.task_kind if trained_on is not None else "classification"
        self.max_ways = int(out_features) if "head.weight" in self.params else None
        self.preprocessing: dict[str, Any] = dict(self.meta.get("preprocessing", {}))
        self.text = self.preprocessing.get("kind") == "text"  # sentences: [3, L] ids

    @property
    def images(self) -> bool:
        """Whether the model takes images (``[C, H, W]`` inputs)."""
        return len(self.input_shape) == 3

    def prepare(self, x: Inputs, *, what: str = "input") -> Tensor:
        """Converts raw inputs to the model's input tensor, as training did.

        Raises:
            DataError: an item cannot be read, or the inputs have the wrong shape.
        """
        if isinstance(x, (str, Path, bytes)):
            x = [x]  # one file is a list of one
        x = encode_records(x, self.preprocessing) if self.text else x  # records: as in training
        if self.images and _is_file_list(x):
            settings = _image_settings(self.preprocessing)
            decoded = [_decode(item, settings) for item in x]
            if not decoded:
                raise DataError(f"The {what} set is empty; give at least one image.")
            tensor = torch.from_numpy(np.stack(decoded))
        else:
            try:
                tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
            except (TypeError, ValueError, RuntimeError):
                raise DataError(
                    f"The {what} set is neither files nor numbers; give image paths, PIL images, "
                    "or an array of inputs."
                ) from None
            if self.kind == "regression" and tensor.dim() == 1:
                tensor = tensor[:, None]
        if tuple(tensor.shape[1:]) != self.input_shape or tensor.dim() < 2 or len(tensor) == 0:
            shape = "x".join(str(s) for s in self.input_shape)
            hint = " (or image files, which are converted)" if self.images else ""
            raise DataError(
                f"The {what} set has shape {list(tensor.shape)}; this model takes a non-empty "
                f"batch of {shape} inputs{hint}."
            )
        return (tensor.long() if self.text else to_float(tensor)).to(self.device)

    def adapt(
        self, support_x: Inputs, support_y: Sequence[Any], *, steps: int | None = None
    ) -> TaskModel:
        """Adapts to a new task from its labeled support set.

        Args:
            support_x: the support inputs (see :data:`Inputs`).
            support_y: one label per support item: class names or numbers (classification;
                classes are ordered by name), or targets (regression).
            steps: adaptation steps (default: those chosen on the run's validation tasks
                when it ended, else the strategy's ``eval_steps``); ignored by ProtoNets.

        Returns:
            A :class:`TaskModel` for the task.

        Raises:
            DataError: labels and inputs differ in number, a class has no example, or the task
                has more classes than the model's head (saying what to do).
        """
        x = self.prepare(support_x, what="support")
        labels = list(support_y.tolist() if isinstance(support_y, Tensor) else support_y)
        if len(labels) != len(x):
            raise DataError(
                f"The support set has {len(x)} inputs but {len(labels)} labels; "
                "give one label per input."
            )
        if steps is not None and steps < 0:
            raise DataError(f"steps={steps}: give 0 or more adaptation steps.")
        if self.kind == "regression":
            y = torch.tensor([float(v) for v in labels], dtype=torch.float32, device=self.device)
            return TaskModel(self, self.strategy.adapt(self.params, x, y, steps=steps), ())
        classes = tuple(sorted({str(v) for v in labels}, key=_natural))
        if self.max_ways is not None and len(classes) > self.max_ways:
            raise DataError(
                f"The support set has {len(classes)} classes but this {self.config.strategy} "
                f"model was meta-trained with a {self.max_ways}-way head; give at most "
                f"{self.max_ways} classes, or meta-train with data.ways={len(classes)} "
                "(protonet takes any number of classes)."
            )
        ids = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([ids[str(v)] for v in labels], dtype=torch.int64, device=self.device)
        return TaskModel(self, self.strategy.adapt(self.params, x, y, steps=steps), classes)


def load(
    path: Path | str, *, device: str = "cpu", which: str = "best", norm: str | None = None
) -> Learner:
    """Loads a meta-trained model from a run folder or a checkpoint folder.

    Args:
        path: a run folder (its ``checkpoints/best``, else ``checkpoints/latest``) or a
            checkpoint folder (holding ``meta.json`` and ``model.safetensors``).
        device: ``"cpu"`` or ``"cuda"``.
        which: in a run folder, ``"best"`` or ``"latest"``.
        norm: BatchNorm's mode, ``"transductive"`` or ``"inductive"`` (default: the run's
            ``model.norm``).

    Raises:
        DataError: not a run or checkpoint folder, a checkpoint of another format version, or
            one whose tensors do not match their recorded checksum.
        ConfigError: an unknown device.
    """
    folder = Path(path).expanduser()
    target = torch_device(device)
    mode = norm_mode(norm, "norm") if norm is not None else None
    if not (folder / "meta.json").exists():
        if not (folder / "config.yaml").is_file() and not (folder / "checkpoints").is_dir():
            raise DataError(
                f"{path} is neither a run folder nor a checkpoint; give a folder written by "
                "`metalearner train` or one of its checkpoints/ folders."
            )
        folder = checkpoint_path(folder, which)
    checkpoint = load_checkpoint(folder)
    if not all(k in checkpoint.meta for k in ("config", "backbone", "input_shape")):
        raise DataError(
            f"{checkpoint.path} is not a model checkpoint (its meta.json lacks config, backbone "
            "or input_shape); use one written by `metalearner train`."
        )
    if "param_names" in checkpoint.meta:  # a training state (a run's best or latest)
        check_training_meta(checkpoint)
    else:
        check_model_meta(checkpoint)
    try:
        config = load_config(base=checkpoint.meta["config"])
    except ConfigError as err:
        raise damaged(checkpoint.path, f"its recorded config: {_clause(str(err))}") from None
    return Learner(checkpoint, config, target, norm=mode)


class FewItemsWarning(UserWarning):
    """Fewer query items than classes predicted together with transductive BatchNorm."""


def few_items_warning(learner: Learner, items: int, ways: int) -> str | None:
    """Why ``items`` query items are too few for ``learner``'s transductive BatchNorm to
    normalise together (fewer than the task's ``ways``), or ``None`` where they are not."""
    if learner.strategy.effective_norm != "transductive" or items >= ways:
        return None
    return (
        f"{items} query item(s) predicted together with transductive BatchNorm, fewer than the "
        f"task's {ways} classes: their own statistics normalise them, which gives near-chance "
        "predictions; predict a task's whole query set at once, or use inductive BatchNorm "
        "(--norm inductive, load(..., norm='inductive'), or model.norm=inductive in training)."
    )


def _clause(sentence: str) -> str:
    """A sentence made a clause inside another: its first letter lowered, its end stop dropped."""
    text = sentence.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _is_file_list(x: Inputs) -> bool:
    if isinstance(x, (Tensor, np.ndarray)) or not isinstance(x, Sequence):
        return False
    return all(isinstance(i, (str, Path, bytes)) or _is_pil(i) for i in x)


def _is_pil(item: object) -> bool:
    from PIL import Image

    return isinstance(item, Image.Image)


def _decode(item: Any, settings: ImageSettings) -> np.ndarray:
    if _is_pil(item):
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        return decode_image(buffer.getvalue(), settings, name="a PIL image")
    if isinstance(item, (str, Path)):
        file = Path(item).expanduser()
        if not file.is_file():
            raise DataError(f"{file} does not exist; give the path of an image file.")
        return decode_image(file, settings)
    return decode_image(item, settings)


def _image_settings(preprocessing: dict[str, Any]) -> ImageSettings:
    size = preprocessing.get("size", [28, 28])
    return ImageSettings.of(
        (int(size[0]), int(size[1])),
        channels=int(preprocessing.get("channels", 1)),
        invert=bool(preprocessing.get("invert", False)),
        resample=str(preprocessing.get("resample", "lanczos")),
    )


def _natural(name: str) -> tuple[float, str]:
    """Numbers sort as numbers (2 before 10), names as text: as the dataset loaders order them."""
    try:
        return (float(name), name)
    except ValueError:
        return (float("inf"), name)
