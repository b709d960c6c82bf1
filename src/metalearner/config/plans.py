"""What the benchmark and search plans share: reading one from YAML and options, and keeping the
plan a folder was started with, so a rerun continues the same work or says why it cannot."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from metalearner.config.yaml_files import read_yaml
from metalearner.errors import ConfigError, did_you_mean


def read_settings(
    cls: type[Any], file: Path | None, given: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """A YAML file's settings with ``given`` (``None`` values ignored) on top; every key must be
    a field of dataclass ``cls``, and comma-separated ``strategies`` become a list.

    Raises:
        ConfigError: an unknown key, naming it and the known ones.
    """
    if file is not None and not file.exists():  # a folder: read_yaml says so
        raise ConfigError(
            f"Plan file {file} does not exist; give a {what} plan (YAML), or only options."
        )
    raw: dict[str, Any] = read_yaml(file) if file is not None else {}
    raw |= {k: v for k, v in given.items() if v is not None}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"Unknown {what} setting {unknown[0]!r}{did_you_mean(unknown[0], names)}; use one of "
            f"{', '.join(sorted(names))}."
        )
    if isinstance(raw.get("strategies"), str):
        raw["strategies"] = [s.strip() for s in raw["strategies"].split(",") if s.strip()]
    return raw


def same_plan(file: Path, plan: Mapping[str, Any], *, free: Collection[str]) -> bool:
    """Whether ``file`` holds ``plan``, but for the ``free`` keys (a rerun of the same work)."""
    return file.is_file() and _difference(file, plan, free) is None


def keep_plan(
    file: Path,
    plan: Mapping[str, Any],
    *,
    free: Collection[str],
    what: str,
    started: bool = True,
) -> None:
    """Writes ``plan`` to ``file``, or first checks that the plan there is the same but for the
    ``free`` keys (those a rerun may change, such as the number of workers).

    Call it only with a plan already checked in full: the file is the promise that the folder's
    work follows this plan. A folder whose work has not ``started`` (a plan file and no results)
    takes the new plan, so a corrected command is never refused because of an earlier attempt.

    Raises:
        ConfigError: the folder holds work with another plan, naming a setting that differs.
    """
    if started:
        check_same_plan(file, plan, free=free, what=what)
    file.write_text(yaml.safe_dump(dict(plan), sort_keys=False))


def check_same_plan(
    file: Path, plan: Mapping[str, Any], *, free: Collection[str], what: str
) -> None:
    """Refuses ``plan`` if ``file`` holds another one (but for the ``free`` keys).

    Raises:
        ConfigError: naming a setting that differs.
    """
    differs = _difference(file, plan, free) if file.is_file() else None
    if differs is not None:
        key, theirs, ours = differs
        raise ConfigError(
            f"{file.parent} holds a {what} with another plan ({key}: {theirs!r} there, "
            f"{ours!r} now, in {file}); use another --out, or delete that folder to start over."
        )


def _difference(
    file: Path, plan: Mapping[str, Any], free: Collection[str]
) -> tuple[str, Any, Any] | None:
    """The first setting (name, value in ``file``, value in ``plan``) that differs, if any."""
    try:
        theirs = yaml.safe_load(file.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        theirs = None
    if not isinstance(theirs, Mapping):
        return (file.name, "unreadable", "a plan")
    ours = {k: v for k, v in plan.items() if k not in free}
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        if key not in free and theirs.get(key) != ours.get(key):
            return key, theirs.get(key), ours.get(key)
    return None


def interrupted(what: str) -> NoReturn:
    """Ctrl-C during a benchmark or search: one line that says how to go on, exit status 130.

    (Typer turns KeyboardInterrupt into a silent exit 130 before ``cli.main`` sees it.)
    """
    print(
        f"interrupted; run the same command again to continue the {what} where it stopped.",
        file=sys.stderr,
    )
    raise SystemExit(130)
