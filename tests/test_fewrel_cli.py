"""FewRel as a user runs it: train, evaluate and adapt from the command line; benchmark parts."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

import metalearner
from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.benchmark.suite import PUBMED, build_suite
from metalearner.errors import DataError
from metalearner.runs.config import load_config
from metalearner.runs.folder import read_run_config
from metalearner.training.loop import meta_train

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli as cli
from fewrel_fixture import write_fake_fewrel

TINY = [
    "data.ways=3",
    "data.queries=1",
    "strategy_config.train_ways=3",
    "steps=4",
    "val_every=2",
    "val_tasks=4",
    "meta_batch=2",
    "threads=1",
]


def sentence(relation: str, name: str) -> dict[str, object]:
    """A new sentence of one of the fake relations (its cue word between the entities)."""
    tokens = ["the", name, "of", f"cue{relation}", "in", "paris", "city", "."]
    return {"tokens": tokens, "h": name, "t": "Paris city"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fewrel(tmp_path_factory.mktemp("fewrel_cli") / "data")


def test_train_evaluate_and_adapt_on_text_from_the_command_line(data: Path, tmp_path: Path) -> None:
    sets = [f"--set={s}" for s in TINY]
    trained = cli("train", "--preset", "fewrel-5w1s-protonet", "--data-dir", str(data), *sets,
                  "--out=run", cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    evaluated = cli("evaluate", "run", "--tasks", "6", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy " in evaluated.stdout and "(6 tasks)" in evaluated.stdout
    # The same model on the PubMed relations: a cross-domain score beside the wiki one.
    wiki = (tmp_path / "run" / "eval.json").read_text()
    crossed = cli("evaluate", "run", "--tasks", "6", "--split", "pubmed", cwd=tmp_path)
    assert crossed.returncode == 0, crossed.stderr
    assert "eval-pubmed.json" in crossed.stdout
    assert json.loads((tmp_path / "run" / "eval-pubmed.json").read_text())["num_tasks"] == 6
    assert (tmp_path / "run" / "eval.json").read_text() == wiki  # the wiki score stays
    refused = cli("evaluate", "run", "--split", "official", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "cannot be scored on split 'official'" in refused.stderr
    # A new task: 3 relations, one support sentence each as CSV, labeled queries as JSON lines.
    with (tmp_path / "support.csv").open("w", newline="") as f:
        rows = [("the ada of cuep3 in paris city .", "ada", "Paris", "p3"),
                ("the bob of cuep7 in rome city .", "bob", "rome city", "p7"),
                ("the cy of cuep9 in oslo city .", "cy", "oslo", "p9")]  # fmt: skip
        csv.writer(f).writerows([("sentence", "head", "tail", "relation"), *rows])
    query = [sentence(r, n) | {"relation": f"p{r[1:]}"} for r in ("p3", "p7", "p9") for n in "de"]
    query[0]["h"] = ["d", "Q1", [[1]]]  # a FewRel-style entity with token positions
    (tmp_path / "query.jsonl").write_text("\n".join(json.dumps(q) for q in query) + "\n")
    adapted = cli("adapt", "run", "--support", "support.csv", "--query", "query.jsonl",
                  "--label", "relation", cwd=tmp_path)  # fmt: skip
    assert adapted.returncode == 0, adapted.stderr
    assert "adapted protonet to 3 classes from 3 examples" in adapted.stdout
    assert "accuracy " in adapted.stdout
    with (tmp_path / "predictions.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [r["item"] for r in written] == [f"query.jsonl:{i}" for i in range(1, 7)]
    assert {r["prediction"] for r in written} <= {"p3", "p7", "p9"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"tokens": ["a", "b"], "h": "a", "t": "zebra", "relation": "x"}))
    failed = cli("adapt", "run", "--support", "support.csv", "--query", str(bad),
                 "--label", "relation", cwd=tmp_path)  # fmt: skip
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "bad.jsonl line 1: the tail entity 'zebra' is not in the sentence" in failed.stderr


def test_python_api_adapts_maml_to_records_and_reads_files(data: Path, tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.dataset=fewrel", "strategy=maml", *TINY[:2], *TINY[3:]])
    meta_train(cfg, tmp_path / "maml", data_dir=data, quiet=True)
    learner = metalearner.load(tmp_path / "maml")
    assert learner.text and learner.max_ways == 3
    support = [sentence(r, "ada") for r in ("p2", "p4")]
    task = learner.adapt(support, ["two", "four"], steps=2)
    prediction = task.predict([sentence("p4", "bob"), sentence("p2", "cy"), sentence("p2", "d")])
    assert prediction.scores.shape == (3, 2) and torch.isfinite(prediction.scores).all()
    with pytest.raises(DataError, match="record 0: give the head entity"):
        learner.adapt([{"tokens": ["a"], "t": "a"}], ["x"])
    from metalearner.inference.taskfiles import read_items, read_support

    (tmp_path / "q.csv").write_text("tokens,head,tail\nthe ada of cuep2 x y,ada,y\n")
    items = read_items([tmp_path / "q.csv"], learner)
    assert items.labels is None and items.x.shape == (1, 3, 40) and items.x.dtype == torch.int64
    with pytest.raises(DataError, match="no labels; give a CSV or JSON-lines file with a 'label'"):
        read_support(tmp_path / "q.csv", learner)
    (tmp_path / "mixed.jsonl").write_text(
        json.dumps(sentence("p2", "a") | {"label": "x"}) + "\n" + json.dumps(sentence("p2", "b"))
    )
    with pytest.raises(DataError, match=r"mixed.jsonl line 2 has no 'label' while others do"):
        read_items([tmp_path / "mixed.jsonl"], learner)
    with pytest.raises(DataError, match="one CSV or JSON-lines file of sentences"):
        read_items([tmp_path], learner)
    (tmp_path / "cols.csv").write_text("text,label\nhello,x\n")
    with pytest.raises(DataError, match="needs 'sentence' \\(or 'tokens'\\), 'head' and 'tail'"):
        read_items([tmp_path / "cols.csv"], learner)


def test_benchmark_scores_fewrel_on_pubmed_with_the_training_vocabulary(data: Path) -> None:
    plan = BenchmarkPlan(
        dataset="fewrel", strategies=("protonet", "maml"), ways=5, queries=1, tasks=4,
        sweep_tasks=2, sweep_shots=(1,), label_noise=(0.0,), cross_domain=True, budget="2steps",
    )  # fmt: skip
    configs = {name: plan.run_config(name) for name in plan.strategies}
    assert configs["protonet"].data.split == "wiki"  # cross-domain does not change training
    assert configs["maml"].model.name == "textcnn"  # from the fewrel-5w1s-* presets
    suite = build_suite(plan, configs, data)
    pubmed = suite.cross[PUBMED].batch(0, 4)
    assert pubmed.support_x.shape == (4, 5, 3, 40) and len(suite.test) == 4
    with pytest.raises(Exception, match=r"cross_domain needs Omniglot .* or FewRel"):
        BenchmarkPlan(dataset="folder", path="x", cross_domain=True)


def test_search_chooses_between_strategies_on_text(data: Path, tmp_path: Path) -> None:
    from metalearner.search import SearchPlan, finish, search_trials

    plan = SearchPlan(
        dataset="fewrel", ways=3, queries=1, strategies=("protonet", "finetune"), trials=3,
        trial_budget="3steps", budget="3steps", val_tasks=4, tasks=4,
        overrides=("threads=1", "meta_batch=2", "data.queries=1"),  # training queries
    )  # fmt: skip
    study = search_trials(plan, tmp_path / "s", data_dir=data, log=lambda _: None)
    assert len(study.trials) == 3
    assert all(0.0 <= t.value <= 1.0 for t in study.trials if t.value is not None)
    result = finish(plan, tmp_path / "s", data_dir=data, log=lambda _: None)
    assert result.test.metric == "accuracy" and result.test.num_tasks == 4
    best = read_run_config(tmp_path / "s" / "best")
    assert best.data.dataset == "fewrel" and best.data.split == "wiki"
    assert best.strategy in ("protonet", "finetune")
