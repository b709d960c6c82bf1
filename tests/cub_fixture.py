"""A small fake CUB-200-2011 in the official archive's layout: 200 classes of tiny JPEGs.

``CUB_200_2011.tgz`` holds ``attributes.txt`` beside the ``CUB_200_2011/`` folder, and in it
``README``, ``classes.txt`` ("<id> <NNN.Name>"), ``images.txt`` ("<id> <NNN.Name>/<file>.jpg"),
``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt`` and
``images/<NNN.Name>/<Name>_<NNNN>_<NNN>.jpg`` (the layout its README states). Every image is a
12x9 JPEG of one flat colour (so its pixels survive compression and resizing within a few
levels); every fifth class is greyscale, as a few real photographs are. Class 1 has two images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cifar_fixture import tar_gz

NAMES = {1: "Black_footed_Albatross", 2: "Laysan_Albatross", 200: "Common_Yellowthroat"}


@dataclass(frozen=True)
class FakeCub:
    """What was written, in ``images.txt`` order."""

    folder: Path
    files: dict[str, bytes]  # member name -> bytes (under CUB_200_2011/ but attributes.txt)
    images: list[str]  # "<NNN.Name>/<file>.jpg"
    colours: list[tuple[int, int, int]]  # the flat RGB colour of each image

    @property
    def archive(self) -> Path:
        return self.folder / "CUB_200_2011.tgz"


def class_folder(number: int) -> str:
    return f"{number:03d}.{NAMES.get(number, f'Bird_{number:03d}')}"


def _jpeg(colour: tuple[int, int, int], grey: bool) -> bytes:
    img = Image.new("RGB", (12, 9), colour)
    buffer = io.BytesIO()
    (img.convert("L") if grey else img).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def cub_files(
    classes: int = 200,
) -> tuple[dict[str, bytes], list[str], list[tuple[int, int, int]]]:
    """The archive's members (names as in the tgz), the images listed and their colours."""
    images, colours, jpegs = [], [], {}
    for number in range(1, classes + 1):
        folder = class_folder(number)
        for k in range(2 if number == 1 else 1):
            name = f"{folder}/{folder[4:]}_{number * 10 + k:04d}_{number}.jpg"
            colour = ((number * 37) % 256, (number * 91 + k * 50) % 256, (number * 11) % 256)
            if number % 5 == 0:  # greyscale: what the loader should see is L in every channel
                grey = round((colour[0] * 299 + colour[1] * 587 + colour[2] * 114) / 1000)
                colour = (grey, grey, grey)
            images.append(name)
            colours.append(colour)
            jpegs[name] = _jpeg(colour, grey=number % 5 == 0)
    ids = range(1, len(images) + 1)
    folder_of = {name: int(name[:3]) for name in images}
    text = {
        "README": "The Caltech-UCSD Birds-200-2011 Dataset (fixture)\n",
        "classes.txt": "".join(f"{n} {class_folder(n)}\n" for n in range(1, classes + 1)),
        "images.txt": "".join(f"{i} {name}\n" for i, name in zip(ids, images, strict=True)),
        "image_class_labels.txt": "".join(
            f"{i} {folder_of[name]}\n" for i, name in zip(ids, images, strict=True)
        ),
        "train_test_split.txt": "".join(f"{i} {i % 2}\n" for i in ids),
        "bounding_boxes.txt": "".join(f"{i} 1.0 1.0 10.0 7.0\n" for i in ids),
    }
    files = {f"CUB_200_2011/{n}": t.encode() for n, t in text.items()}
    files |= {f"CUB_200_2011/images/{n}": data for n, data in jpegs.items()}
    files["attributes.txt"] = b"1 has_bill_shape::curved_(up_or_down)\n"
    return files, images, colours


def write_fake_cub(data_dir: Path, *, form: str = "archive", classes: int = 200) -> FakeCub:
    """Writes ``data_dir/cub/CUB_200_2011.tgz`` (or the extracted folders)."""
    folder = data_dir / "cub"
    folder.mkdir(parents=True, exist_ok=True)
    files, images, colours = cub_files(classes)
    if form == "archive":
        tar_gz(folder / "CUB_200_2011.tgz", files)
    else:
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return FakeCub(folder, files, images, colours)
