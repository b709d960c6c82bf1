"""Typed settings from plain mappings: the one parser behind every config (runs, RL, plans).

A config is a frozen dataclass; :func:`from_dict` builds it from parsed YAML, checking every key
and coercing every value against the field's type hint (and the bound declared in it, see
:mod:`metalearner.config.bounds`), so a typo, a wrong type or an absurd size is one sentence
naming the setting. ``--set a.b=value`` overrides go through :func:`apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from metalearner.config.bounds import check_value, declared_bound
from metalearner.config.types import describe_type, match_type
from metalearner.config.yaml_files import parse_setting
from metalearner.errors import ConfigError, did_you_mean


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], *, example: str) -> None:
    """Applies ``dotted.key=value`` strings to ``raw`` in place, values parsed as YAML.

    Args:
        raw: the settings read so far.
        overrides: ``--set`` values, e.g. ``["steps=100", "data.ways=20"]``.
        example: a setting of this config for the message, e.g. ``"steps=100"``.

    Raises:
        ConfigError: an item without ``=`` or without a key, or a key below a plain value.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not key=value; write e.g. --set {example}.")
        assign(raw, key.strip(), parse_setting(value))


def from_dict(cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
    """Builds dataclass ``cls`` from a mapping, checking every key and value type."""
    if not isinstance(data, Mapping):
        if not prefix:
            raise ConfigError(
                "A run config must be a mapping of settings (key: value lines), not a "
                f"{type(data).__name__}."
            )
        raise ConfigError(
            f"Setting {prefix.rstrip('.')!r} must be a mapping of settings (key: value), not "
            f"{data!r}."
        )
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(
                f"Unknown setting {prefix + str(key)!r}{did_you_mean(key, names, prefix=prefix)}; "
                f"use one of {', '.join(names)}."
            )
    values = {}
    for name in names:
        if name not in data:
            continue
        hint, value = hints[name], data[name]
        bound = declared_bound(hint)
        if bound is not None:
            hint = typing.get_args(hint)[0]  # Annotated[int, STEPS]: the int
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(typing.cast(type, hint), value or {}, f"{prefix}{name}.")
        else:
            values[name] = coerce(value, hint, prefix + name)
            # Checked here, as it is read, a bound comes before any check of its combinations
            # with other settings, and before the config's own checks start any work.
            check_value(values[name], bound, f"Setting {prefix + name!r}")
    return cls(**values)


def whole_numbers(value: Any, hint: Any) -> Any:
    """``value`` with whole floats (``1e3`` is read as 1000.0) as ints where ``hint`` takes an
    int and not that float; anything else unchanged."""
    if isinstance(value, float) and value.is_integer() and not match_type(value, hint)[0]:
        return int(value) if match_type(int(value), hint)[0] else value
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        if len(args) == len(value):
            return type(value)(whole_numbers(v, a) for v, a in zip(value, args, strict=True))
    if origin in (typing.Union, types.UnionType) and isinstance(value, list | tuple):
        for arg in typing.get_args(hint):
            fixed = whole_numbers(value, arg)
            if match_type(fixed, arg)[0]:
                return fixed
    return value


def assign(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"Setting {where!r} is a value, not a group; remove '.{parts[-1]}'.")
        node = child
    node[parts[-1]] = value


def coerce(value: Any, hint: Any, key: str) -> Any:
    ok, out = match_type(whole_numbers(value, hint), hint)
    if not ok:
        raise ConfigError(f"Setting {key!r} must be {describe_type(hint)}, got {value!r}.")
    return out


def tuples(d: Mapping[str, Any]) -> dict[str, Any]:
    # YAML has no tuples; strategy configs type pairs (Meta-SGD's inner_lr_init) as tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


SEED_MAX = 2**63 - 1
"""The largest seed: torch.Generator takes up to 2**64 - 1, and runs derive seed + 1 etc."""


def check_seed(key: str, seed: int) -> None:
    """Raises ConfigError unless seed ``key`` is in 0..SEED_MAX (what torch.Generator takes)."""
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"Setting {key!r} must be an integer from 0 to {SEED_MAX}, got {seed}.")
