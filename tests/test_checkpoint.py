"""Checkpoints: a safetensors + JSON round trip, checksums, formats, and crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from metalearner.errors import DataError
from metalearner.runs.checkpoint import (
    META,
    TENSORS,
    checkpoint_exists,
    load_checkpoint,
    meta_digest,
    save_checkpoint,
)


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "params/w": torch.randn(3, 4, generator=g),
        "params/b": torch.zeros(4, dtype=torch.float64),
        "rng/sampler": torch.Generator().manual_seed(5).get_state(),
        "optim/step": torch.tensor(7),
    }


def test_round_trip_keeps_tensors_meta_and_versions(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(), {"strategy": "maml", "classes": ["a"]})
    ck = load_checkpoint(path)
    for name, value in tensors().items():
        assert torch.equal(ck.tensors[name], value) and ck.tensors[name].dtype == value.dtype
    assert ck.group("params").keys() == {"w", "b"}
    assert ck.meta["strategy"] == "maml" and ck.meta["classes"] == ["a"]
    assert ck.meta["versions"]["torch"] == torch.__version__
    restored = torch.Generator()
    restored.set_state(ck.tensors["rng/sampler"])
    assert torch.equal(
        torch.rand(3, generator=restored), torch.rand(3, generator=torch.Generator().manual_seed(5))
    )


def test_saving_again_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 1})
    save_checkpoint(tmp_path / "ck", {"params/w": torch.ones(2)}, {"step": 2})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta["step"] == 2 and list(ck.tensors) == ["params/w"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_crash_between_the_renames_still_loads_the_previous_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 1})
    os.replace(tmp_path / "ck", tmp_path / ".ck.old-123")  # the state after the first rename
    assert checkpoint_exists(tmp_path / "ck") and not checkpoint_exists(tmp_path / "other")
    assert load_checkpoint(tmp_path / "ck").meta["step"] == 1


def test_of_several_moved_aside_checkpoints_the_whole_one_of_the_latest_step_loads(
    tmp_path: Path,
) -> None:
    # Earlier crashes left checkpoints of steps 1463 and 1500 aside (pid 9000 sorts after pid
    # 10000 by name), and one half removed; none may shadow the whole one of the latest step.
    for pid, step in ((10000, 1500), (9000, 1463), (6173, 1600)):
        save_checkpoint(tmp_path / "made", tensors(), {"step": step})
        os.replace(tmp_path / "made", tmp_path / f".ck.old-{pid}")
    (tmp_path / ".ck.old-6173" / META).unlink()  # a removal cut short
    assert load_checkpoint(tmp_path / "ck").meta["step"] == 1500


def test_a_save_removes_what_earlier_killed_saves_left(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 1})
    os.replace(tmp_path / "ck", tmp_path / ".ck.old-999999998")  # no process has these pids
    (tmp_path / ".ck.tmp-999999999").mkdir()
    live = [f".ck.old-{os.getppid()}", f".ck.tmp-{os.getppid()}"]  # may be mid-save: kept
    for name in live:
        (tmp_path / name).mkdir()
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [*live, "ck"]
    assert load_checkpoint(tmp_path / "ck").meta["step"] == 2


def test_a_save_succeeds_over_what_a_killed_process_with_our_pid_left(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 1})
    for kind in ("old", "tmp"):  # pids are reused: in a container every run may be pid 1
        (tmp_path / f".ck.{kind}-{os.getpid()}").mkdir()
        (tmp_path / f".ck.{kind}-{os.getpid()}" / "leftover").write_text("x")
    save_checkpoint(tmp_path / "ck", tensors(), {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert load_checkpoint(tmp_path / "ck").meta["step"] == 2


def test_damaged_tensors_are_detected(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(), {})
    data = bytearray((path / TENSORS).read_bytes())
    data[-1] ^= 0xFF
    (path / TENSORS).write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match the checksum"):
        load_checkpoint(path)


def test_other_format_and_damaged_meta_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", tensors(), {})
    meta = json.loads((path / META).read_text())
    (path / META).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(DataError, match=r"format 99.*version that wrote it"):
        load_checkpoint(path)
    (path / META).write_text("{not json")
    with pytest.raises(DataError, match="damaged"):
        load_checkpoint(path)


def test_not_a_checkpoint_and_pickles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a checkpoint"):
        load_checkpoint(tmp_path)
    path = save_checkpoint(tmp_path / "ck", tensors(), {})

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("touch pwned",))

    payload = pickle.dumps({"w": Boom()})
    (path / TENSORS).write_bytes(payload)
    meta = json.loads((path / META).read_text())
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    meta["meta_sha256"] = meta_digest(meta)  # re-signed, as a forger would
    (path / META).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="cannot be read"):
        load_checkpoint(path)
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()
