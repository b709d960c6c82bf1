"""Checkpoints are data: ``model.safetensors`` + ``meta.json``, written atomically, never pickled.

A checkpoint is a folder. Tensors (parameters, optimiser state, RNG states) go into one
safetensors file; everything else (strategy, config, backbone, input shape, preprocessing, class
names, versions, the tensors' sha256) into JSON. Loading parses those two formats and nothing
else, so a checkpoint from a stranger cannot execute code (DESIGN.md rule 6).

The folder is written beside its final place and swapped in with renames, so a crash at any
moment leaves either the old checkpoint or the new one, never a mix of the two. A reader takes
both files from one folder (opened once, read through its descriptor) and reads again when a
save swapped the folder meanwhile, so a checkpoint being rewritten is never taken for a damaged
one.

Integrity: ``sha256`` is the tensors' digest and ``meta_sha256`` the digest of the metadata
(every other field, ``sha256`` included, as canonical JSON), so a changed byte in either file,
or a field edited by hand, is refused as "damaged or replaced". These are checksums, not
signatures: they catch damage and edits, not a forger who recomputes them. What a loader then
takes from a checkpoint is validated against what its code expects (fields, JSON types, sizes
within bounds, tensor names, shapes and dtypes: :mod:`metalearner.runs.checkpoint_schema`), so
even a re-signed checkpoint is refused in one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file
from torch import Tensor

from metalearner.errors import DataError, os_error, writing

FORMAT = 1
"""Version of the checkpoint layout; a checkpoint of another format is refused by name."""

TENSORS, META = "model.safetensors", "meta.json"

_READS = 20
"""Reads of a checkpoint that a concurrent save swapped mid-way, before it counts as damaged.
Each retry waits 2 ms longer (0.4 s in all): on a loaded machine (two processes per core) five
reads in a row were each overtaken by a save rewriting in a tight loop."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its tensors by name and its metadata."""

    tensors: dict[str, Tensor]
    meta: dict[str, Any]
    path: Path

    def group(self, prefix: str) -> dict[str, Tensor]:
        """The tensors saved under ``prefix/`` (e.g. ``params``), with the prefix removed."""
        start = prefix.rstrip("/") + "/"
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}


def versions() -> dict[str, str]:
    """Versions recorded in every checkpoint, to explain a mismatch later."""
    from metalearner._version import __version__

    return {
        "metalearner": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


def save_checkpoint(path: Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> Path:
    """Writes ``tensors`` and ``meta`` as a checkpoint folder at ``path``, atomically.

    Args:
        path: the checkpoint folder (replaced if it exists).
        tensors: flat names (use ``group/name`` prefixes) to tensors; saved contiguous on CPU.
        meta: JSON-serialisable metadata; ``format``, ``versions`` (unless given),
            ``sha256`` (the tensors' digest) and ``meta_sha256`` (the metadata's) are added.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    # Folders of these names can only be left by a killed process that had our pid (pids are
    # reused; in a container every run may be pid 1): ours to remove, or the renames fail.
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    try:
        with writing(path, tmp):
            _write_folder(tmp, tensors, meta)
        # Swap: the old folder is moved aside first; a rename cannot replace a non-empty one.
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists() and not path.exists():
                os.replace(old, path)  # the checkpoint that was there stays
            raise
    except BaseException:
        # Any failure (a full disk, Ctrl-C): nothing half-written is left to take space.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    _remove_leftovers(path)
    return path


def _write_folder(tmp: Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """The new checkpoint's two files in ``tmp``, on disk before any rename makes them live."""
    tmp.mkdir()
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        save_file(cpu, str(tmp / TENSORS))
    except SafetensorError as err:  # its I/O errors (a full disk) come only as text
        raise (os_error(err, tmp / TENSORS) or err) from err
    _fsync_file(tmp / TENSORS)
    # A checkpoint rewritten with more metadata (its adaptation chosen later) keeps the
    # versions that wrote its tensors.
    written = meta.get("versions") or versions()
    full = {**meta, "format": FORMAT, "versions": written, "sha256": file_sha256(tmp / TENSORS)}
    full = json.loads(json.dumps(full))  # as a reader parses it: tuples as lists, keys as text
    full["meta_sha256"] = meta_digest(full)
    _write_json(tmp / META, full)
    _fsync_dir(tmp)


def _remove_leftovers(path: Path) -> None:
    # Saves killed mid-way by earlier processes leave their temporary and moved-aside folders;
    # a complete checkpoint now stands at ``path``, so they are superseded. A folder is removed
    # only if the process named in it is gone: one still alive may be between its two renames.
    for pattern in (f".{path.name}.old-*", f".{path.name}.tmp-*"):
        for leftover in path.parent.glob(pattern):
            if not _alive(leftover.name.rsplit("-", 1)[-1]):
                shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Reads a checkpoint folder, checking its format and the checksums of its tensors and
    metadata.

    Both files are read from one folder; when a concurrent save swapped the folder during the
    read (it is no longer the one at ``path``), it is read again.

    Raises:
        DataError: if the folder is not a checkpoint, is from another format, or is damaged.
    """
    requested = Path(path)
    for attempt in range(_READS):
        folder = _located(requested)
        files, identity = _snapshot(folder)
        try:
            return _parse(folder, files)
        except DataError:
            # Refused for good unless the folder read is no longer the checkpoint: a save
            # swapped a new one in (or removed the moved-aside one we read) meanwhile.
            if attempt + 1 == _READS or not _swapped(requested, identity):
                raise
            time.sleep(0.002 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def damaged(path: Path, what: str) -> DataError:
    """The one-sentence error for a checkpoint whose content is not what its loader expects."""
    return DataError(f"{path} is damaged or replaced ({what}); use another checkpoint or retrain.")


def meta_digest(meta: Mapping[str, Any]) -> str:
    """The digest of a checkpoint's metadata: sha256 of the canonical JSON (sorted keys, no
    spaces, ASCII) of every field but ``meta_sha256`` itself, as parsed from ``meta.json``."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _snapshot(folder: Path) -> tuple[tuple[bytes | None, bytes | None], tuple[int, int] | None]:
    """``meta.json``'s and the tensors' bytes (``None`` where missing), read from one folder
    (opened once and read through its descriptor where the OS allows), and that folder's
    identity (device, inode), or ``None`` if there was no folder."""
    if os.open not in os.supports_dir_fd:  # Windows: by path; a swap shows as a changed inode
        try:
            before = os.stat(folder)
        except OSError:
            return (None, None), None
        files = (_read(folder / META), _read(folder / TENSORS))
        return files, (before.st_dev, before.st_ino)
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return (None, None), None
    except OSError as err:
        raise DataError(
            f"{folder} cannot be read ({err.strerror}); check its permissions."
        ) from None
    try:
        st = os.fstat(fd)
        return (_read(META, fd), _read(TENSORS, fd)), (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def _read(file: Path | str, dir_fd: int | None = None) -> bytes | None:
    try:
        fd = os.open(file, os.O_RDONLY, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as err:
        raise DataError(f"{file} cannot be read ({err.strerror}); check its permissions.") from None
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except IsADirectoryError:
            return None


def _swapped(requested: Path, identity: tuple[int, int] | None) -> bool:
    """Whether the folder read (``identity``) is no longer the checkpoint at ``requested``."""
    if not checkpoint_exists(requested):
        return False  # nothing there at all: not a race, just no checkpoint
    try:
        st = os.stat(requested)
    except OSError:
        return True  # between a save's two renames: the moved-aside one is read next
    return identity != (st.st_dev, st.st_ino)


def _parse(path: Path, files: tuple[bytes | None, bytes | None]) -> Checkpoint:
    meta_bytes, tensor_bytes = files
    meta_file, tensor_file = path / META, path / TENSORS
    if meta_bytes is None or tensor_bytes is None:
        raise DataError(
            f"{path} is not a checkpoint (it needs {META} and {TENSORS}); "
            "point at a run's checkpoints/latest or checkpoints/best folder."
        )
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        problem = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8 JSON"
        raise DataError(
            f"{meta_file} is damaged ({problem}); use another checkpoint or retrain."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(
            f"{path} is a checkpoint of format {found!r}, this metalearner reads format "
            f"{FORMAT}; load it with the version that wrote it ({_writer(meta)})."
        )
    recorded = meta.get("meta_sha256")
    # Checkpoints written before the metadata had a digest have no ``meta_sha256``: they are
    # still read (a run folder of an earlier version evaluates, adapts and resumes), with their
    # tensors checked by ``sha256`` as before. For them (and for a metadata whose digest was
    # deleted, which then looks old) nothing detects an edited field; only the loaders'
    # validation of every field (types, bounds, tensor shapes) stands between it and a run.
    if recorded is not None and recorded != meta_digest(meta):
        raise DataError(
            f"{meta_file} does not match its checksum (damaged or replaced); "
            "use another checkpoint or retrain."
        )
    if hashlib.sha256(tensor_bytes).hexdigest() != meta.get("sha256"):
        raise DataError(
            f"{tensor_file} does not match the checksum in {META} (damaged or replaced); "
            "use another checkpoint or retrain."
        )
    try:
        tensors = load_tensors(tensor_bytes)
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{tensor_file} cannot be read ({err}); use another checkpoint.") from None
    return Checkpoint(tensors=tensors, meta=meta, path=path)


def _writer(meta: Any) -> str:
    if isinstance(meta, dict) and isinstance(meta.get("versions"), dict):
        return f"metalearner {meta['versions'].get('metalearner', '?')}"
    return "an unknown version"


def file_sha256(file: Path) -> str:
    """The sha256 of a file's bytes, as hex (read in chunks: a model's weights may be large)."""
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(file: Path, data: Mapping[str, Any]) -> None:
    with open(file, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_exists(path: Path | str) -> bool:
    """Whether :func:`load_checkpoint` finds something at ``path`` (a folder, or the previous
    checkpoint that a crash mid-save left moved aside)."""
    return _located(Path(path)).exists()


def _located(path: Path) -> Path:
    if path.exists():
        return path
    # A crash between the two renames of a save leaves the previous checkpoint moved aside;
    # earlier crashes, or one during the removal of a moved-aside folder, may have left others,
    # whole or in part. The whole one of the latest step is the checkpoint.
    aside = list(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    steps = {folder: _step(folder) for folder in aside}
    whole = [folder for folder in aside if steps[folder] is not None]
    return max(whole, key=lambda folder: steps[folder] or 0) if whole else path


def _step(folder: Path) -> int | None:
    """The step of a whole checkpoint folder (0 if it records none), or None if it is not one."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not (folder / TENSORS).is_file():
        return None
    step = meta.get("step", 0)
    return step if isinstance(step, int) else 0


def _fsync_file(file: Path) -> None:
    with open(file, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the renames themselves durable; not every filesystem allows opening a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
