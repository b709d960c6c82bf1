"""FewRel text tasks: the loader, its splits and vocabulary, the encoding and the text encoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metalearner import functional as fx
from metalearner.data.fewrel import load_fewrel
from metalearner.data.fewrel_json import load_relations
from metalearner.data.text import (
    MAX_LENGTH,
    UNK,
    Sentence,
    Vocabulary,
    decode,
    encode,
    find_span,
    tokenize,
)
from metalearner.errors import ConfigError, DataError
from metalearner.nn.backbones import build_model
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.strategies import build
from metalearner.tasks import EpisodeSampler, TaskBatch

sys.path.insert(0, str(Path(__file__).parent))
from fewrel_fixture import write_fake_fewrel


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_fewrel(tmp_path_factory.mktemp("fewrel"))


def test_loader_reads_tokens_entity_spans_and_names(tmp_path: Path) -> None:
    tokens = ["Marie", "Curie", "was", "born", "in", "Warsaw", "."]
    record = {"tokens": tokens, "h": ["marie curie", "Q7186", [[0, 1]]], "t": ["w", "Q1", [[5]]]}
    (tmp_path / "rel.json").write_text(json.dumps({"P19": [record], "P1": [record]}))
    relations = load_relations(tmp_path / "rel.json", "wiki", {"P19": "place of birth"})
    assert [r.id for r in relations] == ["P1", "P19"]  # sorted: independent of the file's order
    assert relations[1].name == "P19 (place of birth)" and relations[0].name == "P1"
    assert relations[1].sentences[0] == Sentence(tuple(tokens), (0, 2), (5, 6))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("text", "is not an object"),
        ({"tokens": [], "h": [], "t": []}, "'tokens' must be a non-empty list"),
        ({"tokens": ["a", "b"], "t": ["b", "Q", [[1]]]}, "'h' must be \\[name, id"),
        ({"tokens": ["a", "b"], "h": ["a", "Q", []], "t": ["b", "Q", [[1]]]}, "'h' has no token"),
        (
            {"tokens": ["a", "b"], "h": ["a", "Q", [[0]]], "t": ["b", "Q", [[7]]]},
            r"'t' positions \[7\] are not token indices 0..1",
        ),
    ],
)
def test_a_malformed_record_is_named_with_its_file_and_relation(
    tmp_path: Path, record: object, message: str
) -> None:
    good = {"tokens": ["a", "b"], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[1]]]}
    (tmp_path / "val_wiki.json").write_text(json.dumps({"P5": [good, good, record]}))
    with pytest.raises(DataError, match=f"val_wiki.json: relation 'P5', record 2: {message}"):
        load_relations(tmp_path / "val_wiki.json", "wiki", {})


def test_unreadable_or_missing_files_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "fewrel").mkdir()
    with pytest.raises(DataError, match=r"val_wiki.json .* is not in .*METALEARNER_DATA"):
        load_fewrel(tmp_path)
    (tmp_path / "fewrel" / "val_wiki.json").write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON \\(line 1\\)"):
        load_fewrel(tmp_path)
    (tmp_path / "fewrel" / "val_wiki.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="must hold a JSON object"):
        load_fewrel(tmp_path)


def test_wiki_split_is_fixed_disjoint_and_validates_on_held_out_sentences(fake: Path) -> None:
    data, split = load_fewrel(fake)
    assert split.sizes() == {"train": 10, "val": 10, "test": 6}
    assert data.x.dtype == torch.int64 and data.x.shape == (16 * 14, 3, MAX_LENGTH)
    counts = data.counts()
    assert counts[split.train].tolist() == [12] * 10 and counts[split.val].tolist() == [2] * 10
    for t, v in zip(split.train.tolist(), split.val.tolist(), strict=True):
        assert data.class_names[v] == data.class_names[t] + ", held-out sentences"
    rows = {c: data.x[data.y == c] for c in range(data.num_classes)}
    for t, v in zip(split.train.tolist(), split.val.tolist(), strict=True):  # no sentence twice
        assert not (rows[t][:, None] == rows[v][None]).flatten(2).all(2).any()
    again, same = load_fewrel(fake)
    assert torch.equal(again.x, data.x) and torch.equal(same.test, split.test)
    other = load_fewrel(fake, seed=1)[0]
    assert other.class_names != data.class_names
    _, held = load_fewrel(fake, val=5)  # relations held out instead, as in the Vinyals split
    assert held.sizes() == {"train": 5, "val": 5, "test": 6}


def test_the_vocabulary_comes_from_training_sentences_only(fake: Path) -> None:
    data, split = load_fewrel(fake)
    vocab = Vocabulary(data.preprocessing["vocabulary"])  # type: ignore[arg-type]
    rid = [data.class_names[c].split()[0] for c in range(data.num_classes)]
    for c in split.train.tolist():
        assert vocab.ids([f"only{rid[c].lower()}"]) != [UNK]
    for c in split.test.tolist():  # a word of a test relation alone is unknown to the model
        assert vocab.ids([f"only{rid[c].lower()}"]) == [UNK]
        assert f"only{rid[c].lower()}" not in vocab.words
    test_rows = data.x[torch.isin(data.y, split.test)]
    assert (test_rows[:, 0] == UNK).any(1).all()


def test_pubmed_split_trains_exactly_as_the_wiki_split(fake: Path) -> None:
    wiki, a = load_fewrel(fake, split="wiki")
    pubmed, b = load_fewrel(fake, split="pubmed")
    assert pubmed.preprocessing == wiki.preprocessing
    for part in ("train", "val"):
        assert [wiki.class_names[c] for c in a[part]] == [pubmed.class_names[c] for c in b[part]]
    assert {pubmed.groups[c] for c in b.test.tolist()} == {"pubmed"} and b.sizes()["test"] == 10
    with pytest.raises(DataError, match=r"train_wiki.json \(needed by split 'official'\)"):
        load_fewrel(fake, split="official")
    with pytest.raises(ConfigError, match="at most 15"):
        load_fewrel(fake, meta_train=16)


def test_official_split_trains_on_train_wiki_and_tests_on_val_wiki(tmp_path: Path) -> None:
    root = write_fake_fewrel(tmp_path, train=8, per=7)
    data, split = load_fewrel(root, split="official")
    assert split.sizes() == {"train": 8, "val": 8, "test": 16}
    assert all(data.class_names[c].startswith("T") for c in split.train.tolist())


def test_encoding_positions_windows_and_tokens() -> None:
    vocab = Vocabulary.build([["a", "b", "c"]], min_count=1)
    s = Sentence(("A", "b", "zzz", "c", "a"), (0, 1), (3, 5))
    x = encode([s], vocab, 8)[0]
    assert x[0].tolist() == [*vocab.ids(["a", "b"]), UNK, *vocab.ids(["c", "a"]), 0, 0, 0]
    assert x[1].tolist() == [8, 9, 10, 11, 12, 0, 0, 0]  # 0 in the head, +1, +2, ... after it
    assert x[2].tolist() == [5, 6, 7, 8, 8, 0, 0, 0]  # -3, -2, -1 before the tail, 0 inside
    assert decode(x, vocab) == "[H a] b <unk> [T c a]"
    long = Sentence(tuple(f"w{i}" for i in range(30)), (20, 21), (24, 25))
    window = encode([long], vocab, 8)[0]
    assert (window[1] == 8).sum() == 1 and (window[2] == 8).sum() == 1  # both entities kept
    far = Sentence(tuple(f"w{i}" for i in range(30)), (0, 1), (29, 30))
    assert encode([far], vocab, 8)[0, 1].tolist() == list(range(8, 16))  # clipped at L - 1
    assert tokenize("Curie, born 1867.") == ["Curie", ",", "born", "1867", "."]
    assert find_span(["the", "Royal", "Society", "."], "royal society") == (1, 3)
    assert find_span(["a"], "b") is None


def test_textcnn_is_a_pure_function_of_tasks_and_vmaps() -> None:
    net = build_model("textcnn", (3, 10), 4, generator=0, vocab_size=30, filters=12)
    assert {k.split(".")[0] for k, _ in net.named_parameters()} == {"features", "head"}
    assert float(net.features.word.weight[0].detach().abs().sum()) == 0  # the padding row
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randint(1, 30, (2, 5, 10), generator=g)] + [
        torch.randint(1, 20, (2, 5, 10), generator=g) for _ in range(2)], dim=2)  # fmt: skip
    params = fx.params_of(net)
    both = functional_call(net, params, (x,))
    assert both.shape == (2, 5, 4)
    one = functional_call(net, params, (x[1],))
    mapped = torch.func.vmap(lambda xt: functional_call(net, params, (xt,)))(x)
    assert torch.allclose(both[1], one) and torch.allclose(mapped, both)
    assert torch.allclose(net(x[1, :1]), one[:1])  # a sentence's features ignore its batch
    with pytest.raises(ConfigError, match="needs vocab_size"):
        build_model("textcnn", (3, 10), 4)
    with pytest.raises(ConfigError, match="sentences encoded as \\[3, L\\]"):
        build_model("textcnn", (1, 28, 28), 4, vocab_size=30)


def test_second_order_maml_on_text_matches_a_reference_and_vmap_matches_the_loop() -> None:
    net = build_model("textcnn", (3, 8), 3, generator=0, dtype=torch.float64, vocab_size=20,
                      word_dim=4, position_dim=2, filters=6)  # fmt: skip
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 16, (2, 6, 3, 8), generator=g)
    y = torch.arange(3).repeat(2).expand(2, -1).contiguous()
    batch = TaskBatch(ids[:, :3], y[:, :3], ids[:, 3:], y[:, 3:], torch.arange(3).expand(2, 3))
    grads = {}
    for batching in ("vmap", "loop"):
        maml = build("maml", net, {"inner_lr": 0.3, "inner_steps": 2, "batching": batching})
        params = maml.init_params(0)
        grads[batching], _ = maml.meta_grads(params, batch)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    fn = fx.functional(net)
    loss = torch.zeros((), dtype=torch.float64)
    for t in range(2):  # the inner loop by hand, with autograd's double backward
        fast = dict(leaves)
        for _ in range(2):
            inner = F.cross_entropy(fn(fast, batch.support_x[t]), batch.support_y[t])
            step = torch.autograd.grad(inner, list(fast.values()), create_graph=True)
            fast = {k: v - 0.3 * s for (k, v), s in zip(fast.items(), step, strict=True)}
        loss = loss + F.cross_entropy(fn(fast, batch.query_x[t]), batch.query_y[t]) / 2
    reference = torch.autograd.grad(loss, list(leaves.values()))
    for (k, _), want in zip(leaves.items(), reference, strict=True):
        for got in grads.values():
            assert torch.allclose(got[k], want, rtol=1e-9, atol=1e-12), k


def test_fewrel_config_resolves_its_own_defaults_and_builds_textcnn(fake: Path) -> None:
    cfg = load_config(overrides=["data.dataset=fewrel", "strategy=protonet", "data.queries=1",
                                 "strategy_config.train_ways=5"])  # fmt: skip
    d = cfg.data
    assert (d.split, d.meta_train_classes, d.val_classes, d.max_length) == ("wiki", 10, 0, 40)
    omniglot = load_config(overrides=["data.dataset=omniglot"]).data
    assert (omniglot.split, omniglot.meta_train_classes, omniglot.val_classes) == (
        "vinyals", 1200, 100)  # fmt: skip
    exp = build_experiment(cfg, data_dir=fake)
    assert exp.meta["backbone"]["name"] == "textcnn" and exp.meta["input_shape"] == [3, 40]
    assert exp.meta["preprocessing"]["kind"] == "text"
    batch = exp.train.sample(2, generator=torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (2, 5, 3, 40) and batch.support_x.dtype == torch.int64
    assert isinstance(exp.test_source, EpisodeSampler)
    for bad, message in [
        (["data.split=lake"], "not a split of fewrel; use one of wiki, pubmed, official"),
        (["data.val_classes=2"], "cannot make 5-way validation tasks"),
        (["data.max_length=0"], "data.max_length"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(overrides=["data.dataset=fewrel", *bad])
    with pytest.raises(ConfigError, match="not a split of omniglot"):
        load_config(overrides=["data.dataset=omniglot", "data.split=pubmed"])


# --- the real data (../shared/data or METALEARNER_DATA) -------------------------------------


@pytest.mark.data
def test_real_fewrel_wiki_and_pubmed(data_dir: Path) -> None:
    data, split = load_fewrel(data_dir)
    assert data.x.shape == (11200, 3, 40) and data.counts().tolist() == [600] * 10 + [100] * 10 + [
        700] * 6  # fmt: skip
    test = sorted(data.class_names[c].split()[0] for c in split.test.tolist())
    assert test == ["P155", "P177", "P2094", "P25", "P364", "P921"]  # the documented split
    assert 5000 < len(data.preprocessing["vocabulary"]) < 20000  # type: ignore[arg-type]
    pubmed, b = load_fewrel(data_dir, split="pubmed")
    assert b.sizes() == {"train": 10, "val": 10, "test": 10} and len(pubmed) == 8000
    tasks = EpisodeSampler(pubmed, b.test, ways=5, shots=5, queries=15).fixed(4, seed=0)
    assert tasks.batch(0, 4).support_x.shape == (4, 25, 3, 40)
