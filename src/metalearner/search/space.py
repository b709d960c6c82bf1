"""The conditional search space: the strategy first, then that strategy's own hyperparameters.

Each strategy class declares its space (``Strategy.search_space``), ranges centred on its
paper setting for the dataset (its preset, or its defaults). A user narrows a range
(``[low, high]``), restricts a choice (a list of more than two values, or of strings), or fixes
a value (a scalar) per strategy:

    space:
      maml: {inner_lr: [0.1, 0.6], inner_steps: 1}
      protonet: {train_ways: [20, 60]}

Parameters are named ``<strategy>.<name>`` in the study, so every strategy's distribution is its
own (Optuna's define-by-run space: a trial only has the parameters of the strategy it chose).

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019
    (define-by-run conditional spaces).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from metalearner.data.config import training_classes
from metalearner.data.registry import dataset
from metalearner.errors import ConfigError
from metalearner.runs.config import RunConfig
from metalearner.strategies import SearchParam, SpaceContext, get_strategy, resolve_config


@dataclass(frozen=True)
class Param(SearchParam):
    """One hyperparameter a strategy declares (:class:`SearchParam`), drawn by Optuna."""

    def suggest(self, trial: optuna.Trial, prefix: str) -> Any:
        """Draws this parameter for ``trial``."""
        label = f"{prefix}.{self.name}"
        if self.kind == "choice":
            return trial.suggest_categorical(label, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(label, int(self.low), int(self.high))
        return trial.suggest_float(label, self.low, self.high, log=self.kind == "log")


def default_space(strategy: str, cfg: RunConfig) -> list[Param]:
    """The search space ``strategy``'s class declares around its settings in ``cfg``."""
    context = SpaceContext(
        lr=cfg.optimizer.lr or 1e-3,
        meta_batch=int(cfg.meta_batch or 1),
        ways=None if dataset(cfg.data.dataset).regression else cfg.data.ways,
        training_classes=training_classes(cfg.data),
    )
    config = resolve_config(strategy, cfg.strategy_config)
    declared = get_strategy(strategy).search_space(config, context)
    return [Param(p.name, p.key, p.kind, p.low, p.high, p.choices) for p in declared]


def narrow(space: list[Param], given: Mapping[str, Any], strategy: str) -> list[Param | Fixed]:
    """``space`` with a user's ranges, choices and fixed values (see the module doc).

    Raises:
        ConfigError: a name not in the space, or a value of the wrong shape.
    """
    by_name = {p.name: p for p in space}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ConfigError(
            f"space.{strategy}.{unknown[0]} is not a searched setting of {strategy}; use one of "
            f"{', '.join(by_name)}."
        )
    out: list[Param | Fixed] = []
    for p in space:
        if p.name not in given:
            out.append(p)
            continue
        value = given[p.name]
        if not isinstance(value, list):
            out.append(Fixed(p.name, p.key, value))
        elif len(value) == 2 and p.kind != "choice" and all(_number(v) for v in value):
            out.append(_range(p, value, strategy))
        elif value:
            out.append(Param(p.name, p.key, "choice", choices=tuple(value)))
        else:
            raise ConfigError(f"space.{strategy}.{p.name} is an empty list; give values.")
    return out


def _range(p: Param, value: list[Any], strategy: str) -> Param:
    """``p`` over a user's ``[low, high]``, refused unless it is a range ``p`` can draw from."""
    where = f"space.{strategy}.{p.name}"
    low, high = (float(v) for v in value)
    if low > high:
        raise ConfigError(
            f"{where} is {value}, a range from high to low; write it [low, high], as "
            f"[{value[1]}, {value[0]}]."
        )
    if p.kind == "log" and low <= 0:
        raise ConfigError(
            f"{where} is searched on a log scale, so its range needs bounds above 0, not {value}."
        )
    if p.kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where} counts, so its range takes whole numbers, not {value}.")
    return Param(p.name, p.key, p.kind, low, high)


def candidates(p: Param | Fixed) -> list[Any]:
    """The values ``p`` can take that together check its whole range: its ends, each choice,
    or its fixed value."""
    if isinstance(p, Fixed):
        return [p.value]
    if p.kind == "choice":
        return list(p.choices)
    if p.kind == "int":
        return [int(p.low), int(p.high)]
    return [p.low, p.high]


def check_space(
    space: list[Param | Fixed], strategy: str, build: Callable[[dict[str, Any]], object]
) -> None:
    """Builds a run config (``build``: run config key → value) with every value of
    :func:`candidates` of every parameter, so a value no run can take fails before any trial.

    Raises:
        ConfigError: naming the parameter and, in the config's words, what is wrong.
    """
    for p in space:
        for value in candidates(p):
            try:
                build({p.key: value})
            except ConfigError as err:
                raise ConfigError(f"space.{strategy}.{p.name} = {value!r}: {err}") from None


@dataclass(frozen=True)
class Fixed:
    """A hyperparameter a user fixed: not searched, always ``value``."""

    name: str
    key: str
    value: Any

    def suggest(self, trial: optuna.Trial, prefix: str) -> Any:
        """The fixed value (recorded on the trial as a user attribute, not a parameter)."""
        trial.set_user_attr(f"{prefix}.{self.name}", self.value)
        return self.value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
