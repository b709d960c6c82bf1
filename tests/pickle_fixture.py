"""Pickles as the public files hold them (Python 2's protocol 2), and a planted one that would
run a command when loaded: what the restricted unpickler must refuse unrun."""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's ``cPickle.dump(obj, f, 2)`` wrote: text and bytes as Python 2
    strings (``BINSTRING``), numpy's reconstructor under its numpy 1 module name."""

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)
    write: Callable[[bytes], object]  # the pure-Python pickler's, untyped in typeshed
    memoize: Callable[[object], None]

    def save_python2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_python2_string
    dispatch[bytes] = save_python2_string

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = {"_reconstruct": "numpy.core.multiarray"}.get(obj.__name__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)


def python2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2 pickled the CIFAR batches (protocol 2)."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class RunsACommand:
    """Pickles to ``os.system("touch <marker>")``: what a planted pickle would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def planted_pickle(marker: Path, key: str = "image_data") -> bytes:
    """A dict shaped like a data pickle whose first value would run a command."""
    return pickle.dumps({key: RunsACommand(marker), "class_dict": {}}, protocol=2)


HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"
"""What a Google Drive link answers instead of a large file."""
