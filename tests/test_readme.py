"""The README's examples hold as written: its Python blocks run and its commands parse.

A README drifts while the code moves on; these tests read README.md itself, so a renamed option,
a removed preset, a setting that no longer exists or a shape that changed fails here first.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.main import get_command

import metalearner
from image_classes import write_class
from metalearner.benchmark import load_plan
from metalearner.cli import app
from metalearner.config.presets import get_preset
from metalearner.rl.config import load_rl_config
from metalearner.runs.config import load_config
from metalearner.search import load_search_plan
from metalearner.training.loop import meta_train

README = Path(__file__).resolve().parents[1] / "README.md"

# What `metalearner train`, `benchmark` and `search` take besides their settings.
NOT_SETTINGS = {"config", "data_dir", "out", "quiet", "resume", "backend"}


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


def commands() -> list[list[str]]:
    """Each ``metalearner`` command of the README's bash blocks: its arguments, comments dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            at = [i for i, w in enumerate(words) if w.endswith("metalearner")]
            if at:
                found.append(words[at[0] + 1 :])
    return found


def parse(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The subcommand's path and its parameters, parsed and converted as the CLI would."""
    command: Any = get_command(app)
    path = []
    while hasattr(command, "list_commands"):  # a group: the next word names its command
        if not args and command.invoke_without_command:  # a group that runs alone (presets)
            break
        path.append(args[0])
        command = command.get_command(None, args.pop(0))
        assert command is not None, f"no command {' '.join(path)}"
    return path, command.make_context(" ".join(path), args).params


def given(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in NOT_SETTINGS}


def check_settings(path: list[str], params: dict[str, Any]) -> None:
    """Builds the config or plan the command would run, which checks every setting named."""
    sets = list(params.get("overrides") or [])
    if path == ["train"] and not params["resume"]:
        base = get_preset(params["preset"]).load() if params["preset"] else None
        load_config(base=base, overrides=sets)
    elif path == ["rl", "train"] and not params["resume"]:
        load_rl_config(params["env"], sets, params["seed"])
    elif path == ["benchmark"] and params["config"] is None:
        load_plan(**given(params) | {"overrides": sets or None})
    elif path == ["search"] and params["config"] is None:
        load_search_plan(**given(params) | {"overrides": sets or None})


COMMANDS = commands()


def test_the_readme_shows_every_command() -> None:
    shown = {" ".join(parse(list(args))[0]) for args in COMMANDS}
    assert {"train", "evaluate", "benchmark", "search", "adapt", "presets", "presets copy"} <= shown
    assert {"tasks demo", "rl train", "rl evaluate", "quickstart"} <= shown


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_each_readme_command_parses_and_its_settings_exist(args: list[str]) -> None:
    path, params = parse(list(args))
    check_settings(path, params)


def check_comments(code: str, namespace: dict[str, Any]) -> int:
    """Evaluates what the block's comments claim: shapes ``[a, b]`` and sizes ``1100 train``.

    ``expr  # [32, 5]; other [32]`` claims ``expr``'s shape and that of ``other`` beside it;
    ``name = ...  # 1100 train / 100 val`` claims ``len(name.train) == 1100`` and so on.
    Returns how many claims were checked.
    """
    checked = 0
    for line in code.splitlines():
        statement, _, comment = line.partition("#")
        statement = statement.strip().removesuffix(".shape")
        claims = re.findall(r"(\w+)? ?\[([\d, ]+)\]", comment)
        for name, dims in claims:
            expr = statement if not name else f"{statement.rpartition('.')[0]}.{name}"
            shape = tuple(int(d) for d in dims.split(","))
            assert tuple(eval(expr, namespace).shape) == shape, f"{expr}: {comment}"
            checked += 1
        for count, part in re.findall(r"(\d+) (train|val|test)\b", comment):
            target = statement.partition("=")[0].strip()
            assert len(getattr(eval(target, namespace), part)) == int(count), comment
            checked += 1
    return checked


@pytest.mark.data
@pytest.mark.slow
def test_the_tasks_example_runs_on_omniglot_as_its_comments_say(data_dir: Path) -> None:
    code = blocks("python")[0]
    assert '"/path/to/data"' in code
    namespace: dict[str, Any] = {}
    exec(code.replace('"/path/to/data"', repr(str(data_dir))), namespace)
    assert check_comments(code, namespace) >= 6
    test_tasks, train_classes = namespace["test_tasks"], set(namespace["train"].tolist())
    assert len(test_tasks) == 600
    assert not set(test_tasks.plan.classes.unique().tolist()) & train_classes
    assert namespace["sinusoids"].shots == 10


def test_the_adapt_example_runs_on_a_trained_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example's files, in the folder it runs from: a ProtoNet run and five images.
    for c in range(10):
        write_class(tmp_path / "classes" / f"c{c}", c, 3)
    cfg = load_config(overrides=[
        "strategy=protonet", "strategy_config.train_ways=3", "data.dataset=folder",
        f"data.path={tmp_path / 'classes'}", "data.ways=3", "data.shots=1", "data.queries=1",
        "data.meta_train_classes=7", "data.val_classes=3", "model.width=8", "model.depth=2",
        "steps=2", "val_every=2", "val_tasks=2", "meta_batch=2", "threads=1",
    ])  # fmt: skip
    meta_train(cfg, tmp_path / "runs" / "omniglot-5w1s-protonet", quiet=True)
    for name, seed in (("a", 50), ("b", 51)):
        write_class(tmp_path / name, seed, 1)[0].rename(tmp_path / f"{name}1.png")
    for i, seed in enumerate((50, 51, 50), start=1):
        write_class(tmp_path / f"q{i}", seed, 2)[1].rename(tmp_path / f"q{i}.png")
    monkeypatch.chdir(tmp_path)

    code = blocks("python")[1]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    prediction = namespace["prediction"]
    assert isinstance(namespace["learner"], metalearner.Learner)
    assert len(prediction.labels) == 3 and set(prediction.labels) <= {"alpha", "beta"}
    assert prediction.scores.shape == (3, 2)  # the comment's [Q, N]
    assert torch.equal(prediction.probabilities, prediction.scores.max(1).values)


def safety_section() -> str:
    """The README's "What is safe" section."""
    return README.read_text().split("## What is safe", 1)[1].split("\n## ", 1)[0]


def test_each_line_of_what_is_safe_is_backed_by_a_test_that_exists() -> None:
    rows = [line for line in safety_section().splitlines() if line.startswith("| ")]
    named = re.findall(r"^\|.*\| `([\w/]+\.py)::(test_\w+)` \|$", safety_section(), re.M)
    assert len(named) == len(rows) - 1 >= 10  # every line but the header names one
    tests = Path(__file__).parent
    for file, test in named:
        assert re.search(rf"^def {test}\(", (tests / file).read_text(), re.M), f"{file}::{test}"
