"""YAML for settings: numbers in scientific notation, and one sentence for a file that is wrong.

Run configs, presets, plans and run folders' ``config.yaml`` are read here: ``1e-4`` is a number
(YAML 1.1 would read a string), written YAML reads back the same, and a file that is missing, a
folder, not UTF-8, not YAML, empty or not a mapping gets a :class:`~metalearner.errors.ConfigError`
(a user's file) or :class:`~metalearner.errors.DataError` (one this program wrote) naming it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from metalearner.errors import ConfigError, DataError


class _Loader(yaml.SafeLoader):
    """YAML for settings: also reads ``1e-4`` and ``1.0e30`` as numbers.

    YAML 1.1 (PyYAML) needs a dot and a signed exponent (``1.0e-4``), so it reads these as
    strings and the type check refused a number; YAML 1.2 and Python's ``float()`` accept them.
    """


class _Dumper(yaml.SafeDumper):
    """Quotes strings that :class:`_Loader` would read as numbers, so written YAML reads back."""


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``text`` as YAML, numbers in scientific notation included (``1e-4``).

    Raises:
        yaml.YAMLError: ``text`` is not YAML.
    """
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only, never code


def dump_yaml(data: Any) -> str:
    """``data`` as YAML in its own key order, that :func:`parse_yaml` reads back the same."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file of settings as a mapping, or a ConfigError that names the file.

    Raises:
        ConfigError: the file is missing, a folder, not UTF-8 text, not YAML, empty or not a
            mapping.
    """
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a config file; give a YAML file.")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist; give a YAML file or --preset.")
    data, problem = _read_mapping(path)
    if problem.startswith("not valid YAML"):
        raise ConfigError(f"{path} is {problem}; fix its syntax.")
    if problem == "not UTF-8 text":
        raise ConfigError(f"{path} is {problem}; give a YAML file of settings.")
    if problem:
        raise ConfigError(f"{path} is {problem}; write its settings as key: value lines.")
    return data


def read_saved_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping this program wrote (a run's ``config.yaml``).

    Raises:
        DataError: the file is damaged: not UTF-8 text, not YAML, empty or not a mapping.
    """
    data, problem = _read_mapping(path)
    if problem:
        raise DataError(f"{path} is damaged ({problem}); retrain or restore it.")
    return data


def _read_mapping(path: Path) -> tuple[dict[str, Any], str]:
    """The mapping in YAML file ``path``, or ``{}`` and what is wrong with the file."""
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return {}, "not UTF-8 text"
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        return {}, "not valid YAML" + (f" at line {where.line + 1}" if where is not None else "")
    if data is None:
        return {}, "empty"
    if not isinstance(data, dict):
        return {}, f"not a mapping of settings (it holds a {type(data).__name__})"
    return data, ""


def parse_setting(text: str) -> Any:
    """The value of a ``--set key=value`` override: YAML (``0.1``, ``1e-4``, ``[1, 2]``), else
    the text itself (the type check then says what was expected)."""
    try:
        return parse_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text  # not YAML: keep the string, the type check says what was expected
