"""MAML and its variants: one inner loop, flags choose the variant (named in :mod:`.variants`).

- ``maml``: second-order MAML, the exact gradient of the query loss through the inner steps.
- ``fomaml``: first-order MAML, the query-loss gradient at the adapted parameters.
- ``metasgd``: per-parameter inner learning rates, learned with the initialisation.
- ``anil``: the inner loop adapts only the head; the backbone learns through the outer loss.

BatchNorm normalises a task's queries with their own batch statistics (transductive, the MAML
paper's setting), or with the support set's under the weights of the moment (inductive: the
query loss of each inner step's weights in meta-training, and every prediction).

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of
    MAML", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from metalearner import functional as fx
from metalearner.config.bounds import ADAPT_STEPS, META_BATCH
from metalearner.errors import ConfigError
from metalearner.functional import compiled as speed
from metalearner.nn.backbones import init_params
from metalearner.nn.layers import NormMode, has_batch_norm, normalise_with, per_task_kernels
from metalearner.nn.parts import takes_tasks
from metalearner.nn.user import as_model, as_network, with_features
from metalearner.strategies.base import Params, Predictor, StepwiseStrategy, resolve_batching
from metalearner.strategies.config import ConfigBase, check_range
from metalearner.strategies.registry import name_of, register
from metalearner.strategies.space import (
    SearchParam,
    SpaceContext,
    int_range,
    log_range,
    meta_batch_choices,
)
from metalearner.tasks.batch import TaskBatch

Embedder = Callable[..., Tensor]
"""``embed(x, reference=None)``: the inner function's inputs (see ``MAML._embedder``)."""

LR_PREFIX = "inner_lr."
"""Meta-SGD's learning rate for parameter ``k`` is stored as ``params["inner_lr." + k]``."""


@dataclass(frozen=True)
class MAMLConfig(ConfigBase):
    """Hyperparameters of the MAML family; defaults are MAML's Omniglot 5-way setting.

    Presets (``config.with_preset(name)``) hold the paper's other settings: ``omniglot-20way``
    (α 0.1, 5 steps, meta-batch 16), ``miniimagenet-1shot`` / ``miniimagenet-5shot`` (α 0.01,
    5 steps, meta-batch 4 / 2; use conv4 width 32) and ``sinusoid`` (α 0.01, 1 step, meta-batch
    25, 40-40 MLP).
    """

    inner_lr: float = 0.4  # α, the inner step size (Meta-SGD: see inner_lr_init)
    inner_steps: Annotated[int, ADAPT_STEPS.at_least(1)] = 1  # inner steps while meta-training
    # Steps when adapting to a new task (MAML's test_num_updates).
    eval_steps: Annotated[int, ADAPT_STEPS] = 10
    first_order: bool = False  # drop the second-order term (FOMAML)
    learn_inner_lr: bool = False  # Meta-SGD: a learned step size per parameter entry
    # Meta-SGD: initial step sizes drawn from U(low, high); None starts every one at inner_lr.
    inner_lr_init: tuple[float, float] | None = None
    head_only: bool = False  # ANIL: adapt the "head." parameters only
    meta_lr: float = 1e-3  # Adam's step size in the outer loop (read by the training loop)
    # Tasks per meta-step (read by the training loop).
    meta_batch_size: Annotated[int, META_BATCH] = 32
    # How a meta-batch runs: vmapped over tasks, a per-task loop, the loop with each task
    # compiled whole (fastest on a CPU once compiled, see metalearner.functional.compiled), or
    # "auto" (the path measured fastest on the batch's device without a compile warm-up; see
    # MAML.MEASURED).
    batching: Literal["auto", "vmap", "loop", "compiled"] = "auto"
    # With vmap: tasks per vmapped chunk, to bound memory.
    chunk_size: Annotated[int | None, META_BATCH] = None
    # CUDA only: record the meta-step (whichever batching) once as a CUDA graph and replay it,
    # one launch per meta-step instead of one per kernel (see metalearner.functional.compiled).
    # The graph reads the parameters where they are: step them in place between calls (as a run's
    # optimizer does); parameters at new addresses are recorded anew (four kept at most).
    cuda_graph: bool = False
    # "bfloat16": autocast the meta-step (faster on CPUs with AVX512-BF16 and on GPUs, but the
    # meta-gradient is only bfloat16-precise); "float32" computes in the parameters' dtype.
    precision: Literal["float32", "bfloat16"] = "float32"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "omniglot-5way": {},
        "omniglot-20way": {"inner_lr": 0.1, "inner_steps": 5, "meta_batch_size": 16},
        "miniimagenet-1shot": {"inner_lr": 0.01, "inner_steps": 5, "meta_batch_size": 4},
        "miniimagenet-5shot": {"inner_lr": 0.01, "inner_steps": 5, "meta_batch_size": 2},
        "sinusoid": {"inner_lr": 0.01, "inner_steps": 1, "meta_batch_size": 25},
    }

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "inner_lr", low=0.0, strict=True)
        check_range(self, "meta_lr", low=0.0, strict=True)
        if self.inner_lr_init is not None:
            low, high = self.inner_lr_init
            if not 0 < low <= high:
                raise ConfigError(
                    f"strategy_config.inner_lr_init {list(self.inner_lr_init)} must be "
                    "[low, high] with 0 < low <= high."
                )
            if not self.learn_inner_lr:
                raise ConfigError(
                    "strategy_config.inner_lr_init needs strategy_config.learn_inner_lr=true "
                    "(Meta-SGD); set it or drop inner_lr_init."
                )


@register("maml")
class MAML(StepwiseStrategy):
    """Model-Agnostic Meta-Learning: learn θ so that a few gradient steps fit a new task.

    The meta-gradient is the exact derivative of the query loss after ``inner_steps`` steps on
    the support set, second-order terms included (unless ``first_order``).

    Args:
        model: the network, or any ``nn.Module`` (its current weights the starting point, see
            :meth:`runnable`), used only as a pure function of a parameter dict.
        config: a :class:`MAMLConfig`.

    References:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
        ICML 2017.
    """

    default_config: ClassVar[MAMLConfig] = MAMLConfig()
    config: MAMLConfig
    requires: ClassVar[str | None] = None  # the config flag that defines a variant
    # Without a preset of their own, the variants adapt as MAML's preset for the task shape does.
    anchor_settings: ClassVar[tuple[str, ...]] = ("inner_lr", "inner_steps", "eval_steps")
    applies_precision: ClassVar[bool] = True  # MAMLConfig.precision: its own autocast
    # Fastest meta-batch path per device type, as benchmarks/maml_speed.py measures it. On a CPU
    # the per-task loop beats vmap (about 2x for conv4 5-way: vmap's big activations miss the
    # cache; ANIL's batched backbone too); on a GPU vmap beats the loop several times over.
    # "compiled" (the loop with each task compiled whole) is faster still on a CPU, most at
    # 20-way with several inner steps, but costs a compile warm-up of a minute or more per
    # model and shape, so "auto" does not choose it. On a GPU the loop recorded as a CUDA graph
    # (cuda_graph) beats vmap in a small fraction of its memory; it stays an opt-in because a
    # graph fixes the shapes and must be recorded per shape.
    MEASURED: ClassVar[dict[str, str]] = {"cpu": "loop", "cuda": "vmap"}
    # For feature-vector tasks (the sinusoid MLP) vmap wins by far on every device: a task's
    # ops are too small for the loop to pay its per-task overhead.
    MEASURED_VECTORS: ClassVar[dict[str, str]] = {"cpu": "vmap", "cuda": "vmap"}

    def __init__(self, model: nn.Module, config: MAMLConfig) -> None:
        if self.requires is not None and not getattr(config, self.requires):
            raise ConfigError(
                f"Strategy {name_of(self)!r} is defined by strategy_config.{self.requires}=true; "
                "use strategy 'maml' for other combinations."
            )
        super().__init__(model, config)
        model = self.model
        names = [k for k, _ in model.named_parameters()]
        self._adapted = names
        self._compiled: Callable[..., tuple[Tensor, ...]] | None = None
        self._graphed: speed.CapturedFunction | None = None
        self._inner = fx.functional(model)  # the function the inner loop adapts
        self._inner_norm = has_batch_norm(model)  # whether the norm mode reaches the inner fn
        if config.head_only:
            features, head = getattr(model, "features", None), getattr(model, "head", None)
            if not isinstance(features, nn.Module) or not isinstance(head, nn.Module):
                raise ConfigError("head_only (ANIL) needs a model with .features and .head.")
            self._adapted = [k for k in names if k.startswith("head.")]
            self._inner = fx.functional(head)
            self._inner_norm = has_batch_norm(head)
            self._features = fx.functional(features)
            self._stacks = takes_tasks(features)  # else vmapped over tasks

    @classmethod
    def runnable(cls, model: nn.Module, config: MAMLConfig) -> nn.Module:
        """The model whole; ANIL's as ``features`` and a ``head`` (a module of yours: its final
        linear layer, :func:`~metalearner.nn.user.as_network`)."""
        if config.head_only and not with_features(model):
            return as_network(model)
        return as_model(model)

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The model's parameters and, for Meta-SGD, one learning rate per adapted entry."""
        g = generator if isinstance(generator, torch.Generator) else _seeded(generator)
        params = init_params(self.model, generator=g)
        if self.config.learn_inner_lr:
            for k in self._adapted:
                lr = torch.full_like(params[k], self.config.inner_lr)
                if self.config.inner_lr_init is not None:
                    low, high = self.config.inner_lr_init
                    u = torch.rand(lr.shape, generator=g, dtype=lr.dtype)
                    lr = low + (high - low) * u
                params[LR_PREFIX + k] = lr
        return params

    @classmethod
    def check_device(cls, config: MAMLConfig, device: str) -> None:
        """A CUDA graph (``cuda_graph``) needs device ``cuda``."""
        if config.cuda_graph and device != "cuda":
            raise ConfigError(
                f"strategy_config.cuda_graph records CUDA graphs, but device is {device!r}; set "
                "device=cuda or strategy_config.cuda_graph=false."
            )

    @classmethod
    def check_norm(cls, config: MAMLConfig, norm: NormMode) -> None:
        """The compiled per-task loop (``batching: compiled``) is transductive only: compiled
        code cannot read which items' statistics BatchNorm takes (ANIL's head has none)."""
        if norm == "inductive" and config.batching == "compiled" and not config.head_only:
            raise ConfigError(
                "strategy_config.batching=compiled normalises transductively only; with "
                "model.norm=inductive set strategy_config.batching to loop, vmap or auto."
            )

    @classmethod
    def search_space(cls, config: MAMLConfig, context: SpaceContext) -> list[SearchParam]:
        """The inner step size and steps, the outer step size and the meta-batch."""
        return [
            log_range("inner_lr", "strategy_config.inner_lr", config.inner_lr, 0.1, 3),
            int_range("inner_steps", "strategy_config.inner_steps", 1, 5),
            *super().search_space(config, context),
            meta_batch_choices(context.meta_batch),
        ]

    @property
    def host_batches(self) -> bool:
        """Whether :meth:`meta_grads` takes its batch on the host (the training loop's cue).

        A recorded CUDA graph (``cuda_graph``) copies the batch from the host straight into
        its inputs; moving it to the GPU first would hold it there twice.
        """
        return self.config.cuda_graph

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Meta-gradient of the mean query loss after inner-loop adaptation, and metrics.

        The batch is on the parameters' device, or, with ``cuda_graph``, on either.
        """
        self.check_norm(self.config, self.norm)
        step: Callable[..., tuple[Params, dict[str, Tensor]]] = self._meta_grads
        if self.config.cuda_graph:  # the batch may stay on the host (host_batches)
            if next(iter(params.values())).device.type != "cuda":
                raise ConfigError(
                    "The cuda_graph setting records CUDA graphs and needs device 'cuda'; set "
                    "strategy_config.cuda_graph=false to run on another device."
                )
            if self._graphed is None:
                # The parameters are read in place (a run steps them in place); the batch
                # is copied in, from the host where it is given there.
                self._graphed = speed.CapturedFunction(self._meta_grads, in_place=(0,))
            step = self._graphed
        tensors = batch.support_x, batch.support_y, batch.query_x, batch.query_y
        grads, metrics = step(params, *tensors)
        return grads, fx.floats(metrics)

    def _meta_grads(
        self, params: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
    ) -> tuple[Params, dict[str, Tensor]]:
        """:meth:`meta_grads` with the metrics left as tensors.

        Nothing here waits for the device, so the call can be recorded as a CUDA graph
        (``cuda_graph``); tests/test_speed.py checks that on the "meta" device.
        """
        c, batch = self.config, TaskBatch(sx, sy, qx, qy)
        setting = "loop" if c.batching == "compiled" else c.batching
        measured = self.MEASURED if sx.dim() > 3 else self.MEASURED_VECTORS
        vectorize = resolve_batching(setting, device=sx.device, measured=measured)
        # A CUDA graph must not keep autocast's cached casts of one replay's weights.
        with speed.precision_context(c.precision, sx.device, cache=not c.cuda_graph):
            if vectorize:
                return fx.meta_gradient_tensors(self._objective(batch, vectorize=True), params)
            # One task's graph at a time: peak memory stays that of a single task.
            objectives = [self._objective(b, vectorize=False) for b in _tasks(batch)]
            return fx.summed_meta_gradient(objectives, params)

    def _objective(
        self, batch: TaskBatch, *, vectorize: bool
    ) -> Callable[[Params], tuple[Tensor, dict[str, Tensor]]]:
        """The mean query loss of ``batch``'s tasks (and their accuracy) as a function of θ."""
        c = self.config
        task = self._compiled_task if c.batching == "compiled" else self._task

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            inner = self._inner_params(p)
            embed = self._embedder(p, tasks=True, vectorize=vectorize)
            sx, qx = batch.support_x, batch.query_x
            inputs = [embed(sx), batch.support_y, embed(qx, self.norm_reference(sx)), batch.query_y]
            out = fx.map_tasks(task, inner, inputs, vectorize=vectorize, chunk_size=c.chunk_size)
            # Classification tasks also give their accuracy (see _score).
            metrics = {"accuracy": out[1].mean()} if len(out) > 1 else {}
            return out[0].mean(), metrics

        return objective

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` adaptation steps, from one pass.

        In transductive mode a predictor normalises with the statistics of the batch it is
        given, so pass a task's whole query set at once; in inductive mode with the support
        set's under the step's weights, so any subset gives the same predictions.
        """
        detached = {k: v.detach() for k, v in params.items()}
        net, lr = self._split(self._inner_params(detached))
        embed = self._embedder(detached, tasks=False, vectorize=False)
        reference = self.norm_reference(support_x)
        with per_task_kernels():  # safe: nothing here is vmapped
            # No meta-gradient is needed: the first-order update gives the same φ, cheaper.
            sx = embed(support_x)
            path = fx.adapt_path(self._inner, net, sx, support_y, steps=steps, lr=lr)
        if self.config.head_only:  # ANIL: the backbone's BatchNorm, the support's raw images
            return fx.path_predictors(self._inner, path, support_y, lambda x: embed(x, reference))
        inner_reference = reference if self._inner_norm else None
        return fx.path_predictors(self._inner, path, support_y, reference=inner_reference)

    def _task(
        self, p: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
    ) -> tuple[Tensor, ...]:
        """One task's query loss (and accuracy) after inner-loop adaptation."""
        return self._query(self._adapt_task(p, sx, sy), sx, qx, qy)

    def _compiled_task(
        self, p: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
    ) -> tuple[Tensor, ...]:
        """:meth:`_task` compiled whole: inner steps and query pass in one graph (see speed)."""
        if self._compiled is None:
            self._compiled = speed.compile_task(self._task)
        out: tuple[Tensor, ...] = self._compiled(p, sx, sy, qx, qy)
        return out

    def _adapt_task(self, p: Params, sx: Tensor, sy: Tensor) -> Params:
        c = self.config
        net, lr = self._split(p)
        steps, first_order = c.inner_steps, c.first_order
        return fx.adapt(self._inner, net, sx, sy, steps=steps, lr=lr, first_order=first_order)

    def _query(self, fast: Params, sx: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, ...]:
        """The query loss (and accuracy) under ``fast``; inductive: with the support set's
        BatchNorm statistics under ``fast`` too (a fresh support pass at the adapted weights)."""
        reference = self.norm_reference(sx) if self._inner_norm else None

        def forward(x: Tensor) -> Tensor:
            return self._inner(fast, x)

        return _score(normalise_with(forward, reference, qx), qy)

    def _inner_params(self, p: Params) -> Params:
        """The parameters the inner loop sees: all of them, or (ANIL) the head's, renamed."""
        if self.config.learn_inner_lr:
            missing = [k for k in self._adapted if LR_PREFIX + k not in p]
            if missing:
                raise ConfigError(f"Meta-SGD needs {LR_PREFIX}{missing[0]}; use init_params.")
        if not self.config.head_only:
            return p
        head = fx.subset(p, "head.")
        return {**head, **{LR_PREFIX + k: v for k, v in fx.subset(p, LR_PREFIX + "head.").items()}}

    def _embedder(self, p: Params, *, tasks: bool, vectorize: bool) -> Embedder:
        """Inputs of the inner function: unchanged, or (ANIL) the backbone's features.

        ANIL's backbone is not adapted, so it runs once per task rather than once per inner
        step; vectorised, once over every task's images with per-task BatchNorm statistics.
        ``tasks`` says whether inputs carry a leading task dimension. The embedder's second
        argument is the reference set whose BatchNorm statistics normalise the inputs
        (inductive mode: the support set), or ``None`` for their own.
        """
        if not self.config.head_only:
            return lambda x, reference=None: x
        feats = fx.subset(p, "features.")

        # Vectorised, a user's module still sees one task at a time: vmapped over the tasks.
        backbone = vmap(self._features, (None, 0)) if vectorize and not self._stacks else None

        def features(x: Tensor) -> Tensor:
            return (backbone or self._features)(feats, x)

        if vectorize or not tasks:
            dim = 1 if tasks else 0
            return lambda x, reference=None: normalise_with(features, reference, x, dim=dim)

        def per_task(x: Tensor, reference: Tensor | None = None) -> Tensor:
            references = [None] * len(x) if reference is None else list(reference)
            with per_task_kernels():  # safe: a plain loop
                return torch.stack(
                    [normalise_with(features, r, xt) for r, xt in zip(references, x, strict=True)]
                )

        return per_task

    def _split(self, p: Params) -> tuple[Params, fx.LearningRate]:
        """Network parameters and the inner learning rate (Meta-SGD's dict, or a float)."""
        net = {k: v for k, v in p.items() if not k.startswith(LR_PREFIX)}
        return net, fx.subset(p, LR_PREFIX) if self.config.learn_inner_lr else self.config.inner_lr


def _score(out: Tensor, target: Tensor) -> tuple[Tensor, ...]:
    loss = fx.task_loss(out, target)
    if target.dtype.is_floating_point:
        return (loss,)
    return loss, fx.accuracy(out, target)


def _tasks(batch: TaskBatch) -> list[TaskBatch]:
    sx, sy, qx, qy = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    return [
        TaskBatch(sx[t : t + 1], sy[t : t + 1], qx[t : t + 1], qy[t : t + 1])
        for t in range(batch.num_tasks)
    ]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
