"""Decoding one image file into the fixed-size ``uint8 [C, H, W]`` array every loader stores.

Every image loader (Omniglot, Lake's runs, a user's folder) goes through :func:`decode_image`, so
the same settings give the same pixels whatever the source, and the settings can be stored with a
checkpoint to convert a new task's images identically.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (Omniglot resized to 28x28 with ``PIL.Image.LANCZOS``).
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from metalearner.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""File name endings treated as images when a folder is scanned."""

_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}
# What Pillow raises on a broken, truncated or hostile file; anything else is a bug, not bad data.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)


@dataclass(frozen=True)
class ImageSettings:
    """How a raw image becomes a stored example.

    Attributes:
        size: ``(height, width)`` of the stored image.
        channels: 1 (grey) or 3 (RGB).
        invert: store ``255 - value``; Omniglot is black ink on white, and inverting it makes
            ink high and background 0, so zero-padding and rotations add no ink.
        resample: ``"lanczos"`` (as MAML) or ``"box"`` (area average, no ringing); both
            antialias when shrinking, unlike nearest-neighbour.

    Example:
        >>> ImageSettings.of(28, invert=True).size
        (28, 28)
    """

    size: tuple[int, int] = (28, 28)
    channels: int = 1
    invert: bool = False
    resample: str = "lanczos"

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"Image size {self.size} is not (height, width) with both >= 1.")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels={self.channels}: use 1 (grey) or 3 (RGB).")
        if self.resample not in _RESAMPLE:
            raise ConfigError(
                f"Unknown resampling {self.resample!r}; use one of {', '.join(_RESAMPLE)}."
            )

    @classmethod
    def of(
        cls,
        size: int | tuple[int, int],
        *,
        channels: int = 1,
        invert: bool = False,
        resample: str = "lanczos",
    ) -> ImageSettings:
        """Settings from a square side or a ``(height, width)`` pair."""
        hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return cls(hw, channels, invert, resample)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, used for cache keys and ``LabeledSet.preprocessing``."""
        return {
            "size": list(self.size),
            "channels": self.channels,
            "invert": self.invert,
            "resample": self.resample,
            "dtype": "uint8",
        }


def decode_image(
    source: bytes | Path, settings: ImageSettings, *, name: str | None = None
) -> np.ndarray:
    """Decodes one image of any size and mode into ``uint8 [C, H, W]``.

    Args:
        source: the file's bytes, or its path.
        settings: target size, channels, inversion and resampling.
        name: how to name the file in an error (defaults to the path).

    Returns:
        A new ``uint8`` array of shape ``[settings.channels, *settings.size]``.

    Raises:
        DataError: the file is not a readable image (unknown format, truncated, corrupt).

    Example:
        >>> decode_image(Path("0709_01.png"), ImageSettings.of(28, invert=True)).shape
        (1, 28, 28)
    """
    label = name if name is not None else str(source) if isinstance(source, Path) else "image"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # Pillow decodes lazily; force it so truncation is caught here.
            return _convert(ImageOps.exif_transpose(img), settings)
    except _DECODE_ERRORS as err:
        # Pillow names the in-memory buffer (<_io.BytesIO object at 0x...>), not the file.
        reason = (
            "not an image format Pillow knows"
            if isinstance(err, UnidentifiedImageError)
            else re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the file", str(err))
        )
        raise DataError(
            f"Cannot read image {label} ({reason}); replace or delete that file."
        ) from None


def convert_pixels(pixels: np.ndarray, settings: ImageSettings) -> np.ndarray:
    """An image already decoded (``uint8 [C, H, W]``, C 1 or 3: a row of a pickled dataset)
    converted as :func:`decode_image` converts a file: same channels, size, resampling, inversion.

    Example:
        >>> convert_pixels(np.zeros((3, 32, 32), np.uint8), ImageSettings.of(84, channels=3)).shape
        (3, 84, 84)
    """
    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    return _convert(img, settings)


def _convert(img: Image.Image, settings: ImageSettings) -> np.ndarray:
    """A Pillow image as the stored ``uint8 [C, H, W]``: mode, size, then inversion."""
    pixels = _to_mode(img, settings.channels)
    height, width = settings.size
    if pixels.size != (width, height):
        pixels = pixels.resize((width, height), _RESAMPLE[settings.resample])
    array = np.asarray(pixels, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if settings.invert:
        array = 255 - array
    return np.ascontiguousarray(array)


def decode_many(
    sources: Sequence[bytes | Path], settings: ImageSettings, *, names: list[str]
) -> np.ndarray:
    """Decodes a list of images into one contiguous ``uint8 [M, C, H, W]`` array."""
    out = np.empty((len(sources), settings.channels, *settings.size), dtype=np.uint8)
    for i, (source, name) in enumerate(zip(sources, names, strict=True)):
        out[i] = decode_image(source, settings, name=name)
    return out


def list_tree(source: Path) -> list[str]:
    """Sorted relative paths (``a/b/c.png``) of the files in a zip or a folder.

    Archive tools add ``.DS_Store``, ``__MACOSX/`` and ``._*`` files; they are left out.

    A link to a folder is skipped, with a warning naming it, where it points back into
    ``source`` (``c00/loop -> ..`` would list the tree again and again, and another class's
    images under this one) or out of it (the data is what lies in the folder). Skipping, not
    refusing, lets the rest of the folder load: such links are usually left by accident.

    Raises:
        DataError: ``source`` is a file but not a readable zip.
    """
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(
                f"{source} is not a readable zip ({err}); download it again or extract it."
            ) from None
    else:
        names = []
        top = os.path.realpath(source)
        # os.walk, not Path.rglob: it lists Omniglot's 32,460 files 20x faster (no stat each).
        for root, dirs, files in os.walk(source, followlinks=True):
            rel = os.path.relpath(root, source)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            dirs[:] = [d for d in dirs if _follow(source, prefix + d, top)]
            names += [prefix + f for f in files]
    return sorted(
        n for n in names if not any(p.startswith((".", "__MACOSX")) for p in n.split("/"))
    )


def _follow(source: Path, name: str, top: str) -> bool:
    """Whether :func:`list_tree` walks into ``source/name``: a real folder, not a link to a
    folder inside the tree (a loop or a second copy of a class) or outside it."""
    path = os.path.join(source, name)
    if not os.path.islink(path):
        return True
    target = os.path.realpath(path)
    inside = target == top or target.startswith(top.rstrip(os.sep) + os.sep)
    where = "back into" if inside else "out of"
    logger.warning(
        "Skipping %s: a link to %s, %s the data folder %s.", path, os.readlink(path), where, source
    )
    return False


def read_tree(source: Path, names: list[str]) -> Sequence[bytes | Path]:
    """The files ``names`` of :func:`list_tree`: their bytes from a zip, their paths in a folder."""
    if source.is_dir():
        return [source / n for n in names]
    out: list[bytes | Path] = []
    with zipfile.ZipFile(source) as z:
        for name in names:
            try:
                out.append(z.read(name))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                raise DataError(
                    f"Cannot read {name} from {source} ({err}); download the zip again."
                ) from None
    return out


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Converts any Pillow mode to ``L`` or ``RGB`` (mode ``1`` and ``P`` would resize without
    antialiasing, and 16-bit or float modes would clip)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and values.max(initial=0) <= 1.0 else 255.0
        if img.mode != "F" and values.max(initial=0) > 255:
            top = 65535.0
        img = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        # Transparent pixels are shown on white by every viewer; do the same, not black.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return img.convert("L" if channels == 1 else "RGB")
