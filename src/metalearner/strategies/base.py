"""The Strategy protocol, the registry of strategies by name, and shared config checks.

A strategy is what is learned across tasks and how a new task is adapted to. Every strategy is
a set of pure functions of an explicit parameter dict (DESIGN.md rule 1) bound to a model that
is only ever used through ``torch.func.functional_call``; only the training loop changes
parameters, from the meta-gradients a strategy returns (rule 2).

Example:
    >>> net = build_model("conv4", (1, 28, 28), 5, generator=0)
    >>> maml = build("maml", net, {"inner_steps": 1})
    >>> params = maml.init_params(torch.Generator().manual_seed(0))
    >>> grads, metrics = maml.meta_grads(params, batch)
    >>> predict = maml.adapt(params, support_x, support_y)
    >>> logits = predict(query_x)
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from metalearner.config.types import describe_type, match_type
from metalearner.errors import ConfigError, DataError
from metalearner.tasks.batch import TaskBatch

Params = dict[str, Tensor]
Predictor = Callable[[Tensor], Tensor]
"""Maps one task's inputs ``[Q, ...]`` to logits ``[Q, N]`` or regression predictions ``[Q]``."""


@runtime_checkable
class Strategy(Protocol):
    """What the training loop, evaluation and prediction need from a learning strategy."""

    config: Any

    def init_params(self, generator: torch.Generator | int) -> Params:
        """All meta-parameters, freshly initialised from ``generator`` (model and extras)."""
        ...

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Meta-gradients for every entry of ``params`` (same keys and shapes) and metrics.

        The metrics include ``"loss"``; a descent step ``θ − lr·g`` improves the strategy's
        meta-objective. Nothing is mutated. A strategy that trains on minibatches of a task's
        examples sets the class attribute ``ordered = True``; the training loop then gives it
        a fresh random order of them in ``batch.info["order"]`` (``TaskBatch.with_order``).
        One whose ``host_batches`` attribute is true is given the batch on the CPU, whatever
        the parameters' device, and moves it itself.
        """
        ...

    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        """Adapts to one task from its support set ``[S, ...]``; ``steps`` overrides the
        config's number of adaptation steps where the strategy has any."""
        ...


class StrategyFactory(Protocol):
    """A registered strategy class: built from a model and a config of its own type."""

    default_config: ClassVar[Any]

    def __call__(self, model: nn.Module, config: Any) -> Strategy: ...


_REGISTRY: dict[str, StrategyFactory] = {}
F = TypeVar("F")


def register(name: str) -> Callable[[F], F]:
    """Class decorator that makes a strategy available under ``name``.

    The class needs a ``default_config`` class attribute (a frozen dataclass instance) and a
    constructor ``cls(model, config)``. Registering is all a new strategy needs to be run by
    the training loop and checked by tests/test_strategies.py's contract tests.
    """

    def decorate(cls: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"A strategy named {name!r} is already registered")
        if not dataclasses.is_dataclass(getattr(cls, "default_config", None)):
            raise TypeError(f"Strategy {name!r} needs a dataclass default_config")
        _REGISTRY[name] = typing.cast(StrategyFactory, cls)
        return cls

    return decorate


def name_of(strategy: object) -> str:
    """The name a strategy (class or instance) is registered under, for messages."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return next((name for name, c in _REGISTRY.items() if c is cls), cls.__name__)


def available() -> tuple[str, ...]:
    """Names of all registered strategies, sorted."""
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str) -> StrategyFactory:
    """The registered class for ``name``.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown strategy {name!r}; use one of {', '.join(available())}.")
    return _REGISTRY[name]


def resolve_config(name: str, config: object | Mapping[str, Any] | None = None) -> Any:
    """The strategy's config: its default, the given instance, or the default with overrides.

    A strategy class may name settings that follow another's value when not given
    (``follows = {"eval_steps": "inner_steps"}``: Meta-SGD adapts with the steps it learned).

    Raises:
        ConfigError: for an unknown key, a config of another strategy's type or a bad value.
    """
    default = get_strategy(name).default_config
    if config is None:
        return default
    if isinstance(config, Mapping):
        names = {f.name for f in dataclasses.fields(default)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ConfigError(
                f"Strategy {name!r} has no setting {unknown[0]!r}; remove strategy_config."
                f"{unknown[0]} or use one of {', '.join(sorted(names))}."
            )
        follows: Mapping[str, str] = getattr(get_strategy(name), "follows", {})
        tied = {k: config[v] for k, v in follows.items() if k not in config and v in config}
        return dataclasses.replace(default, **tied, **config)
    if type(config) is not type(default):
        raise ConfigError(
            f"Strategy {name!r} takes a {type(default).__name__}, not {type(config).__name__}."
        )
    return config


def build(
    name: str, model: nn.Module, config: object | Mapping[str, Any] | None = None
) -> Strategy:
    """Builds strategy ``name`` around ``model`` (see :func:`resolve_config` for ``config``)."""
    return get_strategy(name)(model, resolve_config(name, config))


class ConfigBase:
    """Mixin for strategy configs: type checks of every field and named presets.

    Subclasses are frozen dataclasses; ``PRESETS`` maps a setting of a paper (e.g.
    ``"sinusoid"``) to the fields that differ from the defaults.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def with_preset(self, name: str) -> Any:
        """This config with the fields of a named paper setting replaced.

        Example:
            >>> get_strategy("metasgd").default_config.with_preset("sinusoid")
        """
        if name not in self.PRESETS:
            known = ", ".join(sorted(self.PRESETS)) or "none"
            raise ConfigError(
                f"{type(self).__name__} has no preset {name!r}; known presets: {known}."
            )
        return dataclasses.replace(self, **self.PRESETS[name])  # type: ignore[type-var]

    def check_types(self) -> None:
        """Raises ConfigError for a field whose value does not match its annotation.

        A value of the right kind in another form (a list for a pair, ``1`` for ``1.0``) is
        stored in the annotated form, so equal settings compare equal however they were written.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            ok, normal = match_type(value, hints[f.name])
            if not ok:
                raise ConfigError(
                    f"strategy_config.{f.name} must be {describe_type(hints[f.name])}, "
                    f"got {value!r}."
                )
            if normal is not value:
                object.__setattr__(self, f.name, normal)  # frozen: only __post_init__ may


def check_range(
    owner: object, name: str, *, low: float, strict: bool = False, high: float = math.inf
) -> None:
    """Raises ConfigError unless ``low <(=) value <= high`` (``None`` values pass).

    ``owner`` is a strategy config: the message names the run setting, ``strategy_config.NAME``.
    """
    value = getattr(owner, name)
    if value is None:
        return
    ok = (value > low if strict else value >= low) and value <= high
    if not ok or not math.isfinite(value):
        bound = f"> {low}" if strict else f">= {low}"
        upper = f" and <= {high}" if math.isfinite(high) else ""
        raise ConfigError(f"strategy_config.{name} must be {bound}{upper}, got {value!r}.")


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
