"""Prototypical Networks: classify by squared Euclidean distance to class-mean embeddings.

References:
    Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from metalearner import functional as fx
from metalearner.config.bounds import META_BATCH, STEPS, WAYS
from metalearner.errors import ConfigError
from metalearner.functional import compiled as speed
from metalearner.nn.backbones import init_params
from metalearner.nn.layers import NormMode, per_task_kernels, reference_statistics
from metalearner.nn.parts import takes_tasks
from metalearner.nn.user import as_backbone
from metalearner.strategies.base import (
    OuterLoop,
    Params,
    Predictor,
    Strategy,
    TaskKind,
    resolve_batching,
    support_ways,
)
from metalearner.strategies.config import ConfigBase, check_range
from metalearner.strategies.registry import register
from metalearner.strategies.space import SearchParam, SpaceContext, int_range
from metalearner.tasks.batch import TaskBatch

MOST_TRAIN_WAYS = 60  # the paper's Omniglot training ways: the top of a searched range


@dataclass(frozen=True)
class ProtoNetConfig(ConfigBase):
    """Hyperparameters of Prototypical Networks; defaults are the paper's Omniglot setting.

    The learning-rate schedule and the training ways are read by the training loop and the
    task sampler: the paper trained Omniglot with 60-way episodes and tested with 5 or 20.
    """

    meta_lr: float = 1e-3  # Adam's step size
    lr_halve_every: Annotated[int, STEPS] = 2000  # episodes between halvings of meta_lr
    # Episodes per meta-step (one in the paper).
    meta_batch_size: Annotated[int, META_BATCH] = 1
    # Ways of training episodes (None: as at test time).
    train_ways: Annotated[int | None, WAYS.at_least(2)] = 60
    # "vmap" runs the backbone once over every task's images (per-task BatchNorm statistics);
    # "loop" runs it task by task (the reference); "compiled" is the loop with each episode's
    # forward and backward compiled whole (torch.compile; transductive BatchNorm only). Scoring
    # (validation, test) runs the loop or vmap without autograd either way.
    batching: Literal["auto", "vmap", "loop", "compiled"] = "auto"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "omniglot": {},
        "miniimagenet": {"train_ways": 30},
    }

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "meta_lr", low=0.0, strict=True)


@register("protonet")
class ProtoNet(Strategy):
    """Prototypical Networks: logits are −‖f(x) − c_k‖², c_k the mean embedding of class k.

    Only the backbone (``"features."`` parameters) is learned: a network's ``.features``, or a
    module of yours, without its final linear layer where one is found (:meth:`runnable`). Any
    number of ways works at test time; tasks need integer labels (``TaskBatch.classes`` may be
    left out). Support and query images of a task are embedded together, as in the paper's
    code, so BatchNorm statistics are those of the whole episode (transductive), or, in
    inductive mode, those of the support images alone, in training and at test. The outer loop
    is Adam with its step halved every ``lr_halve_every`` episodes, as in the paper.

    References:
        Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    """

    default_config: ClassVar[ProtoNetConfig] = ProtoNetConfig()
    config: ProtoNetConfig
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("classification",)
    outer_schedule: ClassVar[Literal["constant", "cosine", "linear", "step"]] = "step"
    # benchmarks/protonet_batching.py: on a 2-core CPU the loop trains 2.5x the steps/s of one
    # vmapped call in bfloat16 (1.6x in float32; its activations miss the cache) and 1.26x those
    # of compiled episodes (1.05x); CUDA: not measured yet.
    MEASURED: ClassVar[dict[str, str]] = {"cpu": "loop", "cuda": "vmap"}

    def __init__(self, model: nn.Module, config: ProtoNetConfig) -> None:
        super().__init__(model, config)
        features = self.model.get_submodule("features")
        self._embed = fx.functional(features)
        self._stacks = takes_tasks(features)  # else each task's episode goes in on its own
        self._compiled: Callable[..., tuple[Tensor, Tensor]] | None = None

    @classmethod
    def runnable(cls, model: nn.Module, config: ProtoNetConfig) -> nn.Module:
        """The model's ``.features``; a module of yours without its final linear layer where
        one is found, else whole (:func:`~metalearner.nn.user.as_backbone`)."""
        return as_backbone(model)

    run_settings: ClassVar[Mapping[str, str]] = {
        **Strategy.run_settings,
        "lr_halve_every": "optimizer.decay_every",
    }

    @classmethod
    def outer_loop(cls, config: ProtoNetConfig) -> OuterLoop:
        """Adam, its step halved every ``lr_halve_every`` episodes."""
        default = super().outer_loop(config)
        return dataclasses.replace(default, halve_every_tasks=config.lr_halve_every)

    @classmethod
    def check_norm(cls, config: ProtoNetConfig, norm: NormMode) -> None:
        """Compiled episodes (``batching: compiled``) normalise transductively only: compiled
        code cannot read which items' statistics BatchNorm takes."""
        if norm == "inductive" and config.batching == "compiled":
            raise ConfigError(
                "strategy_config.batching=compiled normalises transductively only; with "
                "model.norm=inductive set strategy_config.batching to loop, vmap or auto."
            )

    @classmethod
    def training_ways(cls, config: ProtoNetConfig) -> int | None:
        """``train_ways``: the paper trains with more ways than it tests with."""
        return config.train_ways

    @classmethod
    def fit_to_classes(
        cls, config: ProtoNetConfig, *, classes: int, ways: int, given: Collection[str]
    ) -> ProtoNetConfig:
        """The default of 60 training ways is Omniglot's: with fewer training classes and no
        ``train_ways`` given, a user expects all of them, not an error about a setting they
        never gave."""
        if "train_ways" in given or not (config.train_ways or 0) > classes:
            return config
        return dataclasses.replace(config, train_ways=max(classes, ways))

    @classmethod
    def search_space(cls, config: ProtoNetConfig, context: SpaceContext) -> list[SearchParam]:
        """The outer step size and, for classification, the training ways."""
        space = super().search_space(config, context)
        if context.ways is not None:
            low, high = context.ways, MOST_TRAIN_WAYS
            if context.training_classes is not None:  # no more ways than training classes
                high = min(high, context.training_classes)
            space.append(int_range("train_ways", "strategy_config.train_ways", low, max(low, high)))
        return space

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The backbone's parameters (the head is not used)."""
        params = init_params(self.model, generator=generator)
        return {k: v for k, v in params.items() if k.startswith("features.")}

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Gradient of the mean query cross-entropy of the distance logits."""
        ways = batch.ways
        if ways is None:
            raise ConfigError(
                "protonet classifies: its tasks need integer class labels 0..N-1, not the real "
                "targets of regression."
            )
        if self.config.batching == "compiled":
            self.check_norm(self.config, self.norm)  # a strategy built with build(norm=...)
            return fx.meta_gradient(self._compiled_objective(batch, ways), params)
        vectorize = resolve_batching(
            self.config.batching, device=batch.support_x.device, measured=self.MEASURED
        )

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            feats = fx.subset(p, "features.")
            if vectorize:
                logits = self.logits(feats, batch.support_x, batch.support_y, batch.query_x, ways)
            else:
                (logits,) = fx.map_tasks(
                    lambda q, sx, sy, qx: (self.logits(q, sx, sy, qx, ways),),
                    feats,
                    [batch.support_x, batch.support_y, batch.query_x],
                    vectorize=False,
                )
            loss = fx.task_loss(logits, batch.query_y)
            return loss, {"accuracy": fx.accuracy(logits, batch.query_y)}

        return fx.meta_gradient(objective, params)

    def _compiled_objective(
        self, batch: TaskBatch, ways: int
    ) -> Callable[[Params], tuple[Tensor, dict[str, Tensor]]]:
        """The mean query loss of ``batch``'s episodes, each episode's loss and accuracy one
        compiled graph (compiled at the first call of each shape: tens of seconds on a CPU)."""
        if self._compiled is None:
            self._compiled = speed.compile_task(self._episode)
        episode = self._compiled

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            inputs = [batch.support_x, batch.support_y, batch.query_x, batch.query_y]
            loss, accuracy = fx.map_tasks(
                lambda q, sx, sy, qx, qy: episode(q, sx, sy, qx, qy, ways),
                fx.subset(p, "features."),
                inputs,
                vectorize=False,
            )
            return loss.mean(), {"accuracy": accuracy.mean()}

        return objective

    def _episode(
        self, feats: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, ways: int
    ) -> tuple[Tensor, Tensor]:
        """One episode's query loss and accuracy (what ``batching: compiled`` compiles)."""
        logits = self.logits(feats, sx, sy, qx, ways)
        return fx.task_loss(logits, qy), fx.accuracy(logits, qy)

    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        """A predictor for the classes of ``support_y`` (labels ``0..N-1``, any N).

        ``steps`` is ignored: building prototypes takes no gradient steps.
        """
        ways = support_ways(support_y)
        feats = {k: v.detach() for k, v in fx.subset(params, "features.").items()}

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self.logits(feats, support_x, support_y, x, ways)

        return predict

    def predict_tasks(
        self, params: Params, batch: TaskBatch, *, steps: Sequence[int] | None = None
    ) -> Tensor:
        """``[P, T, Q, N]`` prototype logits of every task's queries, the same for every P.

        No autograd at all (inference mode), and the backbone runs as ``batching`` says: on a
        CPU one task at a time with the per-task kernels (fused BatchNorm, channels-last), 10
        ms per 5-way 1-shot 15-query Omniglot task on one core against 21 for the plain
        per-task path and 42 for one call over 20 tasks, whose activations miss the cache.
        """
        ways = max(support_ways(labels) for labels in batch.support_y)  # each task checked
        feats = fx.subset(params, "features.")
        sx, sy, qx = batch.support_x, batch.support_y, batch.query_x
        vectorize = resolve_batching(self.config.batching, device=sx.device, measured=self.MEASURED)
        with torch.inference_mode():
            if vectorize:
                logits = self.logits(feats, sx, sy, qx, ways)
            else:
                with per_task_kernels():  # safe: a plain loop
                    per_task = [
                        self.logits(feats, *task, ways) for task in zip(sx, sy, qx, strict=True)
                    ]
                logits = torch.stack(per_task)
        return logits.expand(1 if steps is None else len(steps), *logits.shape)

    def logits(
        self, feats: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor, ways: int
    ) -> Tensor:
        """``[..., Q, N]`` logits −‖f(x_q) − c_k‖² for one task or ``[T, ...]`` tasks."""
        n_support = support_y.shape[-1]
        # One backbone call for support and query: BatchNorm sees the whole episode, or
        # (inductive) takes the support's statistics for both.
        embed = self._embed
        if support_y.dim() > 1 and not self._stacks:  # a user's module: one task at a time
            embed = vmap(self._embed, in_dims=(None, 0))
        with reference_statistics(n_support if self.norm == "inductive" else None):
            z = embed(feats, torch.cat([support_x, query_x], dim=support_y.dim() - 1))
        # Under bfloat16 autocast (a run's ``precision``) only the backbone is bfloat16: the
        # prototypes and distances in bfloat16 would round logits of a few hundred by whole units.
        dtype = torch.float32 if z.dtype in (torch.bfloat16, torch.float16) else z.dtype
        with torch.autocast(z.device.type, enabled=False):
            z = z.to(dtype)
            return prototype_logits(z[..., :n_support, :], support_y, z[..., n_support:, :], ways)


def prototype_logits(z_support: Tensor, support_y: Tensor, z_query: Tensor, ways: int) -> Tensor:
    """Negative squared Euclidean distances from queries to class prototypes.

    Args:
        z_support: ``[..., S, F]`` support embeddings.
        support_y: ``[..., S]`` labels ``0..ways-1``.
        z_query: ``[..., Q, F]`` query embeddings.
        ways: N.

    Returns:
        ``[..., Q, N]`` logits.
    """
    onehot = F.one_hot(support_y, ways).to(z_support.dtype)  # [..., S, N]
    sums = onehot.transpose(-1, -2) @ z_support  # [..., N, F]
    prototypes = sums / onehot.sum(-2).unsqueeze(-1)
    # The direct difference, not ‖q‖² − 2q·c + ‖c‖²: exact where queries sit near prototypes.
    diff = z_query.unsqueeze(-2) - prototypes.unsqueeze(-3)  # [..., Q, N, F]
    return -diff.square().sum(-1)
