"""Files on disk: downloads checked by md5, and decoded datasets cached as ``.npz``.

Decoding 32,460 Omniglot PNGs takes seconds; loading their decoded ``uint8`` tensor takes a
fraction of one. The cache key is the sha256 of the source bytes and the decode settings, so a
changed file or setting is a different key, never a stale hit. The cache lives outside the data
folder (which may be read-only), is written atomically, and a broken cache file is rebuilt. A
dataset that takes seconds to decode says so in one line on stderr the first time, with where
its cache goes; later loads say nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from http.client import HTTPException
from pathlib import Path

import numpy as np

from metalearner.errors import DataError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped whenever decoding changes, so old cache files are no longer hits."""

_CHUNK = 1 << 20
# What a truncated, corrupt or foreign .npz raises while being read.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)

Arrays = dict[str, np.ndarray]


def fetch(url: str, dest: Path, *, md5: str, timeout: float = 60.0) -> None:
    """Downloads ``url`` to ``dest`` atomically, keeping it only if its md5 is ``md5``.

    The bytes go to a temporary file beside ``dest``, renamed once the checksum matches, so an
    interrupted or corrupted download leaves nothing behind.

    Raises:
        DataError: the server is unreachable or answers an error, or the md5 differs.
    """
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".part", dir=dest.parent)
        tmp = Path(name)
        logger.info("Downloading %s to %s", url, dest)
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"The download of {url} has md5 {digest.hexdigest()}, not the expected "
                f"{md5}; retry, or download it by hand to {dest}."
            )
        os.replace(tmp, dest)
        tmp = None
    except (urllib.error.URLError, HTTPException, OSError) as err:
        reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else err
        reason = getattr(reason, "reason", reason)
        raise DataError(
            f"Could not download {url} to {dest} ({reason}); check the connection, or download "
            f"it by hand to {dest}."
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def cache_dir() -> Path:
    """``$METALEARNER_CACHE`` if set, else ``~/.cache/metalearner``."""
    env = os.environ.get("METALEARNER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "metalearner"


def source_digest(files: Iterable[tuple[str, Path]]) -> str:
    """sha256 over the names and bytes of source files, in the order given.

    Args:
        files: ``(name, path)`` pairs; the name (e.g. a path relative to the dataset root) is
            hashed too, so renaming a class folder changes the key.
    """
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def cache_key(kind: str, digest: str, settings: Mapping[str, object]) -> str:
    """The cache key of ``kind`` data decoded from sources ``digest`` with ``settings``."""
    text = json.dumps(
        {"kind": kind, "sources": digest, "settings": settings, "format": FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(kind: str, key: str, directory: Path | None = None) -> Path:
    """Where the cache file of ``kind`` with ``key`` lives."""
    return (directory or cache_dir()) / f"{kind}-{key[:24]}.npz"


def load_arrays(path: Path, required: Iterable[str]) -> Arrays | None:
    """Reads a cache file; ``None`` if it is absent, or (with a warning) unreadable.

    Arrays are read eagerly, so a truncated file fails here (zip CRC checks) and not later in a
    training loop. ``allow_pickle=False``: a cache file is data and never executes code.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except _READ_ERRORS as err:
        logger.warning("Cache file %s is unreadable (%s); rebuilding it.", path, err)
        return None
    missing = [name for name in required if name not in arrays]
    if missing:
        logger.warning("Cache file %s lacks %s; rebuilding it.", path, ", ".join(missing))
        return None
    return arrays


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes a cache file atomically (temporary file, then rename); failure only warns.

    A reader never sees a half-written file, and two processes building the same cache both
    end with a complete one. Not being able to write (read-only home, full disk) costs a
    re-decode next time, so it is a warning rather than an error.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        os.chmod(fd, 0o644)  # mkstemp makes it private; a cache may be shared with others
        with os.fdopen(fd, "wb") as f:
            # Uncompressed: Omniglot's 25 MB load in milliseconds, faster than inflating them.
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        logger.warning("Could not write cache file %s (%s); data will be decoded again.", path, err)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def cached(
    kind: str,
    key: str,
    build: Callable[[], Arrays],
    *,
    required: Iterable[str],
    enabled: bool = True,
    directory: Path | None = None,
    check: Callable[[Arrays], bool] | None = None,
    what: str | None = None,
) -> Arrays:
    """Returns the cached arrays for ``(kind, key)``, building and storing them on a miss.

    Args:
        kind: short dataset name, the file name prefix (e.g. ``"omniglot"``).
        key: from :func:`cache_key`.
        build: decodes the sources; called only on a miss.
        required: array names a valid cache file must hold.
        enabled: ``False`` always builds and writes nothing.
        directory: cache folder (default :func:`cache_dir`).
        check: extra validation of a loaded file (e.g. shapes); a failing file is rebuilt.
        what: what a miss decodes (``"Omniglot's images_background.zip"``), to say so on
            stderr before it starts; ``None`` decodes silently (a few files take no time).
    """
    required = tuple(required)
    if not enabled:
        return build()
    path = cache_path(kind, key, directory)
    arrays = load_arrays(path, required)
    if arrays is not None and check is not None and not check(arrays):
        logger.warning("Cache file %s does not match its data; rebuilding it.", path)
        arrays = None
    if arrays is not None:
        logger.debug("Loaded %s from cache %s", kind, path)
        return arrays
    if what is not None:
        # A print, not a log record: whatever logging is set up, the user must learn why the
        # first run is silent for seconds, and that later ones will not be.
        print(
            f"decoding {what} (once) into {path}; later runs read the cache",
            file=sys.stderr,
            flush=True,
        )
    arrays = build()
    save_arrays(path, arrays)
    return arrays
