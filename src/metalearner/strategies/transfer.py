"""Transfer-learning baselines for classification: pretrain on all classes, then adapt a head.

No meta-learning: the backbone (a network's ``.features``, or a module of yours without its
final linear layer where one is found) is trained as an ordinary classifier over every
meta-training class at once (the global labels of ``TaskBatch.classes``), and a new task gets
a new head on the frozen features. Whatever a meta-learner gains over these is what learning to
learn adds.

Pretraining is the papers' supervised training, not episodes: shuffled mini-batches of
``meta_batch_size`` training examples, every one once per epoch, with the standard augmentation
(Omniglot's rotation classes; random crop, flip and colour jitter on colour images:
:class:`~metalearner.tasks.minibatches.LabeledBatches`), Adam with a cosine schedule over the
run (its steps, or its time budget if that ends it first). Before each validation the mean
feature of the training examples is computed with the backbone as it is then and kept in the
parameters (``feature_mean``), so that every checkpoint carries it for SimpleShot's centring
(:mod:`.heads`, which also holds RFS's logistic regression).

- ``finetune`` (Chen et al.'s "Baseline"): a linear head over all training classes while
  pretraining; a new linear head trained on the support features.
- ``baselinepp`` ("Baseline++"): cosine-similarity heads in both phases, which Chen et al. found
  to reduce intra-class variation.
- ``nearest-centroid``, ``simpleshot`` and ``rfs`` (:mod:`.heads`): the ``finetune`` backbone
  and a head computed from the support features rather than trained by steps.

The new head is trained with full-batch SGD with momentum 0.9 and weight decay 1e-3 (Chen et al.
used these with mini-batches of 4 for 100 steps; a 1- or 5-shot support set is one batch). It
starts at zero (linear) or at the normalised class means (cosine), so adaptation draws no random
numbers. BatchNorm in the backbone uses the statistics of the batch it sees, as everywhere here
(pretraining: a meta-batch's images, in both modes); in inductive mode a task's queries are
embedded with its support set's statistics.

References:
    Chen, Liu, Kira, Wang and Huang, "A Closer Look at Few-shot Classification", ICLR 2019.
    Tian, Wang, Krishnan, Tenenbaum and Isola, "Rethinking Few-Shot Image Classification: a
    Good Embedding Is All You Need?", ECCV 2020 (pretraining: batches of 64, augmentation).
    Wang, Chao, Weinberger and van der Maaten, "SimpleShot: Revisiting Nearest-Neighbor
    Classification for Few-Shot Learning", 2019 (the mean training feature).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner import functional as fx
from metalearner.config.bounds import ADAPT_STEPS, CLASSES, META_BATCH, TASKS
from metalearner.errors import ConfigError
from metalearner.functional import optim
from metalearner.nn.backbones import init_params
from metalearner.nn.dropblock import drop_blocks
from metalearner.nn.layers import normalise_with, per_task_kernels
from metalearner.nn.user import as_backbone
from metalearner.strategies.base import (
    AdaptationGrid,
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
from metalearner.tasks.minibatches import DROP_SEED

HEAD = "pretrain_head."
MEAN = "feature_mean"
"""The parameter holding the mean training feature: computed by ``statistics``, never learned."""
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
    # Training examples per pretraining step, a mini-batch (read by the training loop; Tian et
    # al.'s 64).
    meta_batch_size: Annotated[int, META_BATCH] = 64
    # Training examples the mean feature is taken over (a uniform sample; null: all of them).
    # 10^4 puts it within 1% of a feature's spread of the whole set's, at ~3 s a validation
    # for conv4 on Omniglot on a CPU core (all 88,000 images: ~25 s).
    mean_examples: Annotated[int | None, TASKS] = 10_000
    logistic_c: float = 1.0  # rfs: the inverse L2 penalty C (scikit-learn's; Tian et al.'s 1)
    # The rate of ResNet-12's dropout and DropBlock while pretraining (Tian et al.'s 0.1);
    # backbones without those layers ignore it.
    drop_rate: float = 0.1

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "adapt_lr", low=0.0, strict=True)
        check_range(self, "scale", low=0.0, strict=True)
        check_range(self, "meta_lr", low=0.0, strict=True)
        check_range(self, "logistic_c", low=0.0, strict=True)
        check_range(self, "drop_rate", low=0.0, high=0.9)


class _Transfer(StepwiseStrategy):
    """Pretraining over global classes and a head adapted on frozen features."""

    default_config: ClassVar[TransferConfig] = TransferConfig()
    config: TransferConfig
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("classification",)
    labeled_batches: ClassVar[bool] = True
    outer_schedule: ClassVar[Literal["constant", "cosine", "linear", "step"]] = "cosine"
    cosine: ClassVar[bool] = False  # cosine-similarity heads (Baseline++) instead of linear

    def __init__(self, model: nn.Module, config: TransferConfig) -> None:
        super().__init__(model, config)
        self._embed = fx.functional(self.model.get_submodule("features"))
        head = getattr(self.model, "head", None)
        # The feature size, for the pretraining head: the model's head's, or a user's
        # embedding's (as_embedding: checked on the first batch).
        width = head.in_features if isinstance(head, nn.Linear) else 0
        self._width = width or int(getattr(self.model, "feature_dim", 0))
        if self._width < 1:
            raise ConfigError(
                f"Strategy {name_of(self)!r} cannot tell the size of the model's features; give "
                "it as_embedding(module, feature_dim=F) or a model with a linear .head."
            )

    @classmethod
    def runnable(cls, model: nn.Module, config: TransferConfig) -> nn.Module:
        """The model's ``.features``; a module of yours without its final linear layer where
        one is found, else whole (:func:`~metalearner.nn.user.as_backbone`)."""
        return as_backbone(model)

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

    def adaptation_grid(self) -> AdaptationGrid | None:
        """The number of steps, as every strategy (:meth:`Strategy.adaptation_grid`), and the
        new head's step size: a third of it, it, and three times it (Chen et al. set both by
        hand; a backbone trained for another budget may want others)."""
        grid = super().adaptation_grid()
        if grid is None:
            return None
        lr = self.config.adapt_lr
        rates = (float(f"{lr * 0.3:.3g}"), lr, float(f"{lr * 3:.3g}"))
        return dataclasses.replace(grid, settings={"adapt_lr": rates})

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The backbone's parameters, a pretraining head over ``num_classes`` classes and the
        mean training feature (zero until :meth:`statistics` computes it)."""
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
        params[MEAN] = torch.zeros(self._width, dtype=dtype)
        return params

    def completed(self, params: Params) -> Params:
        """A run written before ``feature_mean`` was kept gets zeros: only SimpleShot reads it,
        and SimpleShot could not adapt with such a run before either (it did not exist)."""
        if MEAN in params or HEAD + "weight" not in params:
            return params
        weight = params[HEAD + "weight"]
        return {**params, MEAN: weight.new_zeros(weight.shape[-1])}

    def statistics(self, params: Params, examples: Iterable[Tensor]) -> Params:
        """The mean feature of the first ``mean_examples`` training examples (a uniform sample),
        embedded as a task is, with the backbone as it is now.

        SimpleShot centres features with the mean over the base classes' training images
        (Wang et al. 2019); every transfer strategy keeps it, so that SimpleShot can adapt with
        the run of the strategy whose training it shares (``trains_as``).
        """
        feats = {k: v.detach() for k, v in fx.subset(params, "features.").items()}
        limit = self.config.mean_examples
        total, count = None, 0
        with torch.no_grad(), per_task_kernels():
            for x in examples:
                x = x if limit is None else x[: limit - count]
                z = self._embed(feats, x).sum(0, dtype=torch.float64)
                total, count = z if total is None else total + z, count + len(x)
                if limit is not None and count >= limit:
                    break
        if total is None:
            return {}
        return {MEAN: (total / count).to(params[MEAN].dtype)}

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Gradient of the cross-entropy over all training classes, every image of the batch."""
        if batch.classes is None:
            kind = "the global class ids" if batch.is_classification else "class labels"
            raise ConfigError(
                f"Strategy {name_of(self)!r} pretrains over every training class, so its tasks "
                f"need {kind} (TaskBatch classes=[T, N]: the class each label stands for)."
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
            if z.shape[-1] != self._width:
                raise ConfigError(
                    f"The model returns {z.shape[-1]} features per example, not {self._width}; "
                    f"give it as as_embedding(module, feature_dim={z.shape[-1]})."
                )
            logits = self._head(z, p[HEAD + "weight"], p.get(HEAD + "bias"))
            return F.cross_entropy(logits, y), {"accuracy": fx.accuracy(logits, y)}

        # Safe: nothing here is vmapped. The fused BatchNorm and channels-last layout make a
        # step of 64 Omniglot images ~2.7x faster on a CPU: more pretraining in a time budget.
        # DropBlock draws from the mini-batch's own seed (a resumed run drops the same blocks);
        # a batch without one (a task sampler's) drops nothing.
        seed = batch.info.get(DROP_SEED)
        drops = torch.Generator().manual_seed(int(seed[0])) if seed is not None else None
        with per_task_kernels(), drop_blocks(drops, self.config.drop_rate):
            return fx.meta_gradient(objective, params)

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` steps of training a new head for the
        support's classes on the frozen backbone."""
        feats, ways, z = self._support_features(params, support_x, support_y)
        reference = self.norm_reference(support_x)

        def embed(x: Tensor) -> Tensor:
            return self._embed(feats, x)

        def predictor(head: Head) -> Predictor:
            def predict(x: Tensor) -> Tensor:
                with torch.no_grad(), per_task_kernels():
                    return head(normalise_with(embed, reference, x))

            return predict

        return [predictor(h) for h in self._heads(params, z, support_y, ways, steps)]

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

        def embed(x: Tensor) -> Tensor:
            return self._embed(feats, x)

        with torch.no_grad(), per_task_kernels():  # safe: plain loops
            z_support = torch.stack([embed(x) for x in batch.support_x])
            z_query = torch.stack([
                normalise_with(embed, self.norm_reference(sx), qx)
                for sx, qx in zip(batch.support_x, batch.query_x, strict=True)
            ])  # fmt: skip
        heads = self._heads(params, z_support, batch.support_y, ways, max(counts))
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

    def _heads(self, params: Params, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
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


def _as_head(head: Params) -> tuple[Tensor, Tensor | None]:
    """``(weight, bias)`` of a head; a cosine head has no bias."""
    return head["weight"], head.get("bias")
