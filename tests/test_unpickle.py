"""The restricted unpickler: data pickles of every protocol read, anything else refused unrun."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from metalearner.data.unpickle import read_pickle
from metalearner.errors import DataError
from pickle_fixture import planted_pickle

DATA = {
    "image_data": np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3),
    "labels": [3, 1],
    "names": ("a", "b"),
    "scale": np.float32(0.5),
    "order": OrderedDict(x=1.5),
    b"raw": b"\x00\xff",
    "set": {1, 2},
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_data_of_every_protocol_reads_back_equal(protocol: int, tmp_path: Path) -> None:
    path = tmp_path / "cache.pkl"
    path.write_bytes(pickle.dumps(DATA, protocol=protocol))
    out = read_pickle(path, what="cache.pkl")
    assert isinstance(out, dict)
    assert np.array_equal(out["image_data"], DATA["image_data"])
    assert out["image_data"].dtype == np.uint8
    assert type(out["scale"]) is np.float32 and out["scale"] == 0.5
    assert {k: v for k, v in out.items() if k not in ("image_data", "scale")} == {
        k: v for k, v in DATA.items() if k not in ("image_data", "scale")
    }


def test_python2_style_bytes_keys_stay_bytes_with_encoding_bytes() -> None:
    # CIFAR-100's files: Python 2 str keys, which encoding="bytes" keeps as b"data".
    py2 = b"\x80\x02}q\x00U\x04dataq\x01K\x07s."  # {'data': 7} as Python 2 pickled it
    assert read_pickle(py2, what="meta", encoding="bytes") == {b"data": 7}
    assert read_pickle(py2, what="meta") == {"data": 7}


def test_a_pickle_that_would_run_a_command_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    planted = planted_pickle(marker)
    with pytest.raises(DataError, match=r"train\.pkl names .*system, which is not data"):
        read_pickle(planted, what="train.pkl")
    assert not marker.exists()
    # The same with a function that would look harmless to a deny-list.
    with pytest.raises(DataError, match=r"builtins\.getattr"):
        read_pickle(b"\x80\x02cbuiltins\ngetattr\nq\x00.", what="x.pkl")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"<!DOCTYPE html>\n<html><head><title>Google Drive", "is a web page, not a pickle"),
        (pickle.dumps(DATA, protocol=2)[:-40], "is truncated"),
        (b"PK\x03\x04 a zip", "is not a readable pickle"),
    ],
)
def test_broken_files_are_one_sentence(payload: bytes, says: str, tmp_path: Path) -> None:
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=says) as err:
        read_pickle(path, what=str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cannot read"):
        read_pickle(tmp_path / "absent.pkl", what="absent.pkl")
