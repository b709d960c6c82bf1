"""A user's own data: image folders of any size and mode, CSV and NumPy tables, and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearner.data import folder
from metalearner.data.folder import load_image_folder, load_table
from metalearner.data.images import ImageSettings, decode_image
from metalearner.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("METALEARNER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _mixed_folder(root: Path) -> Path:
    """Three classes whose images differ in size, mode and format."""
    rgb = Image.new("RGB", (64, 48), (200, 30, 30))
    _save(rgb, root / "cat" / "a.jpg")
    _save(Image.new("L", (10, 10), 40), root / "cat" / "b.png")
    _save(Image.new("RGBA", (30, 30), (0, 0, 255, 0)), root / "dog" / "c.png")
    _save(rgb.convert("P"), root / "dog" / "d.gif")
    _save(Image.new("1", (105, 105), 1), root / "dog" / "e.bmp")
    wide = Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16))
    _save(wide, root / "emu" / "f.png")
    (root / "emu" / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()
    return root


def test_folder_of_mixed_images_becomes_one_uint8_tensor(tmp_path: Path) -> None:
    data = load_image_folder(_mixed_folder(tmp_path / "pets"), size=16)
    assert data.x.shape == (6, 1, 16, 16) and data.x.dtype == torch.uint8
    assert data.class_names == ("cat", "dog", "emu")
    assert data.counts().tolist() == [2, 3, 1]
    assert data.preprocessing["channels"] == 1
    # Transparent pixels show as white; 16-bit white stays white rather than clipping oddly.
    dog = data.x[data.y == 1]
    assert int(dog[0].min()) == 255 and int(data.x[data.y == 2].min()) == 255


def test_channels_size_and_inversion(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "pets")
    rgb = load_image_folder(root, size=(12, 20), channels=3)
    assert rgb.x.shape == (6, 3, 12, 20)
    red = rgb.x[0, :, 6, 10].tolist()
    assert red[0] > 150 and red[1] < 80  # the JPEG's red survives
    inverted = load_image_folder(root, size=(12, 20), invert=True)
    plain = load_image_folder(root, size=(12, 20))
    assert torch.equal(inverted.x, 255 - plain.x)


def test_second_load_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mixed_folder(tmp_path / "pets")
    first = load_image_folder(root, size=16)

    def fail(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder, "decode_many", fail)
    assert torch.equal(load_image_folder(root, size=16).x, first.x)
    _save(Image.new("L", (8, 8), 0), root / "emu" / "g.png")  # a new image: a new key
    with pytest.raises(AssertionError, match="decoded again"):
        load_image_folder(root, size=16)


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_image_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders with images; make one sub-folder"):
        load_image_folder(tmp_path / "empty")
    _save(Image.new("L", (8, 8)), tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "flat")


def test_class_folder_without_images_is_named(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "pets")
    (root / "fox").mkdir()
    (root / "fox" / "readme.txt").write_text("soon")
    with pytest.raises(DataError, match=r"Class folder .*pets/fox has no images"):
        load_image_folder(root)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_is_named(tmp_path: Path, damage: str) -> None:
    root = _mixed_folder(tmp_path / "pets")
    good = (root / "cat" / "b.png").read_bytes()
    bad = root / "cat" / "broken.png"
    bad.write_bytes(b"no image here" if damage == "garbage" else good[: len(good) // 2])
    with pytest.raises(DataError, match=rf"Cannot read image {bad}.*replace or delete") as err:
        load_image_folder(root)
    assert "BytesIO" not in str(err.value)  # the file is named, not Pillow's in-memory buffer


def test_a_dangling_link_is_named_with_its_target(tmp_path: Path) -> None:
    root = _mixed_folder(tmp_path / "pets")
    (root / "cat" / "gone.png").symlink_to(tmp_path / "moved.png")
    with pytest.raises(
        DataError, match=r"pets/cat/gone\.png is a link to .*moved\.png, which does"
    ):
        load_image_folder(root)


def test_decode_image_from_bytes_and_settings() -> None:
    buffer = io.BytesIO()
    Image.new("LA", (50, 40), (0, 255)).save(buffer, format="PNG")
    array = decode_image(buffer.getvalue(), ImageSettings.of((5, 7), channels=3))
    assert array.shape == (3, 5, 7) and array.dtype == np.uint8 and int(array.max()) == 0
    with pytest.raises(DataError, match=r"Cannot read image upload\.png"):
        decode_image(b"junk", ImageSettings(), name="upload.png")
    with pytest.raises(ConfigError, match="channels=2"):
        ImageSettings(channels=2)
    with pytest.raises(ConfigError, match="Unknown resampling 'nearest'"):
        ImageSettings(resample="nearest")


# --- tables ------------------------------------------------------------------------------------


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_csv_with_named_labels(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x1,label,x2\n1,b,2\n3.5,a,-4\n\n0,b,1e-3\n")
    data = load_table(path)
    assert data.x.dtype == torch.float32 and data.x.shape == (3, 2)
    assert data.x[1].tolist() == [3.5, -4.0]
    assert data.class_names == ("a", "b") and data.y.tolist() == [1, 0, 1]


def test_csv_numeric_labels_sort_as_numbers_and_label_column_is_configurable(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path, "f,y\n1,10\n2,2\n3,10\n")
    data = load_table(path, label="y")
    assert data.class_names == ("2", "10") and data.y.tolist() == [1, 0, 1]


def test_csv_without_label_column_lists_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b,c\n1,2,3\n")
    with pytest.raises(
        DataError, match=r"no label column 'label' \(its columns are a, b, c\)"
    ) as err:
        load_table(path)
    assert str(err.value).endswith("rename the column that holds the class labels to 'label'.")


def test_ragged_csv_row_names_the_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, "x,label\n1,a\n2,b,9\n")
    with pytest.raises(DataError, match=r"table\.csv line 3 has 3 values but the header has 2"):
        load_table(path)


@pytest.mark.parametrize("value", ["abc", "", "nan"])
def test_non_numeric_feature_names_line_and_column(tmp_path: Path, value: str) -> None:
    path = _csv(tmp_path, f"x,z,label\n1,2,a\n3,{value},b\n")
    with pytest.raises(DataError, match=r"line 3, column 'z' is .*not a finite number"):
        load_table(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("x,label\n", "no rows"), ("label\na\n", "only the label column")],
)
def test_csv_without_data(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_table(_csv(tmp_path, text))


def test_npz_table(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, x=np.arange(12, dtype=np.int64).reshape(4, 3), y=np.array(["u", "v", "u", "w"]))
    data = load_table(path)
    assert data.x.dtype == torch.float32 and data.x.shape == (4, 3)
    assert data.class_names == ("u", "v", "w") and data.y.tolist() == [0, 1, 0, 2]


def test_bad_npz_tables(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, features=np.zeros((2, 2)))
    with pytest.raises(DataError, match="holds features, not x and y"):
        load_table(path)
    np.savez(path, x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="one label per row"):
        load_table(path)
    np.savez(path, x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match=r"t\.npz holds object arrays, which are not loaded"):
        load_table(path)  # object arrays need pickle, which is never allowed
    for text in (b"hello", b"", b"PK\x03\x04 torn"):
        path.write_bytes(text)  # numpy would say it "contains pickled (object) data"
        with pytest.raises(DataError, match=r"t\.npz is not a valid \.npz file"):
            load_table(path)
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(path)  # one array, not an archive of x and y
    with pytest.raises(DataError, match=r"t\.npz is not a valid \.npz file"):
        load_table(path)
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "absent.csv")
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"neither \.csv nor \.npz"):
        load_table(tmp_path / "t.parquet")
