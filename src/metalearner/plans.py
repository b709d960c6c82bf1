"""What the benchmark and search plans share: reading one from YAML and options, and keeping the
plan a folder was started with, so a rerun continues the same work or says why it cannot."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from metalearner.config import read_yaml
from metalearner.errors import ConfigError


def read_settings(
    cls: type[Any], file: Path | None, given: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """A YAML file's settings with ``given`` (``None`` values ignored) on top; every key must be
    a field of dataclass ``cls``, and comma-separated ``strategies`` become a list.

    Raises:
        ConfigError: an unknown key, naming it and the known ones.
    """
    raw: dict[str, Any] = read_yaml(file) if file is not None else {}
    raw |= {k: v for k, v in given.items() if v is not None}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"Unknown {what} setting {unknown[0]!r}; use one of {', '.join(sorted(names))}."
        )
    if isinstance(raw.get("strategies"), str):
        raw["strategies"] = [s.strip() for s in raw["strategies"].split(",") if s.strip()]
    return raw


def keep_plan(file: Path, plan: Mapping[str, Any], *, free: Collection[str], what: str) -> None:
    """Writes ``plan`` to ``file``, or first checks that the plan there is the same but for the
    ``free`` keys (those a rerun may change, such as the number of workers).

    Raises:
        ConfigError: the folder holds work with another plan.
    """
    if file.is_file():
        theirs = yaml.safe_load(file.read_text()) or {}
        if {k: v for k, v in theirs.items() if k not in free} != {
            k: v for k, v in plan.items() if k not in free
        }:
            raise ConfigError(
                f"{file.parent} holds a {what} with another plan ({file}); use another --out, "
                "or delete that folder to start over."
            )
    file.write_text(yaml.safe_dump(dict(plan), sort_keys=False))
