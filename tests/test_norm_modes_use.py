"""BatchNorm's modes as users meet them: a trained run's Learner, the commands, the report.

In inductive mode the user's ``Learner`` predicts an item alone as among all (the strategies'
own paths are checked in tests/test_norm_modes.py); in transductive mode too few items warn
once, naming the other mode; ``evaluate`` and ``adapt`` state the mode and take another.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

import metalearner
from metalearner.benchmark import BenchmarkPlan
from metalearner.benchmark.report import build_document
from metalearner.benchmark.scoring import StrategyResult
from metalearner.errors import ConfigError
from metalearner.evaluation import Score
from metalearner.nn.layers import NORM_MODES
from metalearner.runs.config import load_config
from metalearner.training.loop import meta_train

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli
from image_classes import write_class

FOLDER = ["data.dataset=folder", "data.ways=3", "data.shots=1", "data.queries=2",
          "data.meta_train_classes=8", "data.val_classes=3", "model.width=8", "model.depth=2",
          "val_tasks=2", "val_every=2", "test_tasks=4", "meta_batch=2", "steps=2", "threads=1",
          "strategy=maml", "strategy_config.eval_steps=2"]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic image classes of 5 drawings each, as a user's class folders."""
    root = tmp_path_factory.mktemp("norm") / "classes"
    for c in range(12):
        write_class(root / f"c{c:02d}", c, 5)
    return root


def train(data: Path, out: Path, *extra: str) -> Path:
    meta_train(load_config(overrides=[*FOLDER, f"data.path={data}", *extra]), out, quiet=True)
    return out


def images(data: Path, classes: list[int], per_class: int, skip: int = 0) -> list[Path]:
    return [f for c in classes for f in sorted((data / f"c{c:02d}").iterdir())[skip:][:per_class]]


def test_the_learner_predicts_an_item_alone_as_among_all_in_inductive_mode(
    data: Path, tmp_path: Path
) -> None:
    run = train(data, tmp_path / "inductive", "model.norm=inductive")
    assert "norm: inductive" in (run / "config.yaml").read_text()  # recorded with the run
    support, query = images(data, [9, 10, 11], 1), images(data, [9, 10, 11], 2, skip=1)
    labels = ["a", "b", "c"]
    gaps = {}
    for norm in NORM_MODES:
        learner = metalearner.load(run, norm=norm)
        assert learner.strategy.norm == norm
        task = learner.adapt(support, labels)
        together = task.predict(query).scores
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            alone = torch.cat([task.predict([item]).scores for item in query])
        few = [str(w.message) for w in caught if w.category.__name__ == "FewItemsWarning"]
        gaps[norm] = float((alone - together).abs().max())
        if norm == "transductive":  # one warning for the task model, naming the other mode
            assert len(few) == 1 and "--norm inductive" in few[0], few
        else:
            assert few == []
    assert metalearner.load(run).strategy.norm == "inductive"  # the run's own mode
    assert gaps["inductive"] < 1e-5
    assert gaps["transductive"] > 1e-3
    with pytest.raises(ConfigError, match=r"^norm must be transductive or inductive"):
        metalearner.load(run, norm="batch")


@pytest.mark.slow
def test_evaluate_and_adapt_state_the_mode_and_take_another(data: Path, tmp_path: Path) -> None:
    run = train(data, tmp_path / "run")
    done = run_cli("evaluate", str(run), "--norm", "inductive", "--tasks", "4", "--no-curve",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(4 tasks), inductive BatchNorm" in done.stdout, done.stdout
    assert not (run / "eval.json").exists()  # the run's own mode's score is left as it is
    saved = json.loads((run / "eval-inductive.json").read_text())
    assert saved["norm"] == "inductive" and saved["line"].endswith("inductive BatchNorm")
    refused = run_cli("evaluate", str(run), "--norm", "both", cwd=tmp_path)
    assert refused.returncode != 0 and "--norm must be transductive or inductive" in refused.stderr
    support = tmp_path / "support"
    for c, name in zip((9, 10, 11), "abc", strict=True):
        write_class(support / name, c, 1)
    query = images(data, [9], 1, skip=2)  # one item: too few for transductive BatchNorm
    adapted = run_cli("adapt", str(run), "--support", str(support), "--query", str(query[0]),
                      "--output", str(tmp_path / "p.csv"), cwd=tmp_path)  # fmt: skip
    assert adapted.returncode == 0, adapted.stderr
    assert "note: 1 query item(s) predicted together with transductive BatchNorm" in (
        adapted.stdout
    )
    assert "--norm inductive" in adapted.stdout and "Warning" not in adapted.stderr


def test_the_benchmark_report_states_each_strategys_mode(tmp_path: Path) -> None:
    plan = BenchmarkPlan(strategies=("maml", "protonet", "scratch"), budget="600steps")

    def result(name: str, norm: str | None) -> StrategyResult:
        score = Score(None, 0.5, 0.1)
        return StrategyResult(name, [0.4, 0.6], score, 1.0, 1, 600, 1.0, 1, norm=norm)

    results = [result("maml", "inductive"), result("protonet", "transductive")]
    seeds = {"seed": 0, "val_seed": 1001, "test_seed": 2002}
    doc = build_document(plan, results, {}, command="benchmark", seeds=seeds, provenance={})
    text = doc.markdown(tmp_path)
    table = next(line for line in text.splitlines() if line.startswith("| strategy"))
    assert table.rstrip(" |").endswith("BatchNorm")  # a column: each score's mode
    assert "| inductive |" in text and "| transductive |" in text
    assert "BatchNorm: transductive: " in text and "; inductive: " in text  # the setup says both
    alone = build_document(plan, [result("scratch", None)], {}, command="benchmark",
                           seeds=seeds, provenance={})  # fmt: skip
    assert "BatchNorm: none" in alone.markdown(tmp_path)
