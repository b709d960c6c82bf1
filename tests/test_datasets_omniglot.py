"""Omniglot loader: layouts, splits, the decoded cache, downloads, and the real data."""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metalearner.data import cache, omniglot
from metalearner.data.omniglot import download_omniglot, load_omniglot
from metalearner.data.omniglot_splits import (
    alphabet_split,
    lake_split,
    omniglot_split,
    vinyals_split,
)
from metalearner.errors import ConfigError, DataError
from omniglot_fixture import (
    FakeOmniglot,
    copy_md5,
    half_files,
    serve_folder,
    write_fake_omniglot,
    zip_tree,
)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("METALEARNER_CACHE", str(folder))
    return folder


@pytest.fixture
def fake(tmp_path: Path) -> FakeOmniglot:
    return write_fake_omniglot(tmp_path / "data")


def _no_decoding(*args: object, **kwargs: object) -> np.ndarray:
    raise AssertionError("decoded images although the cache should have been used")


def test_zip_layout_loads_every_drawing_with_names_groups_and_halves(fake: FakeOmniglot) -> None:
    omni = load_omniglot(fake.data_dir)
    data = omni.data
    assert data.x.shape == (fake.num_images, 1, 28, 28)
    assert data.x.dtype == torch.uint8 and data.x.is_contiguous()
    assert data.y.dtype == torch.int64
    assert list(data.class_names) == fake.class_names()
    assert data.counts().tolist() == [fake.drawings] * fake.num_classes
    assert data.groups[0] == "Alpha" and data.groups[-1] == "Epsilon_(Old)"
    assert omni.background.tolist() == list(range(fake.num_background))
    assert omni.evaluation.tolist() == list(range(fake.num_background, fake.num_classes))
    assert data.preprocessing["invert"] is True and data.preprocessing["size"] == [28, 28]
    assert int(data.x[:, 0, 0, 0].max()) == 0  # inverted: the paper (corners) is 0
    assert int(data.x.amax(dim=(1, 2, 3)).min()) == 255  # and every drawing has solid ink


def test_fixture_is_one_bit_105_pngs_in_the_original_zip_layout(fake: FakeOmniglot) -> None:
    with zipfile.ZipFile(fake.folder / "images_background.zip") as z:
        name = next(n for n in z.namelist() if n.endswith(".png"))
        assert name == "images_background/Alpha/character01/0001_01.png"
        with Image.open(z.open(name)) as img:
            assert (img.mode, img.size) == ("1", (105, 105))


def test_extracted_folders_give_the_same_tensor_as_the_zips(tmp_path: Path) -> None:
    zipped = load_omniglot(write_fake_omniglot(tmp_path / "a").data_dir)
    folders = load_omniglot(write_fake_omniglot(tmp_path / "b", form="folder").data_dir)
    assert torch.equal(zipped.data.x, folders.data.x)
    assert zipped.data.class_names == folders.data.class_names


def test_size_and_resampling_are_configurable(fake: FakeOmniglot) -> None:
    data = load_omniglot(fake.data_dir, size=(20, 24), resample="box").data
    assert data.x.shape[1:] == (1, 20, 24)
    assert data.preprocessing["resample"] == "box"


def test_data_dir_is_metalearner_data_or_the_omniglot_folder_itself(
    fake: FakeOmniglot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(load_omniglot(fake.folder).data) == fake.num_images
    monkeypatch.setenv("METALEARNER_DATA", str(fake.data_dir))
    assert len(load_omniglot().data) == fake.num_images


def test_vinyals_split_is_seeded_disjoint_and_sized(fake: FakeOmniglot) -> None:
    omni = load_omniglot(fake.data_dir)
    split = vinyals_split(omni, seed=3, meta_train=10, val=2)
    assert split.sizes() == {"train": 8, "val": 2, "test": fake.num_classes - 10}
    joined = torch.cat([split.train, split.val, split.test]).sort().values
    assert joined.tolist() == list(range(fake.num_classes))
    again = vinyals_split(omni, seed=3, meta_train=10, val=2)
    assert torch.equal(split.train, again.train) and torch.equal(split.test, again.test)
    other = [vinyals_split(omni, seed=s, meta_train=10, val=2).train for s in range(4, 9)]
    assert any(not torch.equal(split.train, o) for o in other)
    with pytest.raises(ConfigError, match="meta_train=1200"):
        vinyals_split(omni)  # the paper's sizes do not fit 15 characters


def test_lake_split_keeps_whole_alphabets_apart(fake: FakeOmniglot) -> None:
    omni = load_omniglot(fake.data_dir)
    split = lake_split(omni, seed=0, val_alphabets=1)
    assert torch.equal(split.test, omni.evaluation)
    train_val = torch.cat([split.train, split.val]).sort().values
    assert torch.equal(train_val, omni.background)
    groups = omni.data.groups
    val_alphabets = {groups[c] for c in split.val.tolist()}
    assert len(val_alphabets) == 1
    assert not val_alphabets & {groups[c] for c in split.train.tolist()}
    with pytest.raises(ConfigError, match="val_alphabets=3"):
        lake_split(omni, val_alphabets=3)
    with pytest.raises(ConfigError, match="val_alphabets=5"):
        omniglot_split(omni, "lake")  # the default sizes, meant for the real data
    with pytest.raises(ConfigError, match="'vinyals', 'lake', 'vinyals-alphabets'"):
        omniglot_split(omni, "mine")


def test_vinyals_alphabet_split_on_an_incomplete_omniglot_is_one_clear_error(
    fake: FakeOmniglot,
) -> None:
    omni = load_omniglot(fake.data_dir)
    with pytest.raises(DataError, match=r"lacks 1028 of the 1028 train characters of Vinyals"):
        alphabet_split(omni)


def test_second_load_reads_the_cache_not_the_images(
    fake: FakeOmniglot, _cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(p.name for p in fake.folder.iterdir())
    first = load_omniglot(fake.data_dir)
    assert [p.suffix for p in _cache_dir.iterdir()] == [".npz"]
    assert sorted(p.name for p in fake.folder.iterdir()) == before  # data folder untouched
    monkeypatch.setattr(omniglot, "decode_many", _no_decoding)
    second = load_omniglot(fake.data_dir)
    assert torch.equal(first.data.x, second.data.x)
    assert first.data.class_names == second.data.class_names
    assert torch.equal(first.background, second.background)
    with pytest.raises(AssertionError, match="decoded"):
        load_omniglot(fake.data_dir, size=14)  # other settings: another key


def test_changed_source_file_is_a_cache_miss(
    fake: FakeOmniglot, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_omniglot(fake.data_dir)
    files = half_files({"Zeta": 1}, fake.drawings, 500)
    zip_tree(fake.folder / "images_evaluation.zip", files, prefix="images_evaluation/")
    assert load_omniglot(fake.data_dir).data.num_classes == fake.num_background + 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_cache_is_rebuilt_with_a_warning(
    fake: FakeOmniglot, _cache_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_omniglot(fake.data_dir)
    (path,) = _cache_dir.iterdir()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip at all")
    else:
        np.savez(path, x=np.zeros((3, 1, 28, 28), np.uint8))
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        again = load_omniglot(fake.data_dir)
    assert torch.equal(first.data.x, again.data.x)
    assert "rebuilding" in caplog.text
    assert cache.load_arrays(path, ["x", "y"]) is not None  # rewritten whole


def test_unwritable_cache_only_warns(
    fake: FakeOmniglot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("METALEARNER_CACHE", str(blocker / "cache"))
    assert len(load_omniglot(fake.data_dir).data) == fake.num_images


def test_cache_can_be_turned_off(fake: FakeOmniglot, _cache_dir: Path) -> None:
    load_omniglot(fake.data_dir, use_cache=False)
    assert not _cache_dir.exists()


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_omniglot(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "omniglot") in message and "images_background.zip" in message
    assert "--data-dir" in message and "METALEARNER_DATA" in message and "--download" in message


def test_missing_half_is_named(fake: FakeOmniglot) -> None:
    (fake.folder / "images_evaluation.zip").unlink()
    with pytest.raises(DataError, match="images_evaluation is not in") as err:
        load_omniglot(fake.data_dir)
    assert "images_background" not in str(err.value).split(" is not in")[0]


def test_zip_in_another_layout_or_not_a_zip_is_refused(fake: FakeOmniglot) -> None:
    zip_tree(fake.folder / "images_background.zip", {"Alpha/0001_01.png": b"x"})
    with pytest.raises(DataError, match=r"Alpha/0001_01\.png.*Omniglot layout"):
        load_omniglot(fake.data_dir)
    (fake.folder / "images_background.zip").write_bytes(b"PK broken")
    with pytest.raises(DataError, match=r"images_background\.zip is not a readable zip"):
        load_omniglot(fake.data_dir)


def test_truncated_png_is_named(fake: FakeOmniglot) -> None:
    files = half_files(fake.evaluation, fake.drawings, 100)
    bad = "Delta/character02/0101_03.png"
    files[bad] = files[bad][:60]
    zip_tree(fake.folder / "images_evaluation.zip", files, prefix="images_evaluation/")
    with pytest.raises(DataError, match=f"Cannot read image .*{bad}"):
        load_omniglot(fake.data_dir)


def test_corrupt_zip_member_is_named(fake: FakeOmniglot) -> None:
    path = fake.folder / "images_background.zip"
    data = bytearray(path.read_bytes())
    member = b"images_background/Beta/character01/0005_02.png"
    data[data.index(member) + len(member) + 20] ^= 0xFF  # inside that member's deflated bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"Cannot read .*0005_02\.png.*download the zip again"):
        load_omniglot(fake.data_dir)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over ``tmp_path/served``: ``(base url, folder)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    with serve_folder(folder) as base:
        yield base, folder


def _serve_fake(tmp_path: Path, folder: Path) -> dict[str, str]:
    """Puts a fake Omniglot's zips in ``folder``; returns their md5s."""
    fake = write_fake_omniglot(tmp_path / "upstream")
    return {n: copy_md5(fake.folder / n, folder / n) for n in omniglot.MD5 if n != "all_runs.zip"}


def test_download_checks_md5_and_then_loads(
    tmp_path: Path, server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = server
    md5 = _serve_fake(tmp_path, served)
    for name in md5:
        monkeypatch.setitem(omniglot.URLS, name, base + name)
        monkeypatch.setitem(omniglot.MD5, name, md5[name])
    data_dir = tmp_path / "fresh"
    omni = load_omniglot(data_dir, download=True)
    assert omni.data.num_classes == 15
    assert sorted(p.name for p in (data_dir / "omniglot").iterdir()) == sorted(md5)


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, served = server
    _serve_fake(tmp_path, served)
    target = tmp_path / "fresh" / "omniglot"
    name = "images_background.zip"
    with pytest.raises(DataError, match=r"md5 \w+, not the expected 0{32}; retry") as err:
        download_omniglot(target, files=[name], urls={name: base + name}, md5={name: "0" * 32})
    assert base + name in str(err.value)
    assert list(target.iterdir()) == []


def test_download_error_is_one_clear_sentence(tmp_path: Path, server: tuple[str, Path]) -> None:
    base, _ = server
    name = "images_background.zip"
    with pytest.raises(DataError, match=r"Could not download .*HTTP 404.*by hand"):
        download_omniglot(tmp_path / "to", files=[name], urls={name: base + "absent.zip"})
    assert list((tmp_path / "to").iterdir()) == []


def test_download_keeps_files_already_there(fake: FakeOmniglot) -> None:
    # No server: it must not try to fetch what is present (re-packed copies fail the md5).
    paths = download_omniglot(fake.folder, urls={n: "http://127.0.0.1:9/x" for n in omniglot.URLS})
    assert [p.name for p in paths] == ["images_background.zip", "images_evaluation.zip"]


# --- the real data (../shared/data or METALEARNER_DATA) -------------------------------------


@pytest.mark.data
@pytest.mark.slow
def test_real_omniglot_counts_and_cached_reload(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.perf_counter()
    omni = load_omniglot(data_dir)
    decode_s = time.perf_counter() - start
    data = omni.data
    assert data.num_classes == 1623 and len(data) == 32460
    assert data.x.shape == (32460, 1, 28, 28) and data.x.dtype == torch.uint8
    assert (len(omni.background), len(omni.evaluation)) == (964, 659)
    assert len({data.groups[c] for c in omni.background.tolist()}) == 30
    assert len({data.groups[c] for c in omni.evaluation.tolist()}) == 20
    assert data.counts().unique().tolist() == [20]
    assert vinyals_split(omni).sizes() == {"train": 1100, "val": 100, "test": 423}
    # Vinyals et al.'s split as ProtoNets' code ships it: alphabets kept apart but Gurmukhi's.
    vinyals = alphabet_split(omni)
    assert vinyals.sizes() == {"train": 1028, "val": 172, "test": 423}
    alphabets = {k: {data.groups[c] for c in vinyals[k].tolist()} for k in ("train", "val", "test")}
    assert (len(alphabets["train"]), len(alphabets["val"]), len(alphabets["test"])) == (33, 5, 13)
    assert alphabets["train"] & alphabets["test"] == {"Gurmukhi"}
    assert not alphabets["val"] & (alphabets["train"] | alphabets["test"])
    lake = lake_split(omni).sizes()
    assert lake["train"] + lake["val"] == 964 and lake["test"] == 659

    monkeypatch.setattr(omniglot, "decode_many", _no_decoding)
    start = time.perf_counter()
    again = load_omniglot(data_dir)
    load_s = time.perf_counter() - start
    assert torch.equal(again.data.x, data.x)
    assert load_s < 2.0, f"cache load took {load_s:.2f} s (decode took {decode_s:.1f} s)"
