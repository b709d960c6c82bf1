"""A small fake Omniglot in the original layout (zips or folders), with real 1-bit PNGs.

Every drawing is a 105x105 mode-"1" PNG, black ink on white like the real files: a filled
rectangle whose place and size identify the character, shifted a little per drawer. Tests build it
in ``tmp_path``; the real data is never copied.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

BACKGROUND = {"Alpha": 4, "Beta": 3, "Gamma": 3}
EVALUATION = {"Delta": 3, "Epsilon_(Old)": 2}


@dataclass(frozen=True)
class FakeOmniglot:
    """What was written, to compare a loader's output against."""

    data_dir: Path
    background: dict[str, int] = field(default_factory=lambda: dict(BACKGROUND))
    evaluation: dict[str, int] = field(default_factory=lambda: dict(EVALUATION))
    drawings: int = 4

    @property
    def folder(self) -> Path:
        return self.data_dir / "omniglot"

    @property
    def num_background(self) -> int:
        return sum(self.background.values())

    @property
    def num_classes(self) -> int:
        return self.num_background + sum(self.evaluation.values())

    @property
    def num_images(self) -> int:
        return self.num_classes * self.drawings

    def class_names(self) -> list[str]:
        """In the loader's order: background then evaluation, each sorted."""
        out = []
        for half in (self.background, self.evaluation):
            out += [f"{a}/character{c:02d}" for a in sorted(half) for c in range(1, half[a] + 1)]
        return out


def drawing(index: int, drawer: int) -> Image.Image:
    """Character ``index`` drawn by ``drawer``: a 105x105 mode-"1" PNG image, ink black (0)."""
    img = Image.new("1", (105, 105), 1)
    x0, y0 = 10 + (index * 7) % 40, 10 + (index * 13) % 40
    w, h = 30 + index % 4 * 5, 30 + index % 3 * 5
    shift = drawer % 3
    ImageDraw.Draw(img).rectangle([x0 + shift, y0, x0 + shift + w, y0 + h], fill=0)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def half_files(alphabets: dict[str, int], drawings: int, first_id: int) -> dict[str, bytes]:
    """``<Alphabet>/characterNN/<id>_<drawer>.png`` -> PNG bytes for one half."""
    files, index = {}, first_id
    for alphabet in sorted(alphabets):
        for c in range(1, alphabets[alphabet] + 1):
            for d in range(1, drawings + 1):
                name = f"{alphabet}/character{c:02d}/{index:04d}_{d:02d}.png"
                files[name] = png_bytes(drawing(index, d))
            index += 1
    return files


def zip_tree(path: Path, files: dict[str, bytes], *, prefix: str = "") -> Path:
    """Writes ``files`` into a zip under ``prefix`` with directory entries, as the originals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        folders = sorted({prefix + n.rsplit("/", i)[0] + "/" for n in files for i in (1, 2)})
        for folder in ([prefix] if prefix else []) + folders:
            z.writestr(folder, b"")
        for name, data in sorted(files.items()):
            z.writestr(prefix + name, data)
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_fake_omniglot(
    data_dir: Path,
    *,
    form: str = "zip",
    drawings: int = 4,
    background: dict[str, int] | None = None,
    evaluation: dict[str, int] | None = None,
) -> FakeOmniglot:
    """Writes ``data_dir/omniglot/images_{background,evaluation}`` as zips or folders
    (alphabet name -> characters; the module's defaults unless given)."""
    fake = FakeOmniglot(
        data_dir,
        background=dict(background or BACKGROUND),
        evaluation=dict(evaluation or EVALUATION),
        drawings=drawings,
    )
    halves = {
        "images_background": half_files(fake.background, drawings, 1),
        "images_evaluation": half_files(fake.evaluation, drawings, fake.num_background + 1),
    }
    for half, files in halves.items():
        if form == "zip":
            zip_tree(fake.folder / f"{half}.zip", files, prefix=f"{half}/")
        else:
            write_tree(fake.folder / half, files)
    return fake


def runs_files(runs: int, ways: int) -> tuple[dict[str, bytes], dict[tuple[int, int], int]]:
    """Lake-style runs: files, and ``(run, item) -> class`` (1-based) as written in the labels.

    Test item ``i`` of a run is another copy of the drawing of its class, so a correct loader
    pairs every query with an identical support image.
    """
    files: dict[str, bytes] = {}
    answers: dict[tuple[int, int], int] = {}
    for r in range(1, runs + 1):
        lines = []
        for item in range(1, ways + 1):
            cls = (ways - item + r) % ways + 1  # a permutation of 1..ways, different per run
            answers[r, item] = cls
            files[f"run{r:02d}/test/item{item:02d}.png"] = png_bytes(drawing(r * 100 + cls, 1))
            lines.append(
                f"run{r:02d}/test/item{item:02d}.png run{r:02d}/training/class{cls:02d}.png"
            )
        for cls in range(1, ways + 1):
            files[f"run{r:02d}/training/class{cls:02d}.png"] = png_bytes(drawing(r * 100 + cls, 1))
        files[f"run{r:02d}/class_labels.txt"] = ("\n".join(lines) + "\n").encode()
    return files, answers


def write_fake_runs(
    data_dir: Path, *, runs: int = 3, ways: int = 5, form: str = "zip"
) -> dict[tuple[int, int], int]:
    """Writes ``data_dir/omniglot/all_runs.zip`` (or ``all_runs/``); returns the answers."""
    files, answers = runs_files(runs, ways)
    folder = data_dir / "omniglot"
    if form == "zip":
        zip_tree(folder / "all_runs.zip", files)
    else:
        write_tree(folder / "all_runs", files)
    return answers


def copy_md5(source: Path, dest: Path) -> str:
    """Copies ``source`` to ``dest`` and returns its md5 (to override the original checksum)."""
    shutil.copyfile(source, dest)
    return hashlib.md5(dest.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serves ``folder`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for one, and 0.5 s per test adds up.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
