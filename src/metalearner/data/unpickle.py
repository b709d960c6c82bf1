"""Reading the pickled datasets that circulate without letting a pickle run code.

mini-ImageNet's caches, RFS's and MetaOptNet's files and CIFAR-100's python archive are pickles,
and ``pickle.load`` calls whatever function a file names: a file from a mirror or a shared drive
could run any command. :func:`read_pickle` admits only what those files are made of (numpy
arrays, dtypes and scalars, dicts, lists, tuples, strings, bytes, numbers) and refuses any other
global by name, before calling it. The usual breakages get one sentence each: an HTML page saved
under a pickle's name (a download link that answered with a web page: learn2learn #291, #310,
Torchmeta #54), a truncated file, a file that is not a pickle.

References:
    Python documentation, ``pickle``, "Restricting Globals" (``Unpickler.find_class``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from metalearner.errors import DataError

ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # What numpy arrays, dtypes and scalars pickle to, in numpy 1 and numpy 2 module names.
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (out-of-band buffers)
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 writes bytes for protocols 0-2 as _codecs.encode(text, "latin1").
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)
"""The ``(module, name)`` globals a data pickle may name: none of them runs a command."""

_BUILTIN_TYPES = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                  "int", "float", "complex", "bool", "slice", "range"}  # fmt: skip


class _DataUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits :data:`ALLOWED` and builtin data types only."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles' module names, as pickle itself maps them (fix_imports).
        if module in ("__builtin__", "builtins") and name in _BUILTIN_TYPES:
            return super().find_class("builtins", name)
        if (module, name) in ALLOWED:
            # The same functions under the other numpy's module name (numpy 2 renamed
            # numpy.core to numpy._core; the old name still works there, with a warning).
            if module.startswith("numpy.core.") and _NUMPY_2:
                module = "numpy._core." + module.removeprefix("numpy.core.")
            elif module.startswith("numpy._core.") and not _NUMPY_2:
                module = "numpy.core." + module.removeprefix("numpy._core.")
            return super().find_class(module, name)
        raise _ForbiddenGlobalError(f"{module}.{name}")


_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2  # numpy 2 renamed numpy.core to numpy._core


class _ForbiddenGlobalError(Exception):
    """A global outside :data:`ALLOWED` (raised before it is imported or called)."""


def is_web_page(head: bytes) -> bool:
    """Whether a file's first bytes are markup (HTML, XML): what a download link that answered
    with a web page leaves under a data file's name. No pickle, archive or array starts so."""
    return head[:512].lstrip().startswith(b"<")


def read_pickle(source: Path | bytes, *, what: str, encoding: str = "latin1") -> object:
    """Unpickles a dataset file, admitting only data (arrays, containers, strings, numbers).

    Args:
        source: the file, or its bytes (a member of an archive).
        what: how to name it in an error (a path, ``"train in cifar-100-python.tar.gz"``).
        encoding: how Python 2 strings are read: ``"latin1"`` (numpy arrays pickled by Python 2
            need it), or ``"bytes"`` (CIFAR's dict keys stay ``b"data"``).

    Returns:
        The unpickled object.

    Raises:
        DataError: the file is missing, is a web page, is truncated or not a pickle, or names a
            function or class that is not data (it is never called).

    Example:
        >>> read_pickle(Path("mini-imagenet-cache-test.pkl"), what="the test cache").keys()
        dict_keys(['image_data', 'class_dict'])
    """
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
    except OSError as err:
        raise DataError(f"Cannot read {what} ({err.strerror or err}); check the file.") from None
    if is_web_page(data):
        raise DataError(
            f"{what} is a web page, not a pickle (a download link answered with HTML); "
            "download the file again from its source."
        )
    try:
        return _DataUnpickler(io.BytesIO(data), encoding=encoding).load()
    except _ForbiddenGlobalError as err:
        raise DataError(
            f"{what} names {err}, which is not data; it was refused without running it: use "
            "the dataset's original file."
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, AttributeError,
            ImportError) as err:  # fmt: skip
        reason = " ".join(str(err).split())  # pickle's messages span lines
        if isinstance(err, EOFError) or "truncated" in reason:
            raise DataError(f"{what} is truncated; download it again.") from None
        raise DataError(
            f"{what} is not a readable pickle ({reason}); download it again or use the "
            "original file."
        ) from None
