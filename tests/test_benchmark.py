"""`metalearner benchmark` end to end, as a user runs it, on a tiny fake Omniglot.

Every strategy family trains for a few steps, all are scored on the same tasks, and both report
files come out with every section and figure; a rerun reuses everything; the HTML report opens
in headless Chromium without errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli as run
from omniglot_fixture import write_fake_omniglot, write_fake_runs

# 7 background alphabets (lake split: 5 for validation, 2 for training), 2 evaluation ones.
BACKGROUND = {f"Bg{i}": 2 for i in range(7)}
EVALUATION = {"EvalA": 3, "EvalB": 3}
PLAN = """\
dataset: omniglot
ways: 2
shots: 1
queries: 2
strategies: [maml, protonet, reptile, finetune, baselinepp, nearest-centroid, scratch]
budget: 3steps
tasks: 8
sweep_tasks: 4
sweep_shots: [1, 2, 10]
label_noise: [0, 0.5]
val_tasks: 4
overrides: [model.width=8, model.depth=2, threads=1, data.queries=2]
strategy_overrides:
  maml: [meta_batch=2]
  protonet: [strategy_config.train_ways=3]
  reptile: [strategy_config.eval_steps=3, meta_batch=2]
  finetune: [strategy_config.eval_steps=5]
  baselinepp: [strategy_config.eval_steps=5]
  nearest-centroid: [strategy_config.eval_steps=5]
  scratch: [strategy_config.eval_steps=2]
"""
SECTIONS = ["## Setup", "## Results", "## Paired comparisons", "## Training and adaptation",
            "### Scarce data", "### Noisy labels", "### Cross-domain"]  # fmt: skip
FIGURES = ["scores", "validation", "steps", "shots", "noise", "cross"]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One benchmark run (the slow part), shared by the checks below."""
    root = tmp_path_factory.mktemp("bench")
    write_fake_omniglot(root / "data", drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    write_fake_runs(root / "data", runs=2, ways=3)
    (root / "plan.yaml").write_text(PLAN)
    result = run(
        "benchmark", "plan.yaml", "--cross-domain", "--data-dir", "data", "--out", "b", "-q",
        cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (root / "stdout.txt").write_text(result.stdout)
    return root


def test_every_strategy_is_scored_on_the_same_tasks(benchmark: Path) -> None:
    out = benchmark / "b"
    results = {p.stem: json.loads(p.read_text())["result"] for p in (out / "results").glob("*")}
    assert set(results) == {"maml", "protonet", "reptile", "finetune", "baselinepp",
                            "nearest-centroid", "scratch"}  # fmt: skip
    assert {len(r["scores"]) for r in results.values()} == {8}
    assert len({r["tasks"] for r in results.values()}) == 1  # one digest: the same 8 tasks
    # Trained strategies are normal run folders; scratch learns nothing and nearest-centroid
    # reuses finetune's pretraining, so neither has a folder of its own.
    for name in ("maml", "protonet", "reptile", "finetune", "baselinepp"):
        assert (out / name / "checkpoints" / "latest" / "model.safetensors").is_file()
        assert results[name]["steps"] == 3
    assert not (out / "scratch").exists() and not (out / "nearest-centroid").exists()
    assert results["nearest-centroid"]["steps"] == 3 and results["scratch"]["steps"] == 0
    # The shots sweep keeps the K the data has room for (6 drawings: K = 10 cannot be).
    assert set(results["maml"]["shots"]) == {"1", "2"}
    assert set(results["maml"]["noise"]) == {"0.0", "0.5"}
    # A 2-way head cannot answer Lake's 3-way runs; ProtoNets can.
    assert results["maml"]["cross"]["lake-20way"] is None
    assert results["protonet"]["cross"]["lake-20way"] is not None
    assert results["protonet"]["cross"]["within-alphabet"] is not None
    assert "maml" in (benchmark / "stdout.txt").read_text()


def test_both_reports_have_every_section_and_figure(benchmark: Path) -> None:
    out = benchmark / "b"
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert section in md
        assert re.sub(r"^#+ ", "", section).split(":")[0] in page
    for figure in FIGURES:
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
        assert f"(figures/{figure}.png)" in md
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    # Reproducibility: the command, seeds, BatchNorm mode, versions and commit are stated.
    for needle in ("--cross-domain", "test tasks 2002", "BatchNorm: transductive", "torch 2.",
                   "commit ", "3 outer steps"):  # fmt: skip
        assert needle in md
    assert "maml − protonet" in md and "p (Holm)" in md


def test_a_rerun_reuses_runs_and_scores_and_a_changed_plan_is_refused(benchmark: Path) -> None:
    out = benchmark / "b"
    stamp = (out / "results" / "maml.json").stat().st_mtime_ns
    again = run("benchmark", "plan.yaml", "--cross-domain", "--data-dir", "data", "--out", "b",
                "-q", cwd=benchmark)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "trained already" in again.stdout and "scoring" not in again.stdout
    assert (out / "results" / "maml.json").stat().st_mtime_ns == stamp
    changed = run("benchmark", "plan.yaml", "--cross-domain", "--budget", "4steps",
                  "--data-dir", "data", "--out", "b", cwd=benchmark)  # fmt: skip
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert "another plan (budget: '3steps' there, '4steps' now" in changed.stderr


def test_bad_options_get_one_sentence(tmp_path: Path) -> None:
    bad = run("benchmark", "--dataset", "sinusoid", "--budget", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "write e.g. 10m" in bad.stderr
    missing = run("benchmark", "--strategies", "maml", "--data-dir", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.count("\n") == 1
    no_plan = run("benchmark", "plan.yaml", cwd=tmp_path)
    assert no_plan.returncode == 2 and no_plan.stderr.count("\n") == 1
    assert (
        "Plan file plan.yaml does not exist" in no_plan.stderr and "--preset" not in no_plan.stderr
    )


SINUSOID = ("benchmark", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
            "--budget", "20steps", "--tasks", "5", "--sweep-tasks", "5", "--sweep-shots", "5",
            "--label-noise", "", "--set", "threads=1", "-q", "--out", "b")  # fmt: skip


def test_a_bad_plan_writes_nothing_so_the_corrected_command_runs(tmp_path: Path) -> None:
    wrong = [(("--set", "stepz=3"), "Unknown setting 'stepz'"),
             (("--dataset", "mnist"), "must be one of sinusoid"),
             (("--strategies", "protonet"), "its tasks need integer class labels"),
             (("--budget", "20"), "Budget '20' has no unit; write 20steps")]  # fmt: skip
    for options, message in wrong:
        bad = run(*SINUSOID, *options, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
        assert not (tmp_path / "b").exists()  # checked in full before anything is written
    # Only the plan of an attempt that did nothing (as earlier versions left it): replaced.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "benchmark.yaml").write_text("dataset: sinusoid\nbudget: 99steps\n")
    good = run(*SINUSOID, cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    # A folder with results keeps its plan, but a bad option is still named for what it is.
    bad = run(*SINUSOID, "--dataset", "mnist", cwd=tmp_path)
    assert bad.returncode == 2 and "must be one of sinusoid" in bad.stderr
    changed = run(*SINUSOID, "--budget", "30steps", cwd=tmp_path)
    assert changed.returncode == 2
    assert "another plan (budget: '20steps' there, '30steps' now" in changed.stderr


def chromium() -> str | None:
    return os.environ.get("METALEARNER_CHROMIUM") or shutil.which("chromium")


@pytest.mark.slow
def test_the_html_report_opens_in_headless_chromium_without_errors(benchmark: Path) -> None:
    browser_path = chromium()
    if browser_path is None:
        if os.environ.get("METALEARNER_REQUIRE_DATA") == "1":  # CI installs Chromium
            pytest.fail("Chromium not found; .ci/run installs it (apt-get install chromium).")
        pytest.skip("Chromium not installed")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=browser_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((benchmark / "b" / "report.html").as_uri())
        page.wait_for_load_state("load")
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        tables = page.eval_on_selector_all("table", "ts => ts.length")
        title = page.title()
        page.screenshot(path=str(benchmark / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert len(sizes) == len(FIGURES) and all(w > 100 for w in sizes)  # every figure decoded
    assert tables >= 5 and title.startswith("Benchmark: omniglot 2-way 1-shot")
    assert (benchmark / "report.png").stat().st_size > 10_000
