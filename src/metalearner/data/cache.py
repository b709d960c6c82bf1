"""Files on disk: downloads checked by md5, and decoded datasets cached as ``.npz``.

Decoding 32,460 Omniglot PNGs takes seconds; loading their decoded ``uint8`` tensor takes a
fraction of one. The cache key is the sha256 of the source bytes and the decode settings, so a
changed file or setting is a different key, never a stale hit. The cache lives outside the data
folder (which may be read-only), is written atomically, and a broken cache file is rebuilt. A
dataset that takes seconds to decode says so in one line on stderr the first time, with where
its cache goes; later loads say nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    """Downloads ``url`` to ``dest``, resuming a cut download; keeps it only if its md5 is ``md5``.

    The bytes go to ``<dest>.part`` beside ``dest``, renamed once the whole file's checksum
    matches, so nothing incomplete is ever seen under the final name. A connection cut midway
    keeps the part; the next call asks for the rest (``Range: bytes=N-``) and appends it when the
    server answers 206, or starts over when it answers 200 (no ranges). A part whose checksum
    fails is deleted, so a retry starts afresh.

    Raises:
        DataError: the server is unreachable or answers an error, the connection was cut (run
            again to resume), or the md5 differs.

    References:
        RFC 9110, section 14 (range requests: ``Range``, ``206 Partial Content``,
        ``Content-Range``, ``416 Range Not Satisfiable``).
    """
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _part_lock(part, url):
            _fetch_part(url, dest, part, md5=md5, timeout=timeout)
    except (urllib.error.URLError, HTTPException, OSError) as err:
        reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) else err
        reason = getattr(reason, "reason", reason)
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()  # nothing arrived: leave no trace
        raise DataError(
            f"Could not download {url} to {dest} ({reason}); check the connection, or download "
            f"it by hand to {dest}."
        ) from None


def fetch_missing(dest: Path, url: str, *, md5: str, timeout: float = 60.0) -> Path:
    """``dest``, downloaded with :func:`fetch` first unless it is there (a dataset's archive)."""
    if not dest.exists():
        fetch(url, dest, md5=md5, timeout=timeout)
    return dest


@contextlib.contextmanager
def _part_lock(part: Path, url: str) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``part`` (made if missing) while a download writes it, so
    two processes never append to one part; the second is refused in one sentence."""
    with part.open("ab") as handle:
        try:
            import fcntl  # POSIX; elsewhere a download is not guarded against a second one

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except BlockingIOError:
            raise DataError(
                f"Another process is downloading {url} to {part}; wait for it to finish, then "
                "run this again."
            ) from None
        yield


def _fetch_part(url: str, dest: Path, part: Path, *, md5: str, timeout: float) -> None:
    """:func:`fetch`'s work, under the part's lock."""
    have = part.stat().st_size
    complete, total = _download(url, part, have, timeout=timeout)
    if not complete:
        of = f" of {total}" if total is not None else ""
        raise DataError(
            f"The download of {url} was cut off after {part.stat().st_size}{of} bytes; run the "
            f"same command again to resume it from {part}."
        )
    digest = _md5(part)
    if digest != md5:
        part.unlink()
        raise DataError(
            f"The download of {url} has md5 {digest}, not the expected {md5}; retry, or "
            f"download it by hand to {dest}."
        )
    os.replace(part, dest)


def _download(url: str, part: Path, have: int, *, timeout: float) -> tuple[bool, int | None]:
    """Writes ``url`` into ``part`` (appending after its first ``have`` bytes where the server
    sends only the rest): whether the whole file arrived, and its size if the server said it."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if have and err.code == 416:  # the part already holds every byte: its md5 decides
            return True, None
        raise
    with response:
        append = have > 0 and response.status == 206
        first = _range_start(response.headers.get("Content-Range")) if append else 0
        if append and first != have:
            part.unlink()  # the next try starts over rather than append at the wrong place
            raise urllib.error.URLError(f"the server resent bytes from {first}, not {have}")
        length = response.headers.get("Content-Length")
        total = first + int(length) if length and length.isdigit() else None
        logger.info("Downloading %s to %s%s", url, part, f" from byte {have}" if append else "")
        with part.open("ab" if append else "wb") as f:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
            except (HTTPException, ConnectionError, TimeoutError):
                return False, total  # cut midway: what arrived is kept, to resume from
            size = f.tell()
    # http.client ends a body cut short without an error: only its announced length tells.
    return total is None or size >= total, total


def _range_start(content_range: str | None) -> int:
    """The first byte of ``Content-Range: bytes FIRST-LAST/TOTAL`` (-1 if unreadable)."""
    try:
        return int((content_range or "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _md5(path: Path) -> str:
    """The md5 of a file's bytes, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
