"""Reading the files of a gzip tar once, front to back, with one-sentence errors.

CIFAR-100's and CUB-200-2011's official archives are ``.tar.gz`` files; a loader reads the members
it needs straight from them (no extraction, so nothing is written beside the data and no member
name can reach outside it). A gzip tar has no index: reading it front to back once is the
fast way through CUB's 1.1 GB.

References:
    Python documentation, ``tarfile`` (``TarFile.extractfile``, the errors of a damaged file).
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from metalearner.data.unpickle import is_web_page
from metalearner.errors import DataError

# What tarfile and gzip raise on a truncated, damaged or foreign file.
_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def tar_members(
    source: Path, wanted: Callable[[str], bool], *, original: str
) -> Iterator[tuple[str, bytes]]:
    """Yields ``(name, bytes)`` of the regular files of a gzip tar that ``wanted`` admits.

    Args:
        source: the ``.tar.gz`` file.
        wanted: admits a member by its name (``./`` prefixes removed).
        original: the archive's official name, for the advice in an error.

    Raises:
        DataError: ``source`` is a web page, truncated, or not a gzip tar.

    Example:
        >>> dict(tar_members(Path("cifar-100-python.tar.gz"), lambda n: n.endswith("/meta"),
        ...                  original="cifar-100-python.tar.gz")).keys()
        dict_keys(['cifar-100-python/meta'])
    """
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and wanted(name):
                    f = tar.extractfile(member)
                    yield name, f.read() if f is not None else b""
    except _ERRORS as err:
        raise DataError(f"{source} is {_fault(source, err)}; download {original} again.") from None


def _fault(source: Path, err: BaseException) -> str:
    """What is wrong with a file tarfile could not read: an HTML page, or a damaged archive."""
    try:
        with source.open("rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if is_web_page(head):
        return "a web page, not the archive (a download link answered with HTML)"
    return f"truncated or not a gzip tar ({' '.join(str(err).split())})"
