"""Downloads against a loopback server: resuming a cut download, checksums, the datasets' own."""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

import pytest

from cifar_fixture import write_fake_cifar100
from cub_fixture import write_fake_cub
from http_fixture import serve_files
from metalearner.data import cifar, cifar100, cub
from metalearner.data.cache import fetch
from metalearner.errors import DataError

# Each test decodes into a cache of its own (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, bytes, str]:
    """A 300 kB file of varied bytes in a served folder: ``(folder, bytes, md5)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    data = hashlib.sha256(b"seed").digest() * 10_000 + b"tail"
    (folder / "file.bin").write_bytes(data)
    return folder, data, hashlib.md5(data).hexdigest()


def test_a_cut_download_keeps_its_part_and_the_next_call_resumes(
    tmp_path: Path, served: tuple[Path, bytes, str]
) -> None:
    folder, data, md5 = served
    dest = tmp_path / "to" / "file.bin"
    with serve_files(folder, cut_after=100_000) as host:
        with pytest.raises(DataError) as err:
            fetch(host.url + "file.bin", dest, md5=md5)
        message = str(err.value)
        assert f"cut off after 100000 of {len(data)} bytes" in message
        assert "run the same command again to resume" in message and message.count(". ") == 0
        assert not dest.exists()  # never a partial file under the final name
        part = dest.with_name("file.bin.part")
        assert part.read_bytes() == data[:100_000]
        fetch(host.url + "file.bin", dest, md5=md5)
    assert host.seen == [None, "bytes=100000-"]
    assert dest.read_bytes() == data and not part.exists()


def test_a_second_download_of_the_same_file_is_refused_while_one_runs(
    tmp_path: Path, served: tuple[Path, bytes, str]
) -> None:
    # Two processes appending to one part would interleave their bytes: the part is locked.
    folder, data, md5 = served
    dest = tmp_path / "to" / "file.bin"
    dest.parent.mkdir()
    part = dest.with_name("file.bin.part")
    with serve_files(folder) as host, part.open("ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other process's download
        with pytest.raises(DataError, match="Another process is downloading"):
            fetch(host.url + "file.bin", dest, md5=md5)
        assert host.seen == [] and not dest.exists()
        fcntl.flock(other, fcntl.LOCK_UN)
        fetch(host.url + "file.bin", dest, md5=md5)
    assert dest.read_bytes() == data


def test_a_server_without_ranges_starts_over(
    tmp_path: Path, served: tuple[Path, bytes, str]
) -> None:
    folder, data, md5 = served
    dest = tmp_path / "file.bin"
    with serve_files(folder, cut_after=5_000, ranges=False) as host:
        with pytest.raises(DataError, match="cut off"):
            fetch(host.url + "file.bin", dest, md5=md5)
        fetch(host.url + "file.bin", dest, md5=md5)  # 200 to a Range request: written afresh
    assert host.seen == [None, "bytes=5000-"] and dest.read_bytes() == data


def test_a_complete_part_is_checked_and_kept(
    tmp_path: Path, served: tuple[Path, bytes, str]
) -> None:
    folder, data, md5 = served
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(data)  # killed between the last byte and rename
    with serve_files(folder) as host:
        fetch(host.url + "file.bin", dest, md5=md5)  # the server answers 416: nothing is left
    assert host.seen == [f"bytes={len(data)}-"] and dest.read_bytes() == data


def test_a_resumed_file_with_the_wrong_md5_leaves_nothing(
    tmp_path: Path, served: tuple[Path, bytes, str]
) -> None:
    folder = served[0]
    dest = tmp_path / "to" / "file.bin"
    dest.parent.mkdir()
    dest.with_name("file.bin.part").write_bytes(b"X" * 1000)  # a part of another file
    with (
        serve_files(folder) as host,
        pytest.raises(DataError, match=r"has md5 \w{32}, not the expected 0{32}; retry"),
    ):
        fetch(host.url + "file.bin", dest, md5="0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_cifar_download_resumes_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = write_fake_cifar100(tmp_path / "upstream")
    md5 = hashlib.md5(upstream.archive.read_bytes()).hexdigest()
    half = upstream.archive.stat().st_size // 2
    with serve_files(upstream.folder, cut_after=half) as host:
        monkeypatch.setitem(cifar100.URLS, cifar100.ARCHIVE, host.url + cifar100.ARCHIVE)
        monkeypatch.setitem(cifar100.MD5, cifar100.ARCHIVE, md5)
        with pytest.raises(DataError, match=r"cut off .* run the same command again to resume"):
            cifar.load_cifar_fs(tmp_path / "fresh", download=True)
        data, split = cifar.load_cifar_fs(tmp_path / "fresh", download=True)
    assert host.seen == [None, f"bytes={half}-"]
    assert split.sizes() == {"train": 64, "val": 16, "test": 20} and len(data) == 200
    assert sorted(p.name for p in (tmp_path / "fresh" / "cifar-100").iterdir()) == [
        cifar100.ARCHIVE
    ]


def test_cub_download_with_a_wrong_md5_leaves_nothing_then_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = write_fake_cub(tmp_path / "upstream")
    with serve_files(upstream.folder) as host:
        monkeypatch.setitem(cub.URLS, cub.ARCHIVE, host.url + cub.ARCHIVE)
        monkeypatch.setitem(cub.MD5, cub.ARCHIVE, "0" * 32)
        with pytest.raises(DataError, match=r"md5 \w{32}, not the expected 0{32}"):
            cub.load_cub(tmp_path / "fresh", download=True)
        assert list((tmp_path / "fresh" / "cub").iterdir()) == []
        md5 = hashlib.md5(upstream.archive.read_bytes()).hexdigest()
        monkeypatch.setitem(cub.MD5, cub.ARCHIVE, md5)
        data, split = cub.load_cub(tmp_path / "fresh", size=16, download=True)
    assert split.sizes() == {"train": 100, "val": 50, "test": 50} and len(data) == 201
