"""A checkpoint's metadata is checked data: its digest covers meta.json, its fields and tensors
are validated on load, old checkpoints still load, and a concurrent rewrite is never "damaged"."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import metalearner
from metalearner.errors import DataError
from metalearner.evaluation.evaluator import evaluate as evaluate_run
from metalearner.runs.checkpoint import META, TENSORS, load_checkpoint, save_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.folder import BEST, LATEST
from metalearner.training.loop import meta_train

DAMAGED = "damaged or replaced"
SINUSOID = [
    "data.dataset=sinusoid",
    "strategy=maml",
    "steps=2",
    "val_every=2",
    "val_tasks=2",
    "test_tasks=2",
    "meta_batch=2",
    "threads=1",
    "model.width=8",
    "model.depth=2",
]


def canonical_digest(meta: dict[str, Any]) -> str:
    """The digest a checkpoint records of its metadata: sha256 of the canonical JSON of every
    field but ``meta_sha256`` itself (keys sorted, no spaces)."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def resign(ck: Path, tensors: dict[str, torch.Tensor] | None = None, **meta_changes: Any) -> None:
    """Rewrites a checkpoint with other tensors or metadata and valid checksums, as a forger
    (or another program) would."""
    if tensors is not None:
        save_file(tensors, str(ck / TENSORS))
    meta = json.loads((ck / META).read_text())
    meta.update(meta_changes)
    meta["sha256"] = hashlib.sha256((ck / TENSORS).read_bytes()).hexdigest()
    if "meta_sha256" in meta:
        meta["meta_sha256"] = canonical_digest(meta)
    (ck / META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def write_old_format(ck: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """A checkpoint as metalearner wrote them before meta.json had a digest."""
    ck.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(ck / TENSORS))
    sha = hashlib.sha256((ck / TENSORS).read_bytes()).hexdigest()
    meta = {k: v for k, v in meta.items() if k != "meta_sha256"} | {"format": 1, "sha256": sha}
    (ck / META).write_text(json.dumps(meta, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MAML run on sinusoids (a few seconds)."""
    out = tmp_path_factory.mktemp("integrity") / "run"
    meta_train(load_config(overrides=SINUSOID), out, quiet=True)
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def adapt_once(path: Path) -> None:
    x = torch.linspace(-5, 5, 10)[:, None]
    metalearner.load(path).adapt(x, torch.sin(x).reshape(-1).tolist()).predict(x)


def test_an_edited_meta_field_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", {"params/w": torch.ones(2)}, {"inner_lr": 0.4})
    text = (path / META).read_text()
    assert '"inner_lr": 0.4' in text
    (path / META).write_text(text.replace('"inner_lr": 0.4', '"inner_lr": 9.4'))
    with pytest.raises(DataError, match=DAMAGED) as err:
        load_checkpoint(path)
    assert str(err.value).count(". ") == 0 and "\n" not in str(err.value)


def test_an_edited_inner_lr_in_a_run_is_refused_before_adapting(run: Path) -> None:
    for ck in (run / BEST, run / LATEST):
        text = (ck / META).read_text().replace('"inner_lr": 0.4', '"inner_lr": 9.4')
        (ck / META).write_text(text)
    with pytest.raises(DataError, match=DAMAGED):
        metalearner.load(run)


def _changed_param(run: Path, change: str) -> None:
    for ck in (run / BEST, run / LATEST):
        tensors = load_file(str(ck / TENSORS))
        w = tensors.pop("params/head.weight")
        if change == "shape":
            tensors["params/head.weight"] = torch.zeros(w.shape[0] + 3, w.shape[1])
        elif change == "dtype":
            tensors["params/head.weight"] = w.to(torch.float16)
        else:
            tensors["params/head.weights"] = w
        resign(ck, tensors)


@pytest.mark.parametrize("change", ["shape", "dtype", "name"])
def test_a_resigned_tensor_of_the_wrong_kind_is_refused_in_one_sentence(
    run: Path, change: str
) -> None:
    _changed_param(run, change)
    with pytest.raises(DataError, match=DAMAGED) as err:
        adapt_once(run)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=DAMAGED):
        evaluate_run(run, num_tasks=2)
    with pytest.raises(DataError, match=DAMAGED):
        meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)


def test_resigned_optimizer_and_rng_tensors_of_the_wrong_kind_are_refused(run: Path) -> None:
    ck = run / LATEST
    tensors = load_file(str(ck / TENSORS))
    saved = dict(tensors)
    tensors["rng/tasks"] = tensors["rng/tasks"][:100]
    resign(ck, tensors)
    with pytest.raises(DataError, match=DAMAGED):
        meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)
    tensors = dict(saved)
    moment = next(k for k in tensors if k.startswith("optim/") and k.endswith("exp_avg"))
    tensors[moment] = torch.zeros(7)
    resign(ck, tensors)
    with pytest.raises(DataError, match=DAMAGED):
        meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)
    tensors = dict(saved)
    tensors["optim/x/exp_avg"] = torch.zeros(1)
    resign(ck, tensors)
    with pytest.raises(DataError, match=DAMAGED):
        meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("step", "two"),
        ("param_names", "features.0.weight"),
        ("optimizer", {"param_groups": "x"}),
        ("input_shape", [10**9]),
        ("backbone", {"name": "mlp", "out_features": 10**12}),
        ("elapsed", "NaN"),
        ("best", {"score": "high"}),
    ],
)
def test_resigned_meta_fields_of_the_wrong_kind_are_refused_in_one_sentence(
    run: Path, field: str, value: Any
) -> None:
    for ck in (run / BEST, run / LATEST):
        resign(ck, **{field: value})
    with pytest.raises(DataError, match=DAMAGED) as err:
        adapt_once(run)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=DAMAGED) as err:
        meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)
    assert "\n" not in str(err.value)


def test_an_old_format_checkpoint_still_loads(tmp_path: Path) -> None:
    write_old_format(tmp_path / "ck", {"params/w": torch.ones(2)}, {"step": 3})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.meta["step"] == 3 and torch.equal(ck.tensors["params/w"], torch.ones(2))
    # It still has its tensors checked.
    (tmp_path / "ck" / TENSORS).write_bytes((tmp_path / "ck" / TENSORS).read_bytes()[:-1] + b"!")
    with pytest.raises(DataError, match=DAMAGED):
        load_checkpoint(tmp_path / "ck")


def test_a_run_written_in_the_old_format_evaluates_adapts_and_resumes(run: Path) -> None:
    for ck in (run / BEST, run / LATEST):
        tensors, meta = load_file(str(ck / TENSORS)), json.loads((ck / META).read_text())
        shutil.rmtree(ck)
        write_old_format(ck, tensors, meta)
    adapt_once(run)
    assert evaluate_run(run, num_tasks=2).num_tasks == 2
    result = meta_train(load_config(overrides=[*SINUSOID, "steps=4"]), run, resume=True, quiet=True)
    assert result.step == 4


def test_a_checkpoint_read_while_it_is_rewritten_is_never_damaged(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    save_checkpoint(path, {"params/w": torch.zeros(256)}, {"step": 0})
    stop = threading.Event()
    failures: list[BaseException] = []

    def rewrite() -> None:
        step = 0
        try:
            while not stop.is_set():
                step += 1
                save_checkpoint(path, {"params/w": torch.full((256,), float(step))}, {"step": step})
        except BaseException as err:
            failures.append(err)

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads, deadline = 0, time.monotonic() + 4
    try:
        while time.monotonic() < deadline:
            ck = load_checkpoint(path)
            assert torch.equal(ck.tensors["params/w"], torch.full((256,), float(ck.meta["step"])))
            reads += 1
    finally:
        stop.set()
        writer.join()
    assert not failures and reads > 100


@pytest.mark.parametrize("value", ["many", 10**9])
def test_a_resigned_adaptation_setting_out_of_bounds_is_refused(run: Path, value: Any) -> None:
    # Re-signed with a strategy_config the strategy rejects, or one that would adapt for hours.
    for ck in (run / BEST, run / LATEST):
        meta = json.loads((ck / META).read_text())
        meta["config"]["strategy_config"]["eval_steps"] = value
        meta["strategy_config"]["eval_steps"] = value
        resign(ck, config=meta["config"], strategy_config=meta["strategy_config"])
    with pytest.raises(DataError, match=DAMAGED) as err:
        adapt_once(run)
    assert "\n" not in str(err.value)


def test_a_resigned_rl_checkpoint_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    from metalearner.rl.config import load_rl_config
    from metalearner.rl.state import load_policy
    from metalearner.rl.train import train_rl

    cfg = load_rl_config("navigation2d", ["meta_batch=4", "trajectories=5", "horizon=20"])
    train_rl(dataclasses.replace(cfg, iterations=1), tmp_path / "run", quiet=True)
    ck = tmp_path / "run" / LATEST
    tensors = load_file(str(ck / TENSORS))
    name = next(k for k in tensors if k.startswith("params/"))
    tensors[name] = torch.zeros(3, 3)
    resign(ck, tensors)
    with pytest.raises(DataError, match=DAMAGED):
        load_policy(tmp_path / "run")
    with pytest.raises(DataError, match=DAMAGED):
        train_rl(dataclasses.replace(cfg, iterations=2), tmp_path / "run", resume=True, quiet=True)
