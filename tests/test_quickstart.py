"""``metalearner quickstart`` as a user runs it, and the baselines it compares MAML with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli as run
from metalearner.errors import ConfigError
from metalearner.nn.backbones import build_model
from metalearner.strategies import build
from metalearner.tasks import EpisodeSampler, LabeledSet, SinusoidTasks, TaskBatch


def test_scratch_never_moves_and_pretrain_fits_the_average_task() -> None:
    model = build_model("mlp", (1,), 1, generator=0, dtype=torch.float64)
    batch = SinusoidTasks(shots=5, queries=5).sample(8, generator=torch.Generator().manual_seed(0))
    batch = TaskBatch(*(t.double() for t in (batch.support_x, batch.support_y,
                                             batch.query_x, batch.query_y)))  # fmt: skip
    scratch = build("scratch", model)
    params = scratch.init_params(0)
    grads, metrics = scratch.meta_grads(params, batch)
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())
    assert metrics["loss"] > 0
    pretrain = build("pretrain", model)
    grads, _ = pretrain.meta_grads(params, batch)
    # The pretraining gradient is the plain gradient of the pooled loss over every point.
    x = torch.cat([batch.support_x, batch.query_x], 1).flatten(0, 1)
    y = torch.cat([batch.support_y, batch.query_y], 1).flatten()
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    out = torch.func.functional_call(model, leaves, (x,)).squeeze(-1)
    expected = torch.autograd.grad((out - y).square().mean(), list(leaves.values()))
    for (name, g), e in zip(grads.items(), expected, strict=True):
        assert torch.allclose(g, e, atol=1e-12), name


def test_pretrain_refuses_classification_episodes(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=1, queries=1)
    batch = sampler.sample(2, generator=torch.Generator().manual_seed(0))
    model = build_model("conv4", (1, 8, 8), 3, generator=0, depth=2, width=4)
    pretrain = build("pretrain", model)
    with pytest.raises(ConfigError, match="regression"):
        pretrain.meta_grads(pretrain.init_params(0), batch)


@pytest.mark.slow
def test_quickstart_writes_table_plot_report_and_run_folders(tmp_path: Path) -> None:
    result = run("quickstart", "--out", "qs", "--steps", "60", "--tasks", "20", "--quiet",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("MAML", "pretrained, fine-tuned", "from scratch"):
        assert name in result.stdout
    folder = tmp_path / "qs"
    report = (folder / "report.md").read_text()
    assert report.count("| MAML |") == 1 and "quickstart.png" in report
    assert (folder / "quickstart.png").stat().st_size > 10_000
    curves = json.loads((folder / "quickstart.json").read_text())
    assert set(curves) == {"maml", "pretrain", "scratch"}
    assert all(len(curves[m][k]) == 11 for m in curves for k in ("5", "10"))
    # The trained models are ordinary run folders.
    for name in ("maml", "pretrain"):  # and the table scores them as `evaluate` does
        # with the table's 10 steps (by default evaluate takes those chosen on validation)
        evaluated = run("evaluate", f"qs/{name}", "--tasks", "20", "--no-curve", "--steps", "10",
                        cwd=tmp_path)  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr
        assert "mse" in evaluated.stdout and "(20 tasks)" in evaluated.stdout
        score = json.loads((folder / name / "eval.json").read_text())["score"]
        assert score["mean"] == pytest.approx(curves[name]["10"][10]["mean"], rel=1e-9)
    # Running it again resumes the finished runs instead of retraining them.
    again = run("quickstart", "--out", "qs", "--steps", "60", "--tasks", "20", "--quiet",
                cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len((folder / "maml" / "metrics.jsonl").read_text().splitlines()) > 0


def test_quickstart_rejects_bad_options(tmp_path: Path) -> None:
    result = run("quickstart", "--steps", "0", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--steps" in result.stderr
