"""CIFAR-FS and FC100 from CIFAR-100's official python archive: splits, pixels, refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_fixture import COARSE, FINE, SUPERCLASS_OF, FakeCifar100, write_fake_cifar100
from metalearner.data import cifar100
from metalearner.data.cifar import load_cifar_fs, load_fc100
from metalearner.errors import DataError
from pickle_fixture import planted_pickle

# Bertinetto et al.'s lists (bertinetto/r2d2, cifar-fs_splits/{val,test}.txt), typed out here
# as the reference the shipped lists are checked against.
CIFAR_FS_VAL = {
    "otter", "motorcycle", "television", "lamp", "crocodile", "shark", "butterfly", "beaver",
    "beetle", "tractor", "flatfish", "maple_tree", "camel", "crab", "sea", "cattle",
}  # fmt: skip
CIFAR_FS_TEST = {
    "baby", "bed", "bicycle", "chimpanzee", "fox", "leopard", "man", "pickup_truck", "plain",
    "poppy", "rocket", "rose", "snail", "sweet_pepper", "table", "telephone", "wardrobe", "whale",
    "woman", "worm",
}  # fmt: skip
# Oreshkin et al. 2018, appendix: superclass labels {8, 11, 13, 16} and {0, 7, 12, 14}.
FC100_VAL = {"large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
             "small_mammals"}  # fmt: skip
FC100_TEST = {"aquatic_mammals", "insects", "medium_mammals", "people"}


# Each test decodes into a cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture
def fake(tmp_path: Path) -> FakeCifar100:
    return write_fake_cifar100(tmp_path / "data")


def _names(data_names: tuple[str, ...], ids: torch.Tensor) -> set[str]:
    return {data_names[i] for i in ids.tolist()}


def test_cifar_fs_has_bertinetto_s_64_16_20_classes(fake: FakeCifar100) -> None:
    data, split = load_cifar_fs(fake.folder.parent)
    assert split.sizes() == {"train": 64, "val": 16, "test": 20}
    assert _names(data.class_names, split.val) == CIFAR_FS_VAL
    assert _names(data.class_names, split.test) == CIFAR_FS_TEST
    assert _names(data.class_names, split.train) == set(FINE) - CIFAR_FS_VAL - CIFAR_FS_TEST
    everything = torch.cat([split.train, split.val, split.test])
    assert everything.unique().numel() == 100 == everything.numel()
    assert data.name == "cifar-fs"


def test_pixels_labels_names_and_superclasses_are_the_pickled_ones(fake: FakeCifar100) -> None:
    data, _ = load_cifar_fs(fake.folder.parent)
    # Train and test pooled in that order, each row's 3072 bytes as R, G, B planes of 32x32.
    assert data.x.shape == (200, 3, 32, 32) and data.x.dtype == torch.uint8
    np.testing.assert_array_equal(data.x.numpy(), fake.x)
    np.testing.assert_array_equal(data.y.numpy(), fake.y)
    assert data.class_names == tuple(FINE)
    assert data.groups == tuple(SUPERCLASS_OF[c] for c in FINE)
    assert data.counts().tolist() == [2] * 100
    assert data.preprocessing["size"] == [32, 32] and data.preprocessing["channels"] == 3


def test_fc100_splits_whole_superclasses_12_4_4(fake: FakeCifar100) -> None:
    data, split = load_fc100(fake.folder.parent)
    assert split.sizes() == {"train": 60, "val": 20, "test": 20}
    groups = {s: [data.groups[c] for c in split[s].tolist()] for s in ("train", "val", "test")}
    assert set(groups["val"]) == FC100_VAL and set(groups["test"]) == FC100_TEST
    assert set(groups["train"]) == set(COARSE) - FC100_VAL - FC100_TEST
    assert all(g.count(s) == 5 for g in groups.values() for s in set(g))
    assert data.name == "fc100"


def test_the_extracted_folder_gives_what_the_archive_gives(tmp_path: Path) -> None:
    folder = write_fake_cifar100(tmp_path / "a", form="folder")
    data, split = load_fc100(folder.folder.parent, use_cache=False)
    np.testing.assert_array_equal(data.x.numpy(), folder.x)
    assert split.sizes() == {"train": 60, "val": 20, "test": 20}


def test_other_sizes_are_resized_and_cached_once(
    fake: FakeCifar100, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = load_cifar_fs(fake.folder.parent, size=20)
    assert data.x.shape == (200, 3, 20, 20)
    # Resizing keeps each image's mean colour (an antialiased filter, not a crop).
    means = data.x.float().mean(dim=(2, 3))
    assert (means - torch.from_numpy(fake.x).float().mean(dim=(2, 3))).abs().max() < 4
    monkeypatch.setattr(cifar100, "_decode", lambda *a: pytest.fail("decoded again"))
    again, _ = load_fc100(fake.folder.parent, size=20)  # one cache serves both datasets
    assert torch.equal(again.x, data.x)


def test_missing_archive_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_cifar_fs(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-100") in message and "cifar-100-python.tar.gz" in message
    assert "--download" in message and "METALEARNER_DATA" in message


def test_truncated_archive_is_refused(fake: FakeCifar100) -> None:
    fake.archive.write_bytes(fake.archive.read_bytes()[: fake.archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"is truncated .*download cifar-100-python\.tar\.gz"):
        load_cifar_fs(fake.folder.parent)


def test_web_page_instead_of_the_archive_or_a_pickle_is_refused(tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><head><title>Google Drive</title></head></html>"
    archive = write_fake_cifar100(tmp_path / "a")
    archive.archive.write_bytes(page)
    with pytest.raises(DataError, match=r"is a web page, not the archive"):
        load_cifar_fs(archive.folder.parent)
    folder = write_fake_cifar100(tmp_path / "b", form="folder")
    (folder.folder / "cifar-100-python" / "train").write_bytes(page)
    with pytest.raises(DataError, match=r"train in .* is a web page, not a pickle"):
        load_fc100(folder.folder.parent)


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    fake = write_fake_cifar100(tmp_path / "data", form="folder")
    marker = tmp_path / "ran"
    planted = planted_pickle(marker, key="fine_label_names")
    (fake.folder / "cifar-100-python" / "meta").write_bytes(planted)
    with pytest.raises(DataError, match=r"meta in .* names .*system, which is not data"):
        load_cifar_fs(fake.folder.parent)
    assert not marker.exists()


def test_an_archive_without_the_batches_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100"
    folder.mkdir()
    with gzip.open(folder / "cifar-100-python.tar.gz", "wb") as f:
        f.write(b"\0" * 10240)  # an empty tar: gzip and tar both valid
    with pytest.raises(DataError, match=r"lacks cifar-100-python/train, .* download it again"):
        load_cifar_fs(tmp_path)
