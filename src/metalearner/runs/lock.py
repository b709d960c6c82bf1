"""One command at a time in a folder: the lock of a run, benchmark or search folder.

A command that writes into such a folder takes the folder's lock before it deletes, renames or
writes anything there, and holds it until it ends; a second command on the same folder is refused
in one sentence naming the process that holds it, having changed nothing. The lock is the
operating system's (``flock`` on ``<folder>/.lock``), so a killed process lets go of it; while it
is held the file names its holder's pid, for that sentence.

``flock`` locks belong to an open file, not to a process: a process that takes a folder's lock a
second time (another open) is refused like any other.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from metalearner.errors import ConfigError

LOCK = ".lock"
PID_WAIT = 0.5  # seconds a refused command waits for the new holder to write its pid


@contextlib.contextmanager
def run_lock(folder: Path, doing: str = "trained") -> Iterator[None]:
    """Holds ``folder``'s lock while the block runs (see the module doc).

    The folder is made if it is missing; when the block leaves nothing in it but the lock (a
    command that failed before writing anything), the folders made here are removed again, so
    such a command leaves no trace.

    Args:
        folder: the run, benchmark or search folder.
        doing: what the holder does there, for the refusal ("<folder> is being <doing> by
            another process"): ``trained``, ``used for a benchmark``, ``used for a search``.

    Raises:
        ConfigError: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no lock, as before
        yield
        return
    made: list[Path] = []
    while True:
        made += [path for path in _make(folder) if path not in made]
        handle = open(folder / LOCK, "a+")  # noqa: SIM115 (open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ConfigError(
                f"{folder} is being {doing} by another process{_holder(folder)} right now; wait "
                "for it to end (or stop it), or choose another --out."
            ) from None
        if _same_file(handle, folder / LOCK):
            break
        # Its holder removed the file while we opened it (a command that wrote nothing): the
        # lock is now whatever stands at that path.
        handle.close()
    with handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            _let_go(handle, folder, made)


def _make(folder: Path) -> list[Path]:
    """Makes ``folder`` (and its parents); the folders that were missing, innermost first."""
    missing, path = [], folder
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    folder.mkdir(parents=True, exist_ok=True)  # a file there: FileExistsError, said by the CLI
    return missing


def _holder(folder: Path) -> str:
    """`` (pid N)`` of the process holding ``folder``'s lock; empty if it wrote none in time."""
    deadline = time.monotonic() + PID_WAIT
    while True:
        try:
            pid = (folder / LOCK).read_text().strip()
        except OSError:
            pid = ""
        if pid.isdigit():
            return f" (pid {pid})"
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.02)  # it took the lock a moment ago and writes its pid next


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _let_go(handle: IO[str], folder: Path, made: list[Path]) -> None:
    """Before the lock is released: removes the folders made for it if nothing else was
    written into them, or else clears the pid (no stale pid for a later refusal to read)."""
    try:
        if made and [p.name for p in folder.iterdir()] == [LOCK]:
            # Removed while still held: a process that opened the file meanwhile finds it gone
            # once it has the lock (_same_file) and takes the one at the path instead.
            (folder / LOCK).unlink()
            for path in made:  # the folder, then the parents made for it
                path.rmdir()
        else:
            handle.seek(0)
            handle.truncate()
    except OSError:
        pass  # a parent another command now uses, a read-only folder: left as it is
