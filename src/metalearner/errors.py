"""Typed errors whose message is one sentence: what is wrong and what to do.

The command line turns any :class:`MetalearnerError` into that sentence on stderr and a non-zero
exit, with no traceback (DESIGN.md rule 5); :func:`file_error` words the file-system errors a
user can fix (an output path that is a file, a full disk) the same way.
"""

from __future__ import annotations

import errno
import importlib
import os
from pathlib import Path


class MetalearnerError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MetalearnerError):
    """The data is missing, malformed or too small for the requested tasks."""


class ConfigError(MetalearnerError):
    """A setting is unknown, of the wrong type or out of range."""


class MissingExtraError(MetalearnerError, ImportError):
    """A part of the package needs optional dependencies that are not installed."""


def require_extra(extra: str, *modules: str) -> None:
    """Imports ``modules``; if one is missing, raises one sentence naming the pip extra.

    The core (load, adapt, train, evaluate) needs neither Optuna nor MuJoCo; ``search`` and
    ``rl`` call this before anything else, so a user without them reads what to install
    instead of a ``ModuleNotFoundError`` from deep inside.

    Raises:
        MissingExtraError: naming the missing module and ``pip install 'metalearner[EXTRA]'``.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise MissingExtraError(
                f"metalearner's {extra} part needs {err.name or module}, which is not installed; "
                f"install it with: pip install 'metalearner[{extra}]'."
            ) from err


def file_error(err: OSError) -> str | None:
    """One sentence for a file-system error a user can fix (a file where a folder must be, a
    folder where a file must be, no permission, a full disk); ``None`` for any other error."""
    name = err.filename2 if err.filename2 is not None else err.filename  # rename: the target
    path = None if name is None else os.fsdecode(name) if isinstance(name, bytes) else str(name)
    if err.errno == errno.ENOSPC:
        return f"The disk is full (writing {path or 'a file'}); free some space and run again."
    if path is None:
        return None
    if isinstance(err, FileExistsError) and Path(path).is_dir():
        return f"{path} already exists; give another path or remove it."
    if isinstance(err, FileExistsError):
        return f"{path} is a file, but a folder is needed there; give another path or remove it."
    if isinstance(err, IsADirectoryError):
        return f"{path} is a folder, but a file is needed there; name a file in it."
    if isinstance(err, NotADirectoryError):
        above = file_above(Path(path)) or Path(path).parent
        return f"{path} lies under {above}, which is a file, not a folder; give another path."
    if isinstance(err, PermissionError):
        return f"Permission denied for {path}; give a path you can write to, or change its mode."
    if isinstance(err, FileNotFoundError):
        return f"{path} does not exist; check the path and the folders above it."
    return None


def file_above(path: Path) -> Path | None:
    """The file among ``path``'s parent folders, if one is a file (nothing can be written under
    it); ``None`` if there is none."""
    return next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
