"""The strategy base class: what every learning strategy is, does and declares about itself.

A strategy is what is learned across tasks and how a new task is adapted to. Every strategy is
a set of pure functions of an explicit parameter dict (DESIGN.md rule 1) bound to a model that
is only ever used through ``torch.func.functional_call``; only the training loop changes
parameters, from the meta-gradients a strategy returns (rule 2).

:class:`Strategy` names every method and capability that the training loop, run configs,
evaluation, search and benchmarks use: three abstract methods, and hooks and class attributes
with defaults that a strategy overrides where it differs. Nothing outside the strategy asks its
name or probes it for attributes (rule 10): adding a strategy is one subclass and
:func:`~metalearner.strategies.registry.register`.

A strategy takes any ``nn.Module`` (:meth:`Strategy.runnable`): its current weights are the
starting point. A loop of your own steps a ``torch.optim`` optimiser with :meth:`Strategy.step`.

Example:
    >>> net = build_model("conv4", (1, 28, 28), 5, generator=0)
    >>> maml = build("maml", net, {"inner_steps": 1})
    >>> params = maml.init_params(torch.Generator().manual_seed(0))
    >>> grads, metrics = maml.meta_grads(params, batch)
    >>> predict = maml.adapt(params, support_x, support_y)
    >>> logits = predict(query_x)
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from metalearner.errors import DataError
from metalearner.nn.layers import NormMode, has_batch_norm
from metalearner.nn.user import as_model
from metalearner.strategies.space import SearchParam, SpaceContext, log_range
from metalearner.tasks.batch import TaskBatch

Params = dict[str, Tensor]
Predictor = Callable[[Tensor], Tensor]
"""Maps one task's inputs ``[Q, ...]`` to logits ``[Q, N]`` or regression predictions ``[Q]``."""
TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class OuterLoop:
    """How a strategy is meta-trained unless a run says otherwise (its ``auto`` settings).

    Attributes:
        optimizer: the outer optimiser, ``"adam"`` or ``"sgd"``.
        schedule: the step-size schedule: ``"constant"``, ``"linear"`` (to 0), ``"cosine"`` or
            ``"step"`` (halved at intervals).
        lr: the outer step size.
        meta_batch: tasks per outer step.
        halve_every_tasks: with ``"step"``, the interval between halvings counted in tasks
            (the run turns it into outer steps); ``None``: a quarter of the run.
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    schedule: Literal["constant", "cosine", "linear", "step"] = "constant"
    lr: float = 1e-3
    meta_batch: int = 1
    halve_every_tasks: int | None = None


CHOICE_STEPS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500)
"""Adaptation steps a run tries on its validation tasks (up to a cap, see
:meth:`Strategy.adaptation_grid`): a score curve's points, roughly geometric beyond 3."""


@dataclass(frozen=True)
class AdaptationGrid:
    """The settings of adaptation that a run chooses on its validation tasks, and their values.

    Attributes:
        steps: numbers of adaptation steps to try (the configured ``eval_steps`` among them).
        settings: other settings of the strategy's config to try, each with its values (the
            configured one among them), every combination with every number of steps.
    """

    steps: tuple[int, ...]
    settings: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


class Strategy(abc.ABC):
    """A learning strategy: meta-gradients for the outer loop, and adaptation to a new task.

    Subclasses implement :meth:`init_params`, :meth:`meta_grads` and :meth:`adapt`, set
    ``default_config`` and override the class attributes and hooks below where they differ.
    Their constructor takes ``(model, config)``, ``config`` of ``default_config``'s type.

    Attributes:
        default_config: the settings a run starts from, a frozen dataclass instance (required).
        task_kinds: the tasks it learns; on others :meth:`meta_grads` raises ``ConfigError``.
        meta_learns: whether :meth:`meta_grads` can lower the query loss. A strategy that learns
            nothing across tasks (train from scratch) is not trained: its initialisation is
            the model that benchmarks and searches score.
        ordered: whether :meth:`meta_grads` reads a random order of each task's examples in
            ``batch.info["order"]`` (Reptile's minibatches); the training loop then draws one
            every meta-step (``TaskBatch.with_order``) so that a meta-step stays a function of
            its arguments.
        trains_as: the strategy whose training this one shares (same config but the name):
            a benchmark trains that run once and adapts it both ways.
        labeled_batches: whether :meth:`meta_grads` trains on plain labelled mini-batches
            instead of episodes (supervised pretraining, the transfer baselines): the training
            loop then gives it, each outer step, the next shuffled mini-batch of ``meta_batch``
            training examples with their augmentation
            (:class:`~metalearner.tasks.minibatches.LabeledBatches`: every example once per
            epoch), as ``meta_batch`` one-example tasks whose ``classes`` are the global ones.
        follows: settings that take another setting's value when a run does not give them
            (``{"eval_steps": "inner_steps"}``).
        anchor_settings: settings taken from a benchmark's anchor preset (MAML's, for the
            dataset and task shape) when this strategy has no preset of its own.
        outer_optimizer, outer_schedule: the outer loop's defaults (see :meth:`outer_loop`).
        run_settings: the config's settings that :meth:`outer_loop` reads, each to the run
            setting it gives a default (``{"meta_lr": "optimizer.lr"}``): a resolved run states
            that run setting, which is what applies, so the strategy's is a second spelling.
        diverging_setting: the run setting to lower when adaptation diverges (for messages).
        applies_precision: whether the config has a ``precision`` setting that the strategy
            applies itself where bfloat16 pays (the run's ``precision`` is copied into it);
            otherwise the training loop autocasts the whole meta-step.
        config: the strategy's settings, of ``default_config``'s type.
        model: the network, used only as a pure function of a parameter dict: the model given,
            as :meth:`runnable` makes it.
        norm: how BatchNorm normalises a task's queries, set after construction (a run's
            ``model.norm``, see :func:`~metalearner.strategies.registry.build`):
            ``"transductive"`` with the statistics of the items predicted together, or
            ``"inductive"`` with the support set's (:meth:`norm_reference`), in meta-training
            wherever a query is scored, in adaptation and in prediction alike.
    """

    default_config: ClassVar[Any]
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("classification", "regression")
    meta_learns: ClassVar[bool] = True
    ordered: ClassVar[bool] = False
    trains_as: ClassVar[str | None] = None
    labeled_batches: ClassVar[bool] = False
    follows: ClassVar[Mapping[str, str]] = {}
    anchor_settings: ClassVar[tuple[str, ...]] = ()
    outer_optimizer: ClassVar[Literal["adam", "sgd"]] = "adam"
    outer_schedule: ClassVar[Literal["constant", "cosine", "linear", "step"]] = "constant"
    run_settings: ClassVar[Mapping[str, str]] = {
        "meta_lr": "optimizer.lr",
        "meta_batch_size": "meta_batch",
    }
    diverging_setting: ClassVar[str] = "strategy_config.inner_lr"
    applies_precision: ClassVar[bool] = False
    norm: NormMode = "transductive"

    def __init__(self, model: nn.Module, config: Any) -> None:
        self.model, self.config = self.runnable(model, config), config

    @classmethod
    def runnable(cls, model: nn.Module, config: Any) -> nn.Module:
        """``model`` as this strategy runs it: a :class:`~metalearner.nn.Network` as it is; any
        other module whole, with its own parameter names, as a copy that shares its tensors and
        starts from its weights (:func:`~metalearner.nn.user.as_model`). Strategies that need
        an embedding or a head override it (:mod:`metalearner.nn.user`)."""
        return as_model(model)

    def norm_reference(self, support_x: Tensor) -> Tensor | None:
        """The items whose BatchNorm statistics normalise a task's queries: the support set in
        inductive mode, ``None`` (the queries' own) in transductive mode; for
        :func:`metalearner.nn.layers.normalise_with`."""
        return support_x if self.norm == "inductive" else None

    @property
    def effective_norm(self) -> NormMode | None:
        """:attr:`norm`, or ``None`` where the model has no BatchNorm and both modes are one."""
        return self.norm if has_batch_norm(self.model) else None

    # ------------------------------------------------------------ what every strategy does

    @abc.abstractmethod
    def init_params(self, generator: torch.Generator | int) -> Params:
        """All meta-parameters, freshly initialised from ``generator`` (model and extras)."""

    def completed(self, params: Params) -> Params:
        """A checkpoint's parameters with the tensors that a later version of the strategy
        added, at values that change nothing this strategy computes (so that a run written
        before still evaluates and adapts); the default adds none."""
        return params

    @abc.abstractmethod
    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Meta-gradients for every entry of ``params`` (same keys and shapes) and metrics.

        The metrics include ``"loss"``; a descent step ``θ − lr·g`` improves the strategy's
        meta-objective. Nothing is mutated. The batch is on the parameters' device, or on the
        host where :attr:`host_batches` is true.
        """

    @abc.abstractmethod
    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        """Adapts to one task from its support set ``[S, ...]``; ``steps`` overrides
        :attr:`eval_steps` where the strategy takes adaptation steps."""

    def step(
        self, optimizer: torch.optim.Optimizer, params: Params, batch: TaskBatch
    ) -> dict[str, float]:
        """One outer step of a loop of your own: :meth:`meta_grads` into each parameter's
        ``.grad``, then ``optimizer.step()``, which changes ``params`` in place.

        ``params`` are the tensors ``optimizer`` steps (:meth:`init_params`'s dict, given to it
        as ``params.values()``). Returns the metrics (``"loss"`` among them).

        Example:
            >>> params = maml.init_params(0)  # a module's own weights
            >>> optimizer = torch.optim.Adam(params.values(), lr=1e-3)
            >>> for batch in batches:
            ...     metrics = maml.step(optimizer, params, batch)
        """
        grads, metrics = self.meta_grads(params, batch)
        for name, tensor in params.items():
            tensor.grad = grads[name]
        optimizer.step()
        return metrics

    # ------------------------------------------------------------ hooks with default bodies

    @property
    def host_batches(self) -> bool:
        """Whether :meth:`meta_grads` takes its batch on the host whatever the parameters'
        device, and moves it itself (a recorded CUDA graph copies it straight in)."""
        return False

    @property
    def eval_steps(self) -> int | None:
        """Adaptation steps a new task gets by default: the config's ``eval_steps``; ``None``
        for a strategy that adapts without steps (ProtoNets' prototypes)."""
        steps = getattr(self.config, "eval_steps", None)
        return int(steps) if steps is not None else None

    def adaptation_grid(self) -> AdaptationGrid | None:
        """What a run chooses of its adaptation on validation tasks when it ends; ``None``:
        nothing (a strategy that adapts without steps).

        The default tries :data:`CHOICE_STEPS` up to twice :attr:`eval_steps` (at least 20),
        and :attr:`eval_steps` itself: a model trained for another budget than its paper's
        may want more steps or fewer than the paper's protocol.
        """
        configured = self.eval_steps
        if configured is None:
            return None
        cap = max(20, 2 * configured)
        return AdaptationGrid(tuple(sorted({s for s in CHOICE_STEPS if s <= cap} | {configured})))

    def with_settings(self, settings: Mapping[str, Any]) -> Strategy:
        """This strategy with some settings of its config changed (``eval_steps``, say): the
        same model and BatchNorm mode. Used to adapt as chosen on validation tasks.

        Raises:
            ConfigError: a value out of its range; TypeError: a name its config lacks.
        """
        changed = {
            k: v for k, v in settings.items()
            if not hasattr(self.config, k) or getattr(self.config, k) != v
        }  # fmt: skip
        if not changed:
            return self
        other = type(self)(self.model, dataclasses.replace(self.config, **changed))
        other.norm = self.norm
        return other

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` adaptation steps.

        The default adapts afresh for each count; :class:`StepwiseStrategy` gives them all
        from one pass.
        """
        return [self.adapt(params, support_x, support_y, steps=s) for s in range(steps + 1)]

    def adapt_curve(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: Sequence[int]
    ) -> list[Predictor]:
        """The predictors after each number of adaptation steps in ``steps`` (a score curve)."""
        return [self.adapt(params, support_x, support_y, steps=s) for s in steps]

    def predict_tasks(
        self, params: Params, batch: TaskBatch, *, steps: Sequence[int] | None = None
    ) -> Tensor:
        """Each task of ``batch`` adapted to its support set, its query set predicted.

        How evaluation scores tasks. The default adapts to one task at a time (:meth:`adapt`,
        :meth:`adapt_curve`): the reference that an override, faster over a batch of tasks,
        must match to float tolerance (tests/test_batched_scoring.py).

        Args:
            params: the meta-parameters.
            batch: ``T`` tasks.
            steps: predict after each of these numbers of adaptation steps; ``None``: once,
                after the default adaptation (as :meth:`adapt` without ``steps``).

        Returns:
            ``[P, T, Q, N]`` logits or ``[P, T, Q]`` regression outputs (P = ``len(steps)``,
            or 1), computed without a graph; each task's query set is predicted in one call
            (in transductive mode, BatchNorm normalises it with its own statistics).
        """
        out = []
        for t in range(batch.num_tasks):
            sx, sy, qx = batch.support_x[t], batch.support_y[t], batch.query_x[t]
            if steps is None:
                predictors = [self.adapt(params, sx, sy)]
            else:
                predictors = self.adapt_curve(params, sx, sy, steps=steps)
            with torch.no_grad():
                out.append(torch.stack([predict(qx) for predict in predictors]))
        return torch.stack(out, dim=1)

    def statistics(self, params: Params, examples: Iterable[Tensor]) -> Params:
        """Entries of ``params`` computed from the training examples rather than learned.

        The training loop calls it before each validation (every checkpoint follows one), with
        the parameters as they are and the training examples in chunks, without augmentation,
        on the parameters' device (:meth:`~metalearner.tasks.minibatches.LabeledBatches.examples`:
        a prefix is a uniform sample), and writes what it returns into the parameters, so the
        scores and checkpoints that follow use it; such entries get zero meta-gradients. The
        default computes nothing and reads no example. SimpleShot's mean feature is one.
        """
        return {}

    @classmethod
    def outer_loop(cls, config: Any) -> OuterLoop:
        """The outer loop's defaults: ``outer_optimizer`` and ``outer_schedule``, and the
        config's ``meta_lr`` and ``meta_batch_size`` where it has them."""
        return OuterLoop(
            optimizer=cls.outer_optimizer,
            schedule=cls.outer_schedule,
            lr=float(getattr(config, "meta_lr", 1e-3)),
            meta_batch=int(getattr(config, "meta_batch_size", 1)),
        )

    @classmethod
    def check_device(cls, config: Any, device: str) -> None:
        """Raises ConfigError where ``config`` cannot run on ``device`` (default: every one)."""
        return None

    @classmethod
    def check_norm(cls, config: Any, norm: NormMode) -> None:
        """Raises ConfigError where ``config`` cannot meta-train in BatchNorm mode ``norm``
        (default: every mode)."""
        return None

    @classmethod
    def training_ways(cls, config: Any) -> int | None:
        """Ways of the training episodes where they differ from the test tasks' (``None``)."""
        return None

    @classmethod
    def fit_to_classes(cls, config: Any, *, classes: int, ways: int, given: Collection[str]) -> Any:
        """``config`` fitted to training data of ``classes`` classes and ``ways``-way tasks.

        Called where the run's settings fix the class count; settings named in ``given`` were
        set by the user and stay as they are. The default changes nothing.
        """
        return config

    @classmethod
    def with_class_ids(cls, config: Any, num_classes: int) -> Any:
        """``config`` told the number of class ids of the training data, when a run is built
        (a head over all of them, say). The default changes nothing."""
        return config

    @classmethod
    def search_space(cls, config: Any, context: SpaceContext) -> list[SearchParam]:
        """The hyperparameters a search draws, around ``config`` (its preset or defaults).

        The default searches the outer step size, log-uniform from a tenth to ten times it.
        """
        return [log_range("meta_lr", "optimizer.lr", context.lr, 0.1, 10)]


class StepwiseStrategy(Strategy):
    """A strategy whose adaptation passes through every step count on its way (gradient steps).

    Subclasses implement :meth:`adapt_steps`; :meth:`adapt` is its last predictor, and a score
    curve over step counts takes one pass per task. A step count's predictor must be the one
    that adapting with that many steps gives (nothing in a step may depend on how many follow):
    evaluation takes a curve's last point as the default adaptation's score.
    """

    @abc.abstractmethod
    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` adaptation steps, from one pass."""

    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        """The predictor after ``steps`` adaptation steps (:attr:`eval_steps` unless given)."""
        n = steps if steps is not None else self.eval_steps or 0
        return self.adapt_steps(params, support_x, support_y, steps=n)[-1]

    def adapt_curve(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: Sequence[int]
    ) -> list[Predictor]:
        """The predictors after each count of ``steps``, from one pass of the most steps."""
        path = self.adapt_steps(params, support_x, support_y, steps=max(steps))
        return [path[s] for s in steps]


def support_ways(support_y: Tensor) -> int:
    """The number of classes of a support set labelled ``0..N-1``, each with an example.

    Raises:
        DataError: a class below the largest label has no example.
    """
    ways = int(support_y.max()) + 1
    counts = torch.bincount(support_y, minlength=ways)
    if bool((counts == 0).any()):
        missing = int((counts == 0).nonzero()[0])
        raise DataError(
            f"The support set has no example of class {missing}; give every class at least one "
            "example."
        )
    return ways


def resolve_batching(setting: str, *, device: torch.device, measured: Mapping[str, str]) -> bool:
    """Whether to vectorise over tasks: ``"vmap"``, ``"loop"``, or ``"auto"`` from ``measured``.

    ``measured`` maps a device type (``"cpu"``, ``"cuda"``) to the path measured fastest there;
    unknown device types vectorise.
    """
    if setting == "auto":
        setting = measured.get(device.type, "vmap")
    return setting == "vmap"
