"""Run configs: typed YAML and --set overrides, resolution from the strategy, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metalearner.config.presets import get_preset, list_presets
from metalearner.config.yaml_files import parse_yaml, read_saved_yaml, read_yaml
from metalearner.data.image_benchmarks import IMAGE_BENCHMARKS
from metalearner.errors import ConfigError, DataError
from metalearner.rl.config import load_rl_config, read_config
from metalearner.runs.config import (
    RunConfig,
    from_dict,
    load_config,
    resolve,
    to_dict,
    to_yaml,
)

SINE = ["--preset", "sinusoid-k5-maml", "--set", "val_tasks=4", "--set", "meta_batch=5"]
OMNIGLOT = ["data.dataset=omniglot", "data.ways=3", "data.meta_train_classes=10"]


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
        (["meta_batch=0"], ["'meta_batch'", "at least 1", "got 0"]),
        (["threads=0"], ["'threads'", "at least 1"]),
        (["optimizer.decay_every=0"], ["'optimizer.decay_every'", "at least 1"]),
        (["optimizer.decay_rate=-1"], ["'optimizer.decay_rate'", "(0, 1]"]),
        (["optimizer.decay_rate=1.5"], ["'optimizer.decay_rate'", "(0, 1]"]),
        (["optimizer.betas=[0.9, 2]"], ["'optimizer.betas'", "[0, 1)", "position 2"]),
        (["optimizer.name=adam", "optimizer.momentum=0.9"], ["'optimizer.momentum'", "SGD's"]),
        (["optimizer.name=sgd", "optimizer.nesterov=true"], ["nesterov", "momentum > 0"]),
        (["optimizer.weight_decay=-1"], ["'optimizer.weight_decay'", ">= 0"]),
        (
            ["optimizer.schedule=step", "optimizer.milestones=[[50, 0.1], [20, 0.01]]"],
            ["optimizer.milestones", "increasing order"],
        ),
        (["optimizer.milestones=[[50, 0.1]]"], ["optimizer.milestones", "schedule=step"]),
        (
            ["optimizer.schedule=step", "optimizer.milestones=[[50, 2]]"],
            ["optimizer.milestones", "(0, 1]"],
        ),
        (["optimizer.lr=.inf"], ["'optimizer.lr'", "> 0"]),
        (["seed=99999999999999999999999"], ["'seed'", "from 0 to 9223372036854775807"]),
        (["val_seed=-1"], ["'val_seed'", "from 0 to"]),
        (["test_seed=18446744073709551616"], ["'test_seed'", "from 0 to"]),
        (["data.split_seed=-5"], ["'data.split_seed'", "from 0 to"]),
        (["steps=1.5e0"], ["'steps'", "integer", "1.5"]),
        (["model=5"], ["'model'", "mapping of settings", "5"]),
        # Strategy settings are named as the user writes them, not by their config class.
        (["strategy=metasgd", "strategy_config.inner_lr=-1"], ["strategy_config.inner_lr", "> 0"]),
        (["strategy_config.inner_steps=x"], ["strategy_config.inner_steps", "integer"]),
        (
            ["strategy=reptile", "strategy_config.cuda_graph=false"],
            ["remove strategy_config.cuda_graph", "inner_lr"],
        ),
        # Class counts that cannot make tasks name the settings to change, not an option.
        ([*OMNIGLOT, "data.val_classes=0"], ["data.val_classes 0", "3-way", "at least data.ways"]),
        (
            [*OMNIGLOT, "data.val_classes=3", "strategy=protonet", "strategy_config.train_ways=29"],
            [
                "strategy_config.train_ways is 29",
                "28 training classes",
                "data.meta_train_classes 10 minus data.val_classes 3, times 4 rotations",
            ],
        ),
        ([*OMNIGLOT, "data.val_classes=10"], ["data.ways is 3", "only 0 training classes"]),
    ],
)
def test_bad_settings_name_the_key_and_the_choices(override: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=override)
    message = str(err.value)
    assert "\n" not in message and "--ways" not in message and "Config." not in message
    for word in words:
        assert word in message


def test_protonets_default_training_ways_fit_the_training_classes() -> None:
    # The paper's 60 ways are Omniglot's; ten training relations make ten-way training tasks.
    fewrel = ["strategy=protonet", "data.dataset=fewrel", "data.meta_train_classes=10",
              "data.val_classes=0", "data.ways=3"]  # fmt: skip
    assert load_config(overrides=fewrel).strategy_config["train_ways"] == 10
    assert load_config(overrides=["strategy=protonet"]).strategy_config["train_ways"] == 60
    with pytest.raises(ConfigError, match=r"strategy_config\.train_ways is 60"):
        load_config(overrides=[*fewrel, "strategy_config.train_ways=60"])  # given: kept, refused
    with pytest.raises(ConfigError, match=r"^data\.ways is 20 but only 10 training classes"):
        load_config(overrides=[*fewrel, "data.ways=20"])  # the tasks' ways, not the default's


def test_meta_sgd_evaluation_steps_follow_its_inner_steps_unless_given() -> None:
    def eval_steps(*settings: str) -> int:
        return load_config(overrides=list(settings)).strategy_config["eval_steps"]

    assert eval_steps("strategy=metasgd") == 1  # Li et al. train and test one step
    assert eval_steps("strategy=metasgd", "strategy_config.inner_steps=3") == 3
    assert eval_steps("strategy=metasgd", "strategy_config={inner_steps: 3, eval_steps: 5}") == 5
    assert eval_steps("strategy=maml", "strategy_config.inner_steps=3") == 10  # MAML: its own


def test_protonets_halve_the_step_size_every_2000_episodes_whatever_the_meta_batch() -> None:
    def decay_every(batch: int) -> int | None:
        cfg = load_config(overrides=["strategy=protonet", f"meta_batch={batch}"])
        return cfg.optimizer.decay_every

    assert (decay_every(1), decay_every(4), decay_every(3)) == (2000, 500, 667)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\xff\xfe\x00garbage", ["not UTF-8", "give a YAML file"]),
        (b"", ["is empty", "key: value"]),
        (b"# only a comment\n", ["is empty", "key: value"]),
        (b"- steps: 10\n", ["not a mapping of settings", "list", "key: value"]),
        (b"just words\n", ["not a mapping of settings", "str"]),
    ],
)
def test_files_that_hold_no_settings_are_config_errors(
    tmp_path: Path, content: bytes, words: list[str]
) -> None:
    file = tmp_path / "run.yaml"
    file.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    message = str(err.value)
    assert "\n" not in message and str(file) in message
    for word in words:
        assert word in message
    # The same file written by this program (a run's config.yaml) is damaged: a DataError.
    with pytest.raises(DataError, match=r"is damaged .*; retrain or restore it"):
        read_saved_yaml(file)


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a config file; give a YAML file"):
        load_config(tmp_path)
    run = tmp_path / "sine"
    run.mkdir()
    (run / "config.yaml").write_text("steps: 10\n")
    with pytest.raises(ConfigError, match=f"to continue the run use --resume --out {run}"):
        load_config(run)
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml(tmp_path)


def test_numbers_in_scientific_notation_are_numbers(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            "strategy=metasgd",
            "optimizer.lr=1e-4",
            "strategy_config.inner_lr=1e-2",
            "strategy_config.inner_steps=2E0",
            "time_budget=1e2",
            "val_every_seconds=1.0e5",  # (the dotted form YAML 1.1 reads; 1e30 is above the bound)
            "steps=1e3",
            "optimizer.betas=[9e-1, 0.99]",
        ]
    )
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    assert cfg.strategy_config["inner_lr"] == pytest.approx(1e-2)
    assert cfg.strategy_config["inner_steps"] == 2
    assert cfg.time_budget == 100.0 and cfg.val_every_seconds == 1e5
    assert cfg.steps == 1000 and isinstance(cfg.steps, int)  # a whole number: an integer
    assert cfg.optimizer.betas == (0.9, 0.99)
    file = tmp_path / "run.yaml"
    file.write_text("optimizer: {lr: 1e-3}\nsteps: 2e1\n")
    from_file = load_config(file)
    assert from_file.optimizer.lr == pytest.approx(1e-3) and from_file.steps == 20
    # A string that reads as a number is quoted when written, so it reads back as a string.
    named = load_config(overrides=["data.dataset=folder", "data.path='1e3'"])
    assert parse_yaml(to_yaml(named))["data"]["path"] == "1e3"


def test_rl_settings_take_scientific_notation_and_check_seeds(tmp_path: Path) -> None:
    cfg = load_rl_config("navigation2d", ["inner_lr=1e-2", "iterations=1e1", "ppo_lr=3E-4"])
    assert cfg.inner_lr == pytest.approx(0.01) and cfg.iterations == 10
    assert cfg.ppo_lr == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="'seed' must be an integer from 0 to"):
        load_rl_config("navigation2d", seed=99999999999999999999999)
    with pytest.raises(ConfigError, match="'test_seed' must be an integer from 0 to"):
        load_rl_config("navigation2d", ["test_seed=-3"])
    for content in (b"\xff\xfe\x00garbage", b"", b"[1, 2]\n"):
        (tmp_path / "config.yaml").write_bytes(content)
        with pytest.raises(DataError, match=r"config\.yaml is damaged"):
            read_config(tmp_path / "config.yaml")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "binary.yaml"], "binary.yaml is not UTF-8 text"),
        (["benchmark", "binary.yaml"], "binary.yaml is not UTF-8 text"),
        (["search", "binary.yaml"], "binary.yaml is not UTF-8 text"),
        (["train", "empty.yaml"], "empty.yaml is empty"),
        (["train", "list.yaml"], "list.yaml is not a mapping of settings"),
        (["train", "run"], "run is a run folder, not a config file; to continue the run use"),
        (["train", *SINE, "--set", "threads=0"], "'threads' must be at least 1"),
        (["train", *SINE, "--set", "optimizer.betas=[0.9,2]"], "[0, 1)"),
        (["train", *SINE, "--seed", "99999999999999999999999"], "'seed' must be an integer"),
        (["rl", "evaluate", "run"], "run/config.yaml is damaged (not UTF-8 text)"),
    ],
)
def test_bad_files_and_settings_on_the_command_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- steps: 10\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.yaml").write_bytes(b"\xff\xfe\x00garbage")
    result = subprocess.run(
        [sys.executable, "-m", "metalearner", *args, "--out", "out"] if args[0] != "rl"
        else [sys.executable, "-m", "metalearner", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr


def test_every_preset_resolves_and_cites_its_source() -> None:
    presets = list_presets()
    names = {p.name for p in presets}
    for ways in (5, 20):
        for shots in (1, 5):
            for strategy in ("maml", "fomaml", "reptile", "protonet"):
                assert f"omniglot-{ways}w{shots}s-{strategy}" in names
    assert {"sinusoid-k5-maml", "sinusoid-k10-maml"} <= names
    for shots in (1, 5):
        for method in ("maml", "protonet", "protonet-resnet12", "rfs-resnet12"):
            assert f"mini-5w{shots}s-{method}" in names
    colour = {entry.name for entry in IMAGE_BENCHMARKS}
    for p in presets:
        cfg = load_config(base=p.load())
        assert p.source and p.expected, p.name
        assert cfg.steps >= 1000
        if cfg.data.dataset not in colour:
            continue
        # The image benchmarks' presets say how the paper's code normalised, on how many
        # tasks it scored and what training costs on a GPU; they run as they say.
        assert p.gpu_time and p.paper_test_tasks, p.name
        assert p.norm_mode == cfg.model.norm, p.name
        assert p.test_task_count in (None, cfg.test_tasks), p.name
    with pytest.raises(ConfigError, match="sinusoid-k5-maml"):
        get_preset("nope")


def test_any_length_lists_and_mappings_are_checked_and_take_their_annotated_form() -> None:
    from collections.abc import Mapping
    from typing import Any

    from metalearner.config.types import describe_type, match_type

    assert match_type([1, 2, 3], tuple[int, ...]) == (True, (1, 2, 3))
    assert match_type([], tuple[float, ...]) == (True, ())
    assert match_type([1, "x"], tuple[int, ...])[0] is False
    assert match_type([0, 0.5], tuple[float, ...]) == (True, (0.0, 0.5))
    nested = match_type({"maml": ["steps=2"]}, Mapping[str, tuple[str, ...]])
    assert nested == (True, {"maml": ("steps=2",)})
    assert match_type({"maml": [3]}, Mapping[str, tuple[str, ...]])[0] is False
    assert match_type({"a": {"b": 1}}, Mapping[str, Mapping[str, Any]])[0] is True
    assert describe_type(tuple[int, ...]) == "a list, each an integer"
