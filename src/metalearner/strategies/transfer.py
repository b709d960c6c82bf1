"""Transfer-learning baselines for classification: pretrain on all classes, then adapt a head.

No meta-learning: the backbone is trained as an ordinary classifier over every meta-training
class at once (the global labels of ``TaskBatch.classes``), and a new task gets a new head on the
frozen features. Whatever a meta-learner gains over these is what learning to learn adds.

- ``finetune`` (Chen et al.'s "Baseline"): a linear head over all training classes while
  pretraining; a new linear head trained on the support features.
- ``baselinepp`` ("Baseline++"): cosine-similarity heads in both phases, which Chen et al. found
  to reduce intra-class variation.
- ``nearest-centroid``: the ``finetune`` backbone, and each query goes to the class whose mean
  support feature is most similar (cosine similarity times ``scale``: on features trained for a
  linear head, direction carries the class better than distance); no adaptation steps.

The new head is trained with full-batch SGD with momentum 0.9 and weight decay 1e-3 (Chen et al.
used these with mini-batches of 4 for 100 steps; a 1- or 5-shot support set is one batch). It
starts at zero (linear) or at the normalised class means (cosine), so adaptation draws no random
numbers. BatchNorm in the backbone uses the statistics of the batch it sees, as everywhere here.

References:
    Chen, Liu, Kira, Wang and Huang, "A Closer Look at Few-shot Classification", ICLR 2019.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner import functional as fx
from metalearner.config.bounds import ADAPT_STEPS, CLASSES, META_BATCH
from metalearner.errors import ConfigError
from metalearner.functional import optim
from metalearner.nn.backbones import init_params
from metalearner.nn.layers import per_task_kernels
from metalearner.strategies.base import (
    Params,
    Predictor,
    StepwiseStrategy,
    TaskKind,
    support_ways,
)
from metalearner.strategies.config import ConfigBase, check_range
from metalearner.strategies.registry import name_of, register
from metalearner.strategies.space import SearchParam, SpaceContext, log_range
from metalearner.tasks.batch import TaskBatch

HEAD = "pretrain_head."
Head = Callable[[Tensor], Tensor]
"""A new task's head: features ``[..., F]`` to logits ``[..., N]``."""


@dataclass(frozen=True)
class TransferConfig(ConfigBase):
    """Hyperparameters of the transfer baselines; defaults follow Chen et al. (2019).

    ``num_classes`` is the size of the pretraining head: the number of class ids of the
    meta-training data, filled in from the data when a run is built.
    """

    num_classes: Annotated[int | None, CLASSES.at_least(2)] = None
    adapt_lr: float = 0.01  # SGD step size of the new head
    # SGD steps of the new head on a task's support set.
    eval_steps: Annotated[int, ADAPT_STEPS] = 100
    scale: float = 10.0  # cosine heads: logits are scale × cosine similarity
    meta_lr: float = 1e-3  # Adam's step size while pretraining (read by the training loop)
    # Episodes per pretraining step (read by the training loop).
    meta_batch_size: Annotated[int, META_BATCH] = 4

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "adapt_lr", low=0.0, strict=True)
        check_range(self, "scale", low=0.0, strict=True)
        check_range(self, "meta_lr", low=0.0, strict=True)


class _Transfer(StepwiseStrategy):
    """Pretraining over global classes and a head adapted on frozen features."""

    default_config: ClassVar[TransferConfig] = TransferConfig()
    config: TransferConfig
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("classification",)
    cosine: ClassVar[bool] = False  # cosine-similarity heads (Baseline++) instead of linear

    def __init__(self, model: nn.Module, config: TransferConfig) -> None:
        features = getattr(model, "features", None)
        if not isinstance(features, nn.Module):
            raise ConfigError(
                f"Strategy {name_of(self)!r} needs a model with a .features backbone."
            )
        super().__init__(model, config)
        self._embed = fx.functional(features)
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"Strategy {name_of(self)!r} needs a model with a linear .head.")
        self._width = head.in_features  # the feature size, for the pretraining head

    @classmethod
    def with_class_ids(cls, config: TransferConfig, num_classes: int) -> TransferConfig:
        """The pretraining head spans every class id of the training data, unless set."""
        if config.num_classes:
            return config
        return dataclasses.replace(config, num_classes=num_classes)

    @classmethod
    def search_space(cls, config: TransferConfig, context: SpaceContext) -> list[SearchParam]:
        """The outer step size and the new head's step size."""
        adapt_lr = log_range("adapt_lr", "strategy_config.adapt_lr", config.adapt_lr, 0.1, 10)
        return [*super().search_space(config, context), adapt_lr]

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The backbone's parameters and a pretraining head over ``num_classes`` classes."""
        classes = self.config.num_classes
        if classes is None:
            raise ConfigError(
                f"Strategy {name_of(self)!r} needs classification data: "
                "strategy_config.num_classes (the number of training classes) is set from the "
                "data when a run is built."
            )
        g = (
            generator
            if isinstance(generator, torch.Generator)
            else torch.Generator().manual_seed(generator)
        )
        params = {k: v for k, v in init_params(self.model, generator=g).items()
                  if k.startswith("features.")}  # fmt: skip
        bound = self._width**-0.5  # nn.Linear's default initialisation
        weight = (torch.rand(classes, self._width, generator=g) * 2 - 1) * bound
        dtype = next(iter(params.values())).dtype  # the backbone's: a float64 model's too
        params[HEAD + "weight"] = weight.to(dtype)
        if not self.cosine:
            params[HEAD + "bias"] = torch.zeros(classes, dtype=dtype)
        return params

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Gradient of the cross-entropy over all training classes, every image of the batch."""
        if batch.classes is None:
            raise ConfigError(
                f"Strategy {name_of(self)!r} needs classification tasks, not regression."
            )
        x = torch.cat([batch.support_x, batch.query_x], dim=1).flatten(0, 1)
        labels = torch.cat([batch.support_y, batch.query_y], dim=1)
        y = batch.classes.gather(1, labels).flatten()  # the global class of every image
        if int(y.max()) >= params[HEAD + "weight"].shape[0]:
            raise ConfigError(
                f"A class id {int(y.max())} exceeds num_classes="
                f"{params[HEAD + 'weight'].shape[0]}; set num_classes to the data's class count."
            )

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            z = self._embed(fx.subset(p, "features."), x)
            logits = self._head(z, p[HEAD + "weight"], p.get(HEAD + "bias"))
            return F.cross_entropy(logits, y), {"accuracy": fx.accuracy(logits, y)}

        return fx.meta_gradient(objective, params)

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` steps of training a new head for the
        support's classes on the frozen backbone."""
        feats, ways, z = self._support_features(params, support_x, support_y)

        def predictor(head: Head) -> Predictor:
            def predict(x: Tensor) -> Tensor:
                with torch.no_grad(), per_task_kernels():
                    return head(self._embed(feats, x))

            return predict

        return [predictor(h) for h in self._heads(z, support_y, ways, steps)]

    def predict_tasks(
        self, params: Params, batch: TaskBatch, *, steps: Sequence[int] | None = None
    ) -> Tensor:
        """``[P, T, Q, N]``: :meth:`adapt_steps`' predictions, for a batch of tasks at once.

        The backbone is frozen, so each task's support and query sets are embedded once (one
        task at a time with the per-task kernels, the fastest on a CPU; see
        ``ProtoNet.predict_tasks``) and the head of every step count reads the same query
        features. The new heads of all the tasks train together, as one ``[T, N, F]`` head
        whose loss is the sum of the tasks' losses: each task's head gets the gradient it gets
        alone, and a step costs one small graph instead of ``T``.
        """
        counts = [self.eval_steps or 0] if steps is None else list(steps)
        feats = {k: v.detach() for k, v in fx.subset(params, "features.").items()}
        ways = max(support_ways(labels) for labels in batch.support_y)  # each task checked
        with torch.no_grad(), per_task_kernels():  # safe: plain loops
            z_support = torch.stack([self._embed(feats, x) for x in batch.support_x])
            z_query = torch.stack([self._embed(feats, x) for x in batch.query_x])
        heads = self._heads(z_support, batch.support_y, ways, max(counts))
        with torch.no_grad():
            return torch.stack([heads[s](z_query) for s in counts])

    def _support_features(
        self, params: Params, support_x: Tensor, support_y: Tensor
    ) -> tuple[Params, int, Tensor]:
        """The frozen backbone, the number of classes, and the support's features."""
        feats = {k: v.detach() for k, v in fx.subset(params, "features.").items()}
        ways = support_ways(support_y)
        with torch.no_grad(), per_task_kernels():
            return feats, ways, self._embed(feats, support_x)

    def _heads(self, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
        """The new head after 0, 1, ..., ``steps`` steps on support features ``z`` ``[..., S,
        F]`` (labels ``y`` ``[..., S]``), each a function of features to logits."""
        return [
            partial(self._head, weight=w, bias=b) for w, b in self._train_head(z, y, ways, steps)
        ]

    def _train_head(
        self, z: Tensor, y: Tensor, ways: int, steps: int
    ) -> list[tuple[Tensor, Tensor | None]]:
        """The head after 0, 1, ..., ``steps`` steps of SGD with momentum on features ``z``
        (of one task, or ``[T, S, F]`` of several: one head each)."""
        head: Params
        lead = z.shape[:-2]
        if self.cosine:  # imprinting: start from the normalised class means
            head = {"weight": F.normalize(F.one_hot(y, ways).to(z.dtype).mT @ z, dim=-1)}
        else:
            head = {
                "weight": z.new_zeros(*lead, ways, z.shape[-1]),
                "bias": z.new_zeros(*lead, ways),
            }
        # Chen et al.'s head training: SGD, momentum 0.9, weight decay 1e-3.
        sgd = optim.sgd(self.config.adapt_lr, momentum=0.9, weight_decay=1e-3)
        state = sgd.init(head)
        path = [_as_head(head)]
        for _ in range(steps):
            leaves = {k: t.detach().requires_grad_() for k, t in head.items()}
            with torch.enable_grad():
                logits = self._head(z, *_as_head(leaves))
                losses = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
                # Each task's mean loss, summed over tasks: no task's loss reads another's head.
                loss = losses.view(y.shape).mean(-1).sum()
                grads = torch.autograd.grad(loss, list(leaves.values()))
            with torch.no_grad():
                head, state = sgd.update(leaves, dict(zip(leaves, grads, strict=True)), state)
            path.append(_as_head({k: t.detach() for k, t in head.items()}))
        return path

    def _head(self, z: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Logits of features ``z`` ``[..., F]`` under a head ``[N, F]``, or ``[T, Q, F]``
        under one head per task ``[T, N, F]``."""
        if self.cosine:
            return self.config.scale * F.normalize(z, dim=-1) @ F.normalize(weight, dim=-1).mT
        if weight.dim() == 2:  # one head: the pretraining's and one task's
            return F.linear(z, weight, bias)
        logits = z @ weight.mT
        return logits if bias is None else logits + bias.unsqueeze(-2)


@register("finetune")
class FineTune(_Transfer):
    """Chen et al.'s Baseline: supervised pretraining, then a new linear head per task."""


@register("baselinepp")
class BaselinePlusPlus(_Transfer):
    """Chen et al.'s Baseline++: cosine-similarity heads for pretraining and for new tasks."""

    cosine: ClassVar[bool] = True


@register("nearest-centroid")
class NearestCentroid(_Transfer):
    """The Baseline's pretrained backbone; a query goes to the most similar class mean feature."""

    trains_as: ClassVar[str | None] = "finetune"  # same pretraining: a benchmark trains it once

    def _heads(self, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
        """The same head for every step count (there are no adaptation steps): scaled cosine
        similarity to each class's normalised mean support feature."""
        onehot = F.one_hot(y, ways).to(z.dtype)
        centroids = F.normalize((onehot.mT @ z) / onehot.sum(-2).unsqueeze(-1), dim=-1)

        def head(features: Tensor) -> Tensor:
            return self.config.scale * F.normalize(features, dim=-1) @ centroids.mT

        return [head] * (steps + 1)


def _as_head(head: Params) -> tuple[Tensor, Tensor | None]:
    """``(weight, bias)`` of a head; a cosine head has no bias."""
    return head["weight"], head.get("bias")
