"""What every strategy config shares: type and bound checks of each field, named presets, range
checks."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, ClassVar

from metalearner.config.bounds import declared_bound
from metalearner.config.types import describe_type, match_type
from metalearner.errors import ConfigError


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
        """Raises ConfigError for a field whose value does not match its annotation, or lies
        outside the bound declared there.

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
        self.check_bounds()

    def check_bounds(self) -> None:
        """Raises ConfigError for a field outside the bound declared in its annotation
        (``inner_steps: Annotated[int, ADAPT_STEPS.at_least(1)]``, see
        :mod:`metalearner.config.bounds`); :meth:`check_types` calls it."""
        hints = typing.get_type_hints(type(self), include_extras=True)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            bound = declared_bound(hints[f.name])
            if bound is not None:
                check_range(self, f.name, low=bound.low, strict=bound.open_low, high=bound.high)


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
    # (An integer too large for a float is compared exactly, never converted.)
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        bound = f"> {low}" if strict else f">= {low}"
        upper = f" and <= {high}" if math.isfinite(high) else ""
        raise ConfigError(f"strategy_config.{name} must be {bound}{upper}, got {value!r}.")
