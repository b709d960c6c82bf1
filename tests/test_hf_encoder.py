"""A pretrained Hugging Face encoder (``model.name: hf``): all-MiniLM-L6-v2 from the shared data.

Its features are checked against ``transformers.AutoModel`` called directly and pooled by hand,
its encoding of marked sentences against the tokenizer called directly on the marked text, its
weights through every strategy's ``init_params``, and a run from the command line: train, then
``adapt`` on a CSV whose sentences are encoded as the training sentences were.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, vmap

from metalearner.data.fewrel import load_fewrel
from metalearner.data.subwords import SubwordEncoding
from metalearner.data.text import Sentence
from metalearner.errors import ConfigError, MissingExtraError
from metalearner.inference.textfiles import read_text_items
from metalearner.nn.backbones import build_model
from metalearner.nn.hf import load_tokenizer, pretrained_features
from metalearner.runs.config import load_config
from metalearner.strategies import build
from metalearner.tasks import TaskBatch

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli as cli
from fewrel_fixture import write_fake_fewrel

transformers = pytest.importorskip("transformers")

SENTENCES = [
    Sentence(("Marie", "Curie", "was", "born", "in", "Warsaw", "."), (0, 2), (5, 6)),
    Sentence(("The", "Vistula", "flows", "through", "Krakow"), (1, 2), (4, 5)),
    # The tail before the head.
    Sentence(("Paris", "is", "the", "capital", "of", "France", ",", "a", "land"), (5, 6), (0, 1)),
]


@pytest.fixture
def minilm(data_dir: Path) -> str:
    path = data_dir / "models" / "all-MiniLM-L6-v2"
    if not (path / "config.json").is_file():
        pytest.skip(f"no pretrained encoder at {path}")
    return str(path)


@pytest.mark.data
def test_encoding_is_the_tokenizer_on_the_marked_text_and_features_are_automodels(
    minilm: str,
) -> None:
    encoding = SubwordEncoding(minilm, 24)
    x = encoding.encode(SENTENCES)
    tokenizer = load_tokenizer(minilm)
    texts = ["@ Marie Curie @ was born in # Warsaw # .", "The @ Vistula @ flows through # Krakow #",
             "# Paris # is the capital of @ France @ , a land"]  # fmt: skip
    reference = tokenizer(texts, padding="max_length", max_length=24, return_tensors="pt")
    assert torch.equal(x[:, 0], reference["input_ids"])
    assert torch.equal(x[:, 1], reference["attention_mask"])
    words = [tokenizer.convert_ids_to_tokens(row) for row in reference["input_ids"].tolist()]
    head = [w.index("@") for w in words]  # no sentence here holds an @ or # of its own
    tail = [w.index("#") for w in words]
    assert (x[:, 2] == 1).nonzero()[:, 1].tolist() == head
    assert (x[:, 2] == 2).nonzero()[:, 1].tolist() == tail

    model = transformers.AutoModel.from_pretrained(minilm, local_files_only=True).eval()
    with torch.no_grad():
        hidden = model(**reference).last_hidden_state  # [3, 24, 384]
    mask = reference["attention_mask"].unsqueeze(-1).float()
    rows = torch.arange(3)
    expected = {
        "mean": (hidden * mask).sum(1) / mask.sum(1),
        "cls": hidden[:, 0],
        "entity-start": torch.cat([hidden[rows, head], hidden[rows, tail]], dim=-1),
    }
    expected["entity-mean"] = torch.cat([expected["entity-start"], expected["mean"]], dim=-1)
    for pooling, want in expected.items():
        net = build_model("hf", (3, 24), 5, path=minilm, pooling=pooling)
        with torch.no_grad():
            got = net.features(x)
            alone = torch.cat([net.features(x[i : i + 1]) for i in range(3)])  # cut shorter
        assert got.shape == want.shape and net.feature_dim == want.shape[1]
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(alone, want, atol=2e-5, rtol=1e-4)
    params = dict(net.named_parameters())
    tasks = torch.stack([x, x.flip(0)])  # [2 tasks, 3, 3, 24], under vmap: no cut, same values
    batched = vmap(lambda t: functional_call(net.features, _sub(params), (t,)))(tasks)
    torch.testing.assert_close(batched[0], expected[net.features.pooling], atol=2e-5, rtol=1e-4)


@pytest.mark.data
def test_a_long_sentence_keeps_its_marked_entities_in_the_window(minilm: str) -> None:
    words = tuple(f"w{i}" for i in range(60))
    x = SubwordEncoding(minilm, 16).encode([Sentence(words, (40, 41), (45, 46))])
    assert int(x[0, 1].sum()) == 16 and (x[0, 2] == 1).sum() == 1 and (x[0, 2] == 2).sum() == 1
    with pytest.raises(ConfigError, match=r"data.max_length 5 leaves 3 tokens"):
        SubwordEncoding(minilm, 5).encode(SENTENCES)


@pytest.mark.data
def test_the_dataset_cache_is_keyed_on_the_encoding(
    minilm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METALEARNER_CACHE", str(tmp_path / "cache"))
    data = write_fake_fewrel(tmp_path / "data")
    words, _ = load_fewrel(data)
    punct, _ = load_fewrel(data, encoding=SubwordEncoding(minilm, 24))
    tags = ("[E1]", "[/E1]", "[E2]", "[/E2]")
    tagged, _ = load_fewrel(data, encoding=SubwordEncoding(minilm, 24, tags))
    again, _ = load_fewrel(data, encoding=SubwordEncoding(minilm, 24))  # a hit
    assert len(list((tmp_path / "cache").glob("fewrel-*.npz"))) == 3
    assert torch.equal(again.x, punct.x) and not torch.equal(tagged.x, punct.x)
    assert "vocabulary" in words.preprocessing and words.x.shape[1:] == (3, 40)
    assert tagged.preprocessing == {"kind": "text", "tokenizer": minilm, "max_length": 24,
                                    "markers": list(tags)}  # fmt: skip


@pytest.mark.data
def test_pretrained_weights_are_every_strategys_start_and_maml_takes_second_derivatives(
    minilm: str,
) -> None:
    reference = transformers.AutoModel.from_pretrained(minilm, local_files_only=True)
    pretrained = {f"features.model.{k}": v for k, v in reference.named_parameters()}
    net = build_model("hf", (3, 24), 2, path=minilm, pooling="mean")
    x = SubwordEncoding(minilm, 24).encode(SENTENCES + SENTENCES[:1])
    batch = TaskBatch(x[None, :2], torch.tensor([[0, 1]]), x[None, 2:], torch.tensor([[1, 0]]))
    configs = [("protonet", {}), ("anil", {"inner_steps": 1}), ("finetune", {"num_classes": 4}),
               ("maml", {"inner_steps": 1, "inner_lr": 1e-3})]  # fmt: skip
    for name, config in configs:
        strategy = build(name, net, config)
        a, b = strategy.init_params(0), strategy.init_params(1)
        for k, v in pretrained.items():
            assert torch.equal(a[k], v) and torch.equal(b[k], v), (name, k)
        if "head.weight" in a:  # the new head is drawn from the seed
            assert not torch.equal(a["head.weight"], b["head.weight"]), name
    # Second-order MAML through the encoder: a meta-gradient reaches its first layer.
    grads, metrics = strategy.meta_grads(a, batch)
    first = grads["features.model.embeddings.word_embeddings.weight"]
    assert torch.isfinite(first).all() and first.abs().sum() > 0 and 0 <= metrics["accuracy"] <= 1


@pytest.mark.data
def test_a_model_path_that_holds_no_model_or_no_transformers_is_one_sentence(
    minilm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"model.path /nowhere/minilm is not a folder; give"):
        pretrained_features("/nowhere/minilm", (3, 16), pooling="mean")
    with pytest.raises(ConfigError, match=r"holds no model transformers can load"):
        pretrained_features(str(tmp_path), (3, 16), pooling="mean")
    with pytest.raises(ConfigError, match=r"takes sentences encoded as \[3, L\]"):
        pretrained_features(minilm, (1, 28, 28), pooling="mean")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'metalearner\[text\]'"):
        pretrained_features(minilm, (3, 16), pooling="mean")


@pytest.mark.data
@pytest.mark.slow
def test_train_then_adapt_a_csv_encoded_as_in_training_from_the_command_line(
    minilm: str, tmp_path: Path
) -> None:
    data = write_fake_fewrel(tmp_path / "data")
    sets = ["model.name=hf", f"model.path={minilm}", "model.pooling=entity-start",
            "data.max_length=24", "data.ways=3", "data.queries=1", "strategy_config.train_ways=3",
            "optimizer.lr=2e-5", "steps=2", "val_every=2", "val_tasks=2", "threads=1"]  # fmt: skip
    trained = cli("train", "--preset", "fewrel-5w1s-protonet", "--data-dir", str(data),
                  *(f"--set={s}" for s in sets), "--out=run", cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((tmp_path / "run" / "checkpoints" / "best" / "meta.json").read_text())
    assert meta["backbone"] == {"name": "hf", "out_features": 3, "path": minilm,
                                "pooling": "entity-start"}  # fmt: skip
    assert meta["preprocessing"] == {"kind": "text", "tokenizer": minilm, "max_length": 24,
                                     "markers": ["@", "@", "#", "#"]}  # fmt: skip
    # Three test relations' first sentences as a user's CSV: encoded as the training data was.
    encoding = SubwordEncoding(minilm, 24)
    fewrel, split = load_fewrel(data, encoding=encoding)
    raw = json.loads((data / "fewrel" / "val_wiki.json").read_text())
    names = [fewrel.class_names[int(c)].split()[0] for c in split.test[:3]]
    with (tmp_path / "support.csv").open("w", newline="") as f:
        rows = [(" ".join(raw[r][0]["tokens"]), raw[r][0]["h"][0], raw[r][0]["t"][0], r)
                for r in names]  # fmt: skip
        csv.writer(f).writerows([("tokens", "head", "tail", "relation"), *rows])
    x, labels, _ = read_text_items([tmp_path / "support.csv"], meta["preprocessing"],
                                   label="relation", what="support")  # fmt: skip
    first = [int((fewrel.y == c).nonzero()[0]) for c in split.test[:3]]
    assert labels == names and torch.equal(x, fewrel.x[first])
    (tmp_path / "query.csv").write_text((tmp_path / "support.csv").read_text())
    adapted = cli("adapt", "run", "--support", "support.csv", "--query", "query.csv",
                  "--label", "relation", cwd=tmp_path)  # fmt: skip
    assert adapted.returncode == 0, adapted.stderr
    assert "adapted protonet to 3 classes from 3 examples" in adapted.stdout
    assert "accuracy 100.00%" in adapted.stdout.replace("100.0%", "100.00%")  # its own support
    missing = cli("train", "--preset", "fewrel-5w1s-protonet", "--data-dir", str(data),
                  *(f"--set={s}" for s in sets), "--set=model.path=../no/such/model",
                  "--out=run2", cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "model.path ../no/such/model is not a folder" in missing.stderr


def test_model_hf_settings_are_checked_and_its_sentences_counted_in_tokens() -> None:
    base = ["data.dataset=fewrel", "strategy=protonet", "model.name=hf"]
    with pytest.warns(UserWarning, match=r"set optimizer.lr \(2e-5"):
        cfg = load_config(overrides=[*base, "model.path=org/encoder"])
    assert cfg.model.path == "org/encoder" and cfg.data.max_length == 128  # a Hub id, as given
    assert load_config(overrides=["data.dataset=fewrel"]).data.max_length == 40  # textcnn's words
    for bad, message in [
        ([*base], "model.name hf needs model.path"),
        ([*base, "model.path=x", "data.dataset=omniglot"], "data.dataset omniglot holds no text"),
        (["data.dataset=fewrel", "model.path=x"], "model.path is set but model.name is 'auto'"),
        ([*base, "model.path=x", "model.pooling=max"], "model.pooling"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides=[*bad, "optimizer.lr=2e-5"])


def _sub(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("features."): v for k, v in params.items() if k.startswith("features.")}
