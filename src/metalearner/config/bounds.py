"""Bounds of sizes and counts: declared once, in a setting's type, checked before any work.

A setting that sizes a tensor or counts iterations carries its bound in its annotation,
``steps: Annotated[int, STEPS] = 1000``. :func:`~metalearner.config.settings.from_dict` checks
it for every value read from YAML, a preset, ``--set`` or an option, and :func:`check_bounds`
for a config built in code, so ``steps: 1e38`` or ``meta_batch=1e12`` is one sentence naming the
setting and its bound instead of a run that never ends or a traceback from the allocator.

The bounds are generous for research (10^8 outer steps, 10^4 inner steps, 5000 ways, 10^4 shots)
and far below what would take a machine's memory or years; the quantities several settings
share (ways, shots, task counts, adaptation steps) are named here, once, and the settings of
runs, strategies, benchmarks, RL and the command-line options all point at the same bound.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from metalearner.errors import ConfigError

__all__ = [
    "ADAPT_STEPS",
    "CLASSES",
    "EPISODE_BYTES_MAX",
    "EXAMPLES",
    "META_BATCH",
    "SECONDS",
    "STEPS",
    "TASKS",
    "TASK_EXAMPLES",
    "THREADS",
    "WAYS",
    "WIDTH",
    "Range",
    "bound_of",
    "check_bounds",
    "check_value",
    "declared_bound",
]


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``low <= value <= high`` (``low < value`` when
    ``open_low``). On a list setting (hidden sizes, shots of a sweep) it bounds each item.

    Attributes:
        low: the smallest value (or the one just below it, with ``open_low``).
        high: the largest value.
        open_low: ``low`` itself is refused (seconds: more than 0).
        why: a reason for the lower bound, said in the message (``"for a CI"``).
    """

    low: float
    high: float
    open_low: bool = False
    why: str = ""

    def at_least(self, low: float, why: str = "") -> Range:
        """The same bound with another lowest value (ProtoNets train on 2 ways at least)."""
        return dataclasses.replace(self, low=low, why=why)

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value`` ("at most 10000"), or ``None`` if it lies in the range."""
        if self.open_low and not value > self.low:
            return f"more than {_number(self.low)}"
        if not self.open_low and not value >= self.low:
            reason = f" ({self.why})" if self.why else ""
            return f"at least {_number(self.low)}{reason}"
        if not value <= self.high:  # NaN fails every comparison, so it never passes
            return f"at most {_number(self.high)}"
        return None


STEPS = Range(1, 10**8)
"""Outer steps and iterations, and steps between validations, logs, checkpoints or decays: at a
millisecond a step, 10^8 take more than a day."""
SECONDS = Range(0, 10**8, open_low=True)
"""A time budget or interval in seconds (10^8 s: three years)."""
META_BATCH = Range(1, 10**5)
"""Tasks per outer step (and per vmapped chunk)."""
TASKS = Range(1, 10**5)
"""Fixed validation or test tasks (the papers use 600; each is adapted to and scored)."""
ADAPT_STEPS = Range(0, 10**4)
"""Gradient steps adapting to one task: inner steps while meta-training, steps at test time."""
WAYS = Range(1, 5000)
"""Classes per task."""
EXAMPLES = Range(1, 10**4)
"""Examples per class of a task: shots, queries (RL: trajectories per task)."""
TASK_EXAMPLES = Range(1, WAYS.high * 2 * EXAMPLES.high)
"""Examples of one task taken together (a minibatch of its shots and queries, say)."""
CLASSES = Range(1, 10**7)
"""Classes of a dataset (its training, validation or pretraining classes)."""
WIDTH = Range(1, 10**4)
"""Channels or units of a layer (a conv4 of width 10^4 holds ~10^9 weights per block)."""
THREADS = Range(1, 4096)
"""CPU threads per operation (or processes working at once)."""

EPISODE_BYTES_MAX = 64 * 2**30
"""The most that one meta-batch's inputs may take (64 GiB): meta_batch × ways × (shots +
queries) examples of float32, checked by the run config before any data is loaded. The papers'
largest episodes take a few hundred MB."""


def bound_of(cls: type, name: str) -> Range | None:
    """The :class:`Range` declared in the annotation of dataclass ``cls``'s field ``name``."""
    return declared_bound(typing.get_type_hints(cls, include_extras=True).get(name))


def check_bounds(settings: Any, prefix: str = "") -> None:
    """Raises ConfigError for the first field of dataclass ``settings`` (and of the dataclasses
    in it) outside its declared :class:`Range`; ``prefix`` is the settings' place in a config
    (``"data."``), for the message."""
    hints = typing.get_type_hints(type(settings), include_extras=True)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            check_bounds(value, f"{prefix}{f.name}.")
        else:
            check_value(value, declared_bound(hints[f.name]), f"Setting {prefix + f.name!r}")


def check_value(value: Any, bound: Range | None, name: str) -> None:
    """Raises ConfigError if ``value`` (a number, or each number of a list) lies outside
    ``bound``; ``None`` values and ``None`` bounds pass. ``name`` starts the message."""
    if bound is None or value is None or isinstance(value, bool):
        return
    items = value if isinstance(value, list | tuple) else (value,)
    for item in items:
        if not isinstance(item, int | float) or isinstance(item, bool):
            continue  # a type error, which the type check words
        problem = bound.problem(item)
        if problem is not None:
            each = " in each item" if items is value else ""
            raise ConfigError(f"{name} must be {problem}{each}, got {_number(item)}.")


def declared_bound(hint: Any) -> Range | None:
    """The :class:`Range` in type hint ``hint`` (``Annotated[int, STEPS]``), if any."""
    if typing.get_origin(hint) is not Annotated:
        return None
    return next((m for m in hint.__metadata__ if isinstance(m, Range)), None)


def _number(value: float) -> str:
    """``value`` as a user wrote it: whole numbers as integers, huge ones as ``1e+38``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int) and abs(value) >= 10**15:
        try:
            return f"{float(value):.3g}"
        except OverflowError:  # beyond any float: say how many digits it has
            return f"a number of {len(str(abs(value)))} digits"
    return str(value)
