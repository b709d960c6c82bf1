"""Run configs: typed YAML and --set overrides, resolution from the strategy, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metalearner.config import RunConfig, from_dict, load_config, resolve, to_dict, to_yaml
from metalearner.errors import ConfigError
from metalearner.presets import get_preset, list_presets


def test_defaults_come_from_the_strategy() -> None:
    maml = load_config(overrides=["strategy=maml"])
    assert (maml.optimizer.name, maml.optimizer.schedule) == ("adam", "constant")
    assert maml.optimizer.lr == pytest.approx(1e-3) and maml.meta_batch == 32
    reptile = load_config(overrides=["strategy=reptile"])
    assert (reptile.optimizer.name, reptile.optimizer.schedule) == ("sgd", "linear")
    assert reptile.optimizer.lr == pytest.approx(1.0) and reptile.meta_batch == 5
    proto = load_config(overrides=["strategy=protonet"])
    assert proto.optimizer.schedule == "step" and proto.optimizer.decay_every == 2000


def test_overrides_are_typed(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("strategy: metasgd\nsteps: 10\noptimizer: {lr: 0.01}\n")
    cfg = load_config(
        file,
        overrides=[
            "steps=20",
            "optimizer.clip=1",
            "data.dataset=sinusoid",
            "strategy_config.inner_lr_init=[0.01, 0.1]",
        ],
    )
    assert cfg.steps == 20 and cfg.optimizer.lr == pytest.approx(0.01)
    assert cfg.optimizer.clip == 1.0 and isinstance(cfg.optimizer.clip, float)
    assert cfg.strategy_config["inner_lr_init"] == (0.01, 0.1)


def test_resolved_yaml_round_trips() -> None:
    cfg = load_config(overrides=["strategy=reptile", "data.shots=5", "precision=bfloat16"])
    again = resolve(from_dict(RunConfig, yaml.safe_load(to_yaml(cfg)), ""))
    assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (["data.wayz=5"], ["data.wayz", "ways", "shots"]),
        (["stepz=5"], ["stepz", "steps"]),
        (["steps=many"], ["steps", "integer"]),
        (["optimizer.lr=fast"], ["optimizer.lr", "number"]),
        (["precision=float16"], ["precision", "float32", "bfloat16"]),
        (["data.dataset=imagenet"], ["data.dataset", "omniglot", "sinusoid"]),
        (["strategy=magic"], ["magic", "maml", "protonet"]),
        (["strategy_config.nope=1"], ["nope", "inner_lr"]),
        (["steps"], ["key=value"]),
        (["steps.x=1"], ["steps"]),
        (["steps=0"], ["steps", "at least 1"]),
        (["seed=1001"], ["val_seed"]),
        (["strategy_config.cuda_graph=true"], ["cuda_graph", "device=cuda"]),
    ],
)
def test_bad_settings_name_the_key_and_the_choices(override: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_preset_resolves_and_cites_its_source() -> None:
    presets = list_presets()
    names = {p.name for p in presets}
    for ways in (5, 20):
        for shots in (1, 5):
            for strategy in ("maml", "fomaml", "reptile", "protonet"):
                assert f"omniglot-{ways}w{shots}s-{strategy}" in names
    assert {"sinusoid-k5-maml", "sinusoid-k10-maml"} <= names
    for p in presets:
        cfg = load_config(base=p.load())
        assert p.source and p.expected, p.name
        assert cfg.steps >= 1000
    with pytest.raises(ConfigError, match="sinusoid-k5-maml"):
        get_preset("nope")
