"""Typed errors whose message is one sentence: what is wrong and what to do.

The command line turns any :class:`MetalearnerError` into that sentence on stderr and a non-zero
exit, with no traceback (DESIGN.md rule 5); :func:`fault_message` words the faults of the machine
a user can fix (a read-only or full disk, an output path that is a file, no memory, a worker
process killed) the same way, once for every command; :func:`did_you_mean` names the closest
known name to a mistyped one.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import importlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path


class MetalearnerError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(MetalearnerError):
    """The data is missing, malformed or too small for the requested tasks."""


class ConfigError(MetalearnerError):
    """A setting is unknown, of the wrong type or out of range."""


class MissingExtraError(MetalearnerError, ImportError):
    """A part of the package needs optional dependencies that are not installed."""


def did_you_mean(name: object, known: Iterable[str], *, prefix: str = "") -> str:
    """`` (did you mean 'steps'?)`` when ``name`` is close to one of ``known``, else ``""``.

    Written right after the unknown name, it keeps a message one sentence: "Unknown setting
    'stepz' (did you mean 'steps'?); use one of ...".

    Args:
        name: what the user wrote.
        known: the names it could have meant.
        prefix: shown before the suggestion (``"data."``) but not compared, so that a shared
            prefix makes no two names look alike.

    Example:
        >>> did_you_mean("wayz", ["ways", "shots"], prefix="data.")
        " (did you mean 'data.ways'?)"
    """
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


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


def fault_message(err: BaseException) -> str | None:
    """One sentence for a fault of the machine that a user can fix; ``None`` for anything else
    (a bug, whose traceback must stay visible).

    Covers :func:`file_error`'s file-system errors, running out of memory (Python's
    ``MemoryError`` and PyTorch's allocator failures, ``RuntimeError`` instances told apart only
    by their text: this module may not import torch) and a pool's worker process killed, as the
    system kills a process that runs it out of memory.
    """
    if isinstance(err, OSError):
        return file_error(err)
    # A worker process ended by a signal: on Linux, the kernel's out-of-memory killer sends
    # SIGKILL, which no process can catch to say so itself. A pool broken by a worker's bug (a
    # result that cannot be unpickled) has the remote traceback as its cause and stays a bug.
    # (Not imported to check: a pool's error exists only once the module is loaded, and the
    # command line starts faster without it.)
    pool = sys.modules.get("concurrent.futures.process")
    if pool is not None and isinstance(err, pool.BrokenProcessPool) and err.__cause__ is None:
        return (
            "A worker process was killed (most often by the system, out of memory); lower "
            "--workers, meta_batch, ways, shots, queries, the image size or the model's width, "
            "and run the same command again: finished work is kept and the rest resumes."
        )
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and _OUT_OF_MEMORY.search(str(err))
    ):
        asked = _ASKED_BYTES.search(str(err))
        size = f" (one allocation of {int(asked[1]) / 2**30:.3g} GiB)" if asked else ""
        return (
            f"Out of memory{size}; lower meta_batch, ways, shots, queries, the image size or the "
            "model's width, or use a machine with more memory."
        )
    return None


# PyTorch's words: "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes"
# (CPU) and "CUDA out of memory. Tried to allocate ..." (torch.OutOfMemoryError).
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)
_ASKED_BYTES = re.compile(r"tried to allocate (\d+) bytes")


def file_error(err: OSError) -> str | None:
    """One sentence for a file-system error a user can fix (a file where a folder must be, a
    folder where a file must be, no permission, a read-only or full disk); ``None`` for any
    other error."""
    name = err.filename2 if err.filename2 is not None else err.filename  # rename: the target
    path = None if name is None else os.fsdecode(name) if isinstance(name, bytes) else str(name)
    where = f" (writing {path})" if path else ""
    if err.errno == errno.ENOSPC:
        return f"The disk is full{where}; free some space and run again (the run resumes)."
    if err.errno == errno.EDQUOT:
        return f"The disk quota is used up{where}; free some space and run again."
    if err.errno == errno.EROFS:
        return f"The file system is read-only{where}; give an output folder you can write to."
    if err.errno == errno.EMFILE:
        return "Too many files are open; raise the limit (ulimit -n) and run again."
    if path is None:
        return None
    if err.errno == errno.ENAMETOOLONG:
        return f"The path {path} is too long for the file system; give a shorter one."
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


@contextlib.contextmanager
def writing(final: Path, tmp: Path) -> Iterator[None]:
    """Reports a failure to write ``tmp`` (an atomic write's temporary file or folder) as one to
    write ``final``, the path the user knows: "writing run/checkpoints/latest", not
    "writing run/checkpoints/.latest.tmp-4242/model.safetensors"."""
    try:
        yield
    except OSError as err:
        name = err.filename2 if err.filename2 is not None else err.filename
        if name is None or not os.fsdecode(name).startswith(os.fspath(tmp)):
            raise
        raise OSError(err.errno, err.strerror, os.fspath(final)) from err


def os_error(err: Exception, path: Path | str) -> OSError | None:
    """The :class:`OSError` behind a library's I/O failure that reports it only in its text
    (safetensors: "I/O error: No space left on device (os error 28)"), so that it is worded
    like any other; ``None`` if the text names no error number."""
    number = re.search(r"os error (\d+)", str(err))
    if number is None:
        return None
    code = int(number[1])
    return OSError(code, os.strerror(code), str(path))


def file_above(path: Path) -> Path | None:
    """The file among ``path``'s parent folders, if one is a file (nothing can be written under
    it); ``None`` if there is none."""
    return next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
