"""CUB-200-2011 from the official archive's layout: Chen et al.'s split, RGB pixels, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cifar_fixture import tar_gz
from cub_fixture import FakeCub, cub_files, write_fake_cub
from metalearner.data.cub import load_cub
from metalearner.errors import DataError

# Each test decodes into a cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture
def fake(tmp_path: Path) -> FakeCub:
    return write_fake_cub(tmp_path / "data")


def test_chen_split_is_100_50_50_by_folder_number(fake: FakeCub) -> None:
    data, split = load_cub(fake.folder.parent, size=16)
    assert split.sizes() == {"train": 100, "val": 50, "test": 50}
    # write_CUB_filelist.py: folder i (from 0, sorted) is base if i % 2 == 0, val if i % 4 == 1,
    # novel if i % 4 == 3; folder NNN is i = NNN - 1.
    number = {image.split("/")[0][4:]: int(image[:3]) for image in fake.images}
    numbers = {s: {number[data.class_names[c]] for c in split[s].tolist()} for s in split.sizes()}
    assert numbers["train"] == set(range(1, 201, 2))
    assert numbers["val"] == set(range(2, 201, 4)) and numbers["test"] == set(range(4, 201, 4))
    assert data.class_names[0] == "Black_footed_Albatross" and data.name == "cub"


def test_images_are_rgb_in_images_txt_order_greyscale_included(fake: FakeCub) -> None:
    data, _ = load_cub(fake.folder.parent, size=16)
    assert data.x.shape == (201, 3, 16, 16) and data.x.dtype == torch.uint8
    expected = torch.tensor(fake.colours, dtype=torch.float32)[:, :, None, None]
    # Flat JPEGs decode within a few levels of their colour, resized or not.
    assert (data.x.float() - expected).abs().max() <= 4
    grey = [i for i, name in enumerate(fake.images) if int(name[:3]) % 5 == 0]
    assert torch.equal(data.x[grey, 0], data.x[grey, 1]) and torch.equal(
        data.x[grey, 1], data.x[grey, 2]
    )
    assert data.y.tolist() == [int(name[:3]) - 1 for name in fake.images]
    assert data.preprocessing["channels"] == 3


def test_default_side_is_84_and_the_folder_matches_the_archive(tmp_path: Path) -> None:
    archive = write_fake_cub(tmp_path / "a")
    folder = write_fake_cub(tmp_path / "b", form="folder")
    from_archive, _ = load_cub(archive.folder.parent, use_cache=False)
    from_folder, _ = load_cub(folder.folder.parent, use_cache=False)
    assert from_archive.x.shape == (201, 3, 84, 84)
    assert torch.equal(from_archive.x, from_folder.x) and torch.equal(from_archive.y, from_folder.y)


def test_missing_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_cub(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cub") in message and "CUB_200_2011.tgz" in message
    assert "--download" in message and "METALEARNER_DATA" in message


def test_truncated_archive_is_refused(fake: FakeCub) -> None:
    size = fake.archive.stat().st_size
    fake.archive.write_bytes(fake.archive.read_bytes()[: size * 2 // 3])
    with pytest.raises(DataError, match=r"is truncated or not a gzip tar .*download CUB_200_2011"):
        load_cub(fake.folder.parent, size=16)


def test_missing_index_file_or_image_is_named(tmp_path: Path) -> None:
    files, images, _ = cub_files()
    del files["CUB_200_2011/images.txt"]
    (tmp_path / "a" / "cub").mkdir(parents=True)
    tar_gz(tmp_path / "a" / "cub" / "CUB_200_2011.tgz", files)
    with pytest.raises(DataError, match=r"CUB_200_2011/images.txt in .* is missing"):
        load_cub(tmp_path / "a", size=16)
    folder = write_fake_cub(tmp_path / "b", form="folder")
    (folder.folder / "CUB_200_2011" / "images" / images[7]).unlink()
    with pytest.raises(DataError, match=rf"{images[7]}, listed in images.txt, is missing"):
        load_cub(tmp_path / "b", size=16)


def test_a_binary_index_file_is_one_sentence(tmp_path: Path) -> None:
    fake = write_fake_cub(tmp_path, form="folder")
    (fake.folder / "CUB_200_2011" / "classes.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match=r"classes.txt is not a text file; use the original"):
        load_cub(fake.folder.parent, size=16)


def test_an_index_of_other_than_200_classes_is_refused(tmp_path: Path) -> None:
    fake = write_fake_cub(tmp_path, form="folder", classes=199)
    with pytest.raises(DataError, match=r"classes.txt does not list classes 1..200 .*199 lines"):
        load_cub(fake.folder.parent, size=16)


def test_web_page_instead_of_the_archive_is_refused(fake: FakeCub) -> None:
    fake.archive.write_bytes(b"\n<!doctype html><title>CaltechDATA</title>")
    with pytest.raises(DataError, match=r"is a web page, not the archive"):
        load_cub(fake.folder.parent, size=16)
