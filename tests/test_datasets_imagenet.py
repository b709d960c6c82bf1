"""mini- and tiered-ImageNet loaders: each form that circulates, read or refused in one sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imagenet_fixture import (
    CACHE_FILES,
    CATEGORY_FILES,
    MINI_CLASSES,
    MINI_FORMS,
    PER_CLASS,
    TIERED_CLASSES,
    write_fake_mini,
    write_fake_tiered,
)
from metalearner.data import pixel_arrays
from metalearner.data.images import ImageSettings, decode_image
from metalearner.data.mini_imagenet import load_mini_imagenet
from metalearner.data.tiered_imagenet import load_tiered_imagenet
from metalearner.errors import DataError
from pickle_fixture import HTML, planted_pickle

SPLIT_SIZES = {s: len(c) for s, c in MINI_CLASSES.items()}


# Each test decodes into a cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("own_cache")


def _ids(split: torch.Tensor) -> list[int]:
    return split.tolist()


# --- mini-ImageNet ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", MINI_FORMS)
def test_each_mini_form_gives_the_ravi_classes_and_the_pixels_written(
    form: str, tmp_path: Path
) -> None:
    fake = write_fake_mini(tmp_path / "data", form=form)
    data, split = load_mini_imagenet(fake.data_dir)
    assert list(data.class_names) == fake.class_names()
    assert split.sizes() == SPLIT_SIZES
    assert [data.class_names[i] for i in _ids(split.val)] == sorted(MINI_CLASSES["val"])
    assert [data.class_names[i] for i in _ids(split.test)] == sorted(MINI_CLASSES["test"])
    assert data.x.dtype == torch.uint8 and data.x.shape == (7 * PER_CLASS, 3, 84, 84)
    assert data.y.tolist() == [c for c in range(7) for _ in range(PER_CLASS)]
    assert np.array_equal(data.x.numpy(), fake.images())
    assert data.name == "mini-imagenet" and data.groups == ()
    assert data.preprocessing == ImageSettings.of(84, channels=3).as_dict()


def test_the_three_mini_forms_give_one_tensor_also_when_resized(tmp_path: Path) -> None:
    loaded = [
        load_mini_imagenet(write_fake_mini(tmp_path / form, form=form).data_dir, size=40)[0]
        for form in MINI_FORMS
    ]
    assert loaded[0].x.shape == (7 * PER_CLASS, 3, 40, 40)
    for other in loaded[1:]:
        assert torch.equal(other.x, loaded[0].x) and torch.equal(other.y, loaded[0].y)
        assert other.class_names == loaded[0].class_names
    # And the resized pixels are those of a JPEG decoded and resized on its own.
    fake = write_fake_mini(tmp_path / "again", form="ravi")
    name, data = fake.jpegs[MINI_CLASSES["train"][0]][0]
    one = decode_image(data, ImageSettings.of(40, channels=3), name=name)
    assert np.array_equal(loaded[0].x[0].numpy(), one)


def test_the_first_whole_form_is_read_and_the_others_left_alone(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="ravi")
    (fake.folder / CACHE_FILES["train"]).write_bytes(b"not read")  # a later form, incomplete
    data, _ = load_mini_imagenet(fake.data_dir)
    assert np.array_equal(data.x.numpy(), fake.images())


def test_learn2learns_validation_name_is_read(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="cache")
    val = fake.folder / CACHE_FILES["val"]
    val.rename(fake.folder / "mini-imagenet-cache-validation.pkl")
    _, split = load_mini_imagenet(fake.data_dir)
    assert split.sizes() == SPLIT_SIZES


def test_a_second_load_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = write_fake_mini(tmp_path / "data", form="category-split")
    first, _ = load_mini_imagenet(fake.data_dir)

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted images although the cache should have been used")

    monkeypatch.setattr("metalearner.data.mini_imagenet.fill", no_conversion)
    again, _ = load_mini_imagenet(fake.data_dir)
    assert torch.equal(first.x, again.x)


def test_no_mini_files_says_where_they_belong(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not in .*mini-imagenet: put there Ravi") as err:
        load_mini_imagenet(tmp_path)
    assert "mini-imagenet-cache-{train,val,test}.pkl" in str(err.value)
    with pytest.raises(DataError, match="there is no download"):
        load_mini_imagenet(tmp_path, download=True)


@pytest.mark.parametrize(
    ("form", "gone"),
    [
        ("ravi", "val.csv"),
        ("cache", CACHE_FILES["test"]),
        ("category-split", CATEGORY_FILES["train"]),
    ],
)
def test_a_missing_file_of_a_form_is_named_with_its_folder(
    form: str, gone: str, tmp_path: Path
) -> None:
    fake = write_fake_mini(tmp_path / "data", form=form)
    (fake.folder / gone).unlink()
    with pytest.raises(DataError, match=rf"{gone}.* is missing from .*mini-imagenet"):
        load_mini_imagenet(fake.data_dir)


def test_an_image_the_split_file_lists_but_the_folder_lacks_is_named(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="ravi")
    name = fake.jpegs[MINI_CLASSES["test"][1]][2][0]
    (fake.folder / "images" / name).unlink()
    with pytest.raises(DataError, match=rf"{name}, listed in .*test\.csv, is not in"):
        load_mini_imagenet(fake.data_dir)


@pytest.mark.parametrize("form", ["cache", "category-split"])
def test_a_truncated_pickle_is_refused_by_name(form: str, tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form=form)
    path = fake.folder / (CACHE_FILES if form == "cache" else CATEGORY_FILES)["val"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{path.name} is truncated; download it again"):
        load_mini_imagenet(fake.data_dir)


def test_a_web_page_under_a_pickles_name_is_refused(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="cache")
    (fake.folder / CACHE_FILES["train"]).write_bytes(HTML)
    with pytest.raises(DataError, match=r"cache-train\.pkl is a web page, not a pickle"):
        load_mini_imagenet(fake.data_dir)


def test_a_planted_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="cache")
    marker = tmp_path / "ran"
    (fake.folder / CACHE_FILES["test"]).write_bytes(planted_pickle(marker))
    with pytest.raises(DataError, match=r"cache-test\.pkl names .*system, which is not data"):
        load_mini_imagenet(fake.data_dir)
    assert not marker.exists()


def test_files_of_swapped_splits_are_refused_by_ravis_lists(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="cache")
    val, test = fake.folder / CACHE_FILES["val"], fake.folder / CACHE_FILES["test"]
    val_bytes = val.read_bytes()
    val.write_bytes(test.read_bytes())
    test.write_bytes(val_bytes)
    with pytest.raises(
        DataError, match=r"cache-val\.pkl holds n01930112, a class of the test split"
    ):
        load_mini_imagenet(fake.data_dir)


def test_malformed_pickles_are_refused_by_name(tmp_path: Path) -> None:
    import pickle

    fake = write_fake_mini(tmp_path / "data", form="category-split")
    path = fake.folder / CATEGORY_FILES["test"]
    data = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(pickle.dumps({**data, "labels": data["labels"][:-1]}, protocol=2))
    with pytest.raises(DataError, match=rf"{path.name} holds {2 * PER_CLASS} images but 7 labels"):
        load_mini_imagenet(fake.data_dir)
    path.write_bytes(pickle.dumps({**data, "data": data["data"].astype(np.float32)}, protocol=2))
    with pytest.raises(DataError, match=r"holds a float32 array of shape \[8, 84, 84, 3\]"):
        load_mini_imagenet(fake.data_dir)
    path.write_bytes(pickle.dumps({"data": data["data"]}, protocol=2))
    with pytest.raises(DataError, match=r"holds a dict without labels, catname2label"):
        load_mini_imagenet(fake.data_dir)


# --- tiered-ImageNet -------------------------------------------------------------------------


def test_tiered_ren_labels_give_classes_superclasses_and_pixels(tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data", form="ren")
    data, split = load_tiered_imagenet(fake.data_dir)
    named = [c for s in ("train", "val", "test") for c in TIERED_CLASSES[s]]
    assert list(data.class_names) == [name for name, _ in named]
    assert list(data.groups) == [group for _, group in named]
    assert split.sizes() == {"train": 3, "val": 2, "test": 2}
    assert _ids(split.train) == [0, 1, 2] and _ids(split.test) == [5, 6]
    assert data.y.tolist() == [c for c in range(7) for _ in range(PER_CLASS)]
    assert data.x.shape == (7 * PER_CLASS, 3, 84, 84)
    assert np.array_equal(data.x.numpy(), fake.all_images())
    assert data.name == "tiered-imagenet"


def test_tiered_metaoptnet_labels_give_the_same_images_named_by_label(tmp_path: Path) -> None:
    ren, _ = load_tiered_imagenet(write_fake_tiered(tmp_path / "a", form="ren").data_dir, size=32)
    fake = write_fake_tiered(tmp_path / "b", form="metaoptnet")
    data, split = load_tiered_imagenet(fake.data_dir, size=32)
    assert data.class_names[:4] == ("train/0", "train/1", "train/2", "val/3")
    assert data.groups == () and split.sizes() == {"train": 3, "val": 2, "test": 2}
    assert data.x.shape == (7 * PER_CLASS, 3, 32, 32)
    assert torch.equal(data.x, ren.x) and torch.equal(data.y, ren.y)


def test_tiered_converts_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixel_arrays, "BLOCK", 3)  # blocks that straddle classes
    monkeypatch.setattr("metalearner.data.tiered_imagenet.BLOCK", 3)
    fake = write_fake_tiered(tmp_path / "data")
    data, _ = load_tiered_imagenet(fake.data_dir, use_cache=False)
    assert np.array_equal(data.x.numpy(), fake.all_images())


def test_a_missing_tiered_file_is_named_with_its_folder(tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data")
    (fake.folder / "val_labels.pkl").unlink()
    with pytest.raises(DataError, match=r"val_labels\.pkl is not in .*tiered-imagenet: put"):
        load_tiered_imagenet(fake.data_dir)


@pytest.mark.parametrize("damage", ["truncated", "web page"])
def test_a_broken_tiered_npz_is_refused_by_name(damage: str, tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data")
    path = fake.folder / "test_images.npz"
    path.write_bytes(path.read_bytes()[:-200] if damage == "truncated" else HTML)
    with pytest.raises(DataError, match=r"test_images\.npz is not a readable \.npz of images"):
        load_tiered_imagenet(fake.data_dir)


def test_broken_tiered_labels_are_refused_by_name(tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data")
    path = fake.folder / "train_labels.pkl"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"train_labels\.pkl is truncated"):
        load_tiered_imagenet(fake.data_dir)
    path.write_bytes(HTML)
    with pytest.raises(DataError, match=r"train_labels\.pkl is a web page"):
        load_tiered_imagenet(fake.data_dir)
    marker = tmp_path / "ran"
    path.write_bytes(planted_pickle(marker))
    with pytest.raises(DataError, match=r"train_labels\.pkl names .*system, which is not data"):
        load_tiered_imagenet(fake.data_dir)
    assert not marker.exists()


def test_tiered_labels_that_disagree_with_the_images_are_refused(tmp_path: Path) -> None:
    import pickle

    fake = write_fake_tiered(tmp_path / "data")
    path = fake.folder / "val_labels.pkl"
    labels = pickle.loads(path.read_bytes(), encoding="latin1")
    short = {k: labels[k][:-1] for k in ("label_specific", "label_general")}
    path.write_bytes(pickle.dumps({**labels, **short}, protocol=2))
    with pytest.raises(DataError, match=r"val_labels\.pkl labels 7 images but val_images"):
        load_tiered_imagenet(fake.data_dir)
    general = labels["label_general"].copy()
    general[0] = 1  # one image of class 0 in another superclass
    path.write_bytes(
        pickle.dumps(
            {**labels, "label_general": general, "label_general_str": ["bird", "x"]}, protocol=2
        )
    )
    with pytest.raises(DataError, match=r"puts class n01530575 in several superclasses"):
        load_tiered_imagenet(fake.data_dir)


def test_a_binary_split_file_is_one_sentence(tmp_path: Path) -> None:
    fake = write_fake_mini(tmp_path / "data", form="ravi")
    (fake.folder / "val.csv").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(DataError, match=r"val\.csv is not a text split file .*use the original"):
        load_mini_imagenet(fake.data_dir)


def test_tiered_files_of_one_split_copied_into_another_are_refused(tmp_path: Path) -> None:
    # The splits are disjoint by superclass: test files copied from train would score test
    # tasks on training classes.
    fake = write_fake_tiered(tmp_path / "data")
    for kind in ("labels.pkl", "images.npz"):
        (fake.folder / f"test_{kind}").write_bytes((fake.folder / f"train_{kind}").read_bytes())
    with pytest.raises(DataError, match=r"test_labels\.pkl and the train labels share the super"):
        load_tiered_imagenet(fake.data_dir)


def test_new_tiered_images_are_decoded_anew_also_compressed(tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data")
    before, _ = load_tiered_imagenet(fake.data_dir)
    brighter = np.minimum(fake.images["train"].astype(np.int64) + 9, 255).astype(np.uint8)
    np.savez_compressed(fake.folder / "train_images.npz", images=brighter)  # same size, new CRC
    after, _ = load_tiered_imagenet(fake.data_dir)
    assert np.array_equal(after.x[: len(brighter)].numpy(), brighter.transpose(0, 3, 1, 2))
    assert torch.equal(after.x[len(brighter) :], before.x[len(brighter) :])


def test_rens_png_pickles_alone_are_named_with_how_to_decompress_them(tmp_path: Path) -> None:
    fake = write_fake_tiered(tmp_path / "data")
    (fake.folder / "train_images.npz").rename(fake.folder / "train_images_png.pkl")
    with pytest.raises(DataError, match=r"train_images\.npz is not in .*compress_tiered_imagenet"):
        load_tiered_imagenet(fake.data_dir)
