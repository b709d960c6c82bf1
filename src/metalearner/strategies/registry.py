"""The registry of strategies by name: how a run, a search or a benchmark finds a strategy.

Example:
    >>> @register("my-strategy")
    ... class Mine(Strategy): ...
    >>> build("my-strategy", model, {"inner_lr": 0.1})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from metalearner.errors import ConfigError, did_you_mean
from metalearner.nn.layers import NormMode
from metalearner.strategies.base import Strategy

_REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


def register(name: str) -> Callable[[S], S]:
    """Class decorator that makes a :class:`Strategy` subclass available under ``name``.

    The class needs a ``default_config`` class attribute (a frozen dataclass instance) and a
    constructor ``cls(model, config)``. Registering is all a new strategy needs to be trained,
    evaluated, searched over and benchmarked; ``metalearner.testing`` checks its contract.

    Raises:
        ValueError: ``name`` is taken.
        TypeError: the class is not a :class:`Strategy` or has no dataclass ``default_config``.
    """

    def decorate(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"A strategy named {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"Strategy {name!r} must subclass metalearner.strategies.Strategy")
        if not dataclasses.is_dataclass(getattr(cls, "default_config", None)):
            raise TypeError(f"Strategy {name!r} needs a dataclass default_config")
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Removes a registered strategy (a test's own, so that tests run after it that go through
    every registered strategy do not meet it); an unknown name is ignored."""
    _REGISTRY.pop(name, None)


def name_of(strategy: object) -> str:
    """The name a strategy (class or instance) is registered under, for messages."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return next((name for name, c in _REGISTRY.items() if c is cls), cls.__name__)


def available() -> tuple[str, ...]:
    """Names of all registered strategies, sorted."""
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str) -> type[Strategy]:
    """The registered class for ``name``.

    Raises:
        ConfigError: for an unknown name.
    """
    if name not in _REGISTRY:
        raise ConfigError(
            f"Unknown strategy {name!r}{did_you_mean(name, _REGISTRY)}; use one of "
            f"{', '.join(available())}."
        )
    return _REGISTRY[name]


def resolve_config(name: str, config: object | Mapping[str, Any] | None = None) -> Any:
    """The strategy's config: its default, the given instance, or the default with overrides.

    Settings the class ``follows`` take another setting's value when not given (Meta-SGD
    adapts with the steps it learned).

    Raises:
        ConfigError: for an unknown key, a config of another strategy's type or a bad value.
    """
    cls = get_strategy(name)
    default = cls.default_config
    if config is None:
        return default
    if isinstance(config, Mapping):
        names = {f.name for f in dataclasses.fields(default)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ConfigError(
                f"Strategy {name!r} has no setting {unknown[0]!r}"
                f"{did_you_mean(unknown[0], names)}; remove strategy_config.{unknown[0]} or use "
                f"one of {', '.join(sorted(names))}."
            )
        tied = {k: config[v] for k, v in cls.follows.items() if k not in config and v in config}
        return dataclasses.replace(default, **tied, **config)
    if type(config) is not type(default):
        raise ConfigError(
            f"Strategy {name!r} takes a {type(default).__name__}, not {type(config).__name__}."
        )
    return config


def build(
    name: str,
    model: nn.Module,
    config: object | Mapping[str, Any] | None = None,
    *,
    norm: NormMode = "transductive",
) -> Strategy:
    """Builds strategy ``name`` around ``model`` (see :func:`resolve_config` for ``config``),
    its BatchNorm in mode ``norm`` (:attr:`Strategy.norm`)."""
    strategy = get_strategy(name)(model, resolve_config(name, config))
    strategy.norm = norm
    return strategy
