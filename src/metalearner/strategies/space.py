"""How a strategy declares its search space: the hyperparameters a search draws, and where to.

Each strategy class returns its space from ``Strategy.search_space``; ranges are centred on its
paper setting for the dataset (its preset, or its defaults): step sizes log-uniform from a tenth
to a few times the default, step counts and meta-batch sizes around it. The search engine
(:mod:`metalearner.search.space`) narrows them with a user's ranges and draws them with Optuna.

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019
    (define-by-run conditional spaces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SearchParam:
    """One hyperparameter: where it goes in the run config and how it is drawn.

    Attributes:
        name: its name in the space and the study (after ``<strategy>.``).
        key: the run config key it sets (``strategy_config.inner_lr``, ``optimizer.lr``, …).
        kind: ``"log"`` (log-uniform float), ``"float"``, ``"int"`` or ``"choice"``.
        low, high: the range (``log``/``float``/``int``); choices: the values (``choice``).
    """

    name: str
    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SpaceContext:
    """What a space depends on besides the strategy's own config.

    Attributes:
        lr: the run's outer step size (the strategy's ``meta_lr`` unless the preset sets one).
        meta_batch: the run's tasks per outer step.
        ways: the test tasks' ways; ``None`` for regression tasks.
        training_classes: the most classes a training episode can draw; ``None``: not limited
            by the settings.
    """

    lr: float
    meta_batch: int
    ways: int | None = None
    training_classes: int | None = None


def log_range(name: str, key: str, default: float, below: float, above: float) -> SearchParam:
    """Log-uniform from ``below`` to ``above`` times ``default``."""
    return SearchParam(name, key, "log", float(default) * below, float(default) * above)


def int_range(name: str, key: str, low: int, high: int) -> SearchParam:
    """A whole number from ``low`` to ``high``."""
    return SearchParam(name, key, "int", low, high)


def meta_batch_choices(default: int) -> SearchParam:
    """The run's meta-batch size: a quarter, half, once or twice ``default``."""
    values = sorted({max(1, default // 4), max(1, default // 2), default, 2 * default})
    return SearchParam("meta_batch", "meta_batch", "choice", choices=tuple(values))
