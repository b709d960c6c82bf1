"""The habits people expect of a command line: ``--version``, shell completion, a help text that
comes back at once, "did you mean" for a mistyped name, and a word before a long first decode."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from cli_runner import run_cli as run
from fewrel_fixture import write_fake_fewrel
from metalearner._version import __version__
from metalearner.cli.app import app
from metalearner.config.presets import get_preset
from metalearner.data.fewrel import load_fewrel
from metalearner.data.omniglot import load_omniglot
from metalearner.data.registry import dataset
from metalearner.errors import ConfigError
from metalearner.runs.config import load_config
from metalearner.strategies import get_strategy
from omniglot_fixture import write_fake_omniglot

ENTRY = Path(sys.executable).parent / "metalearner"  # the installed script a shell completes


def one_sentence(message: str) -> bool:
    """Whether ``message`` is one sentence: a full stop at its end and no other inside it."""
    return message.endswith(".") and not re.search(r"[.?!]\s+[A-Z]", message)


def every_command() -> list[tuple[str, ...]]:
    """Each command and sub-command of the app, as argument prefixes."""
    found: list[tuple[str, ...]] = []

    def walk(group: typer.core.TyperGroup, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            found.append((*prefix, name))
            if isinstance(command, typer.core.TyperGroup):
                walk(command, (*prefix, name))

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    walk(root, ())
    return found


# --- --version, completion, help ----------------------------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"metalearner {__version__}"


def test_importing_the_command_line_imports_no_heavy_library() -> None:
    # A help text must not wait for torch (seconds): commands import it when they run.
    heavy = ("torch", "optuna", "matplotlib", "gymnasium", "safetensors", "scipy")
    code = f"import sys, metalearner.cli.app; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_works_for_every_command(tmp_path: Path) -> None:
    commands = every_command()
    assert {("train",), ("tasks", "demo"), ("rl", "train"), ("presets", "copy")} <= set(commands)
    shown = run("--help", cwd=tmp_path)  # as a user runs it; each command's in this process
    assert shown.returncode == 0 and "Usage:" in shown.stdout, shown.stderr
    for command in commands:
        result = CliRunner().invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage:" in result.output, command


def test_help_paragraphs_flow_to_the_terminal_width() -> None:
    # Typer's help keeps a docstring's line breaks: a docstring wrapped at 100 columns came out
    # ragged in an 80-column terminal (a line of three words, then a full one).
    width = 78  # 80 columns less the help's one-space margin each side
    for command in every_command():
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
        text = result.output.split("Usage:", 1)[1].split("╭", 1)[0]
        lines = [line.strip() for line in text.splitlines()[1:]]
        for line, following in itertools.pairwise(lines):
            if line and following:  # the same paragraph: the next word did not fit
                assert len(line) + 1 + len(following.split()[0]) > width, (command, line)


def test_shell_completion_is_offered_and_completes_commands(tmp_path: Path) -> None:
    shown = run("--help", cwd=tmp_path).stdout
    assert "--install-completion" in shown and "--show-completion" in shown
    env = {**os.environ, "HOME": str(tmp_path)}  # --install-completion writes to ~/.bashrc
    script = subprocess.run([str(ENTRY), "--show-completion", "bash"], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert "_METALEARNER_COMPLETE" in script.stdout and "complete " in script.stdout
    words = {"_METALEARNER_COMPLETE": "complete_bash", "COMP_WORDS": "metalearner tr",
             "COMP_CWORD": "1"}  # fmt: skip
    done = subprocess.run([str(ENTRY)], env={**env, **words}, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert "train" in done.stdout.split(), done.stdout + done.stderr
    install = subprocess.run([str(ENTRY), "--install-completion", "bash"], env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert "metalearner" in (tmp_path / ".bashrc").read_text()


# --- did you mean -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("look_up", "suggestion"),
    [
        (lambda: get_preset("omniglot-5w1s-mam"), "did you mean 'omniglot-5w1s-maml'?"),
        (lambda: get_strategy("mamll"), "did you mean 'maml'?"),
        (lambda: dataset("omniglott"), "did you mean 'omniglot'?"),
        (lambda: load_config(overrides=["stepz=1"]), "did you mean 'steps'?"),
        (lambda: load_config(overrides=["data.wayz=3"]), "did you mean 'data.ways'?"),
        (lambda: load_config(overrides=["strategy_config.inner_lrr=0.1"]), "'inner_lr'?"),
    ],
)
def test_a_mistyped_name_gets_the_closest_one_in_one_sentence(
    look_up: object, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as err:
        look_up()  # type: ignore[operator]
    message = str(err.value)
    assert suggestion in message and one_sentence(message), message


def test_no_suggestion_for_a_name_close_to_nothing() -> None:
    with pytest.raises(ConfigError) as err:
        get_strategy("xyzzy")
    assert "did you mean" not in str(err.value) and one_sentence(str(err.value))


def test_the_command_line_suggests_a_setting_in_its_one_line(tmp_path: Path) -> None:
    result = run("train", "--preset", "sinusoid-k10-maml", "--set", "stepz=1", "--out", "r",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Unknown setting 'stepz' (did you mean 'steps'?); use one")
    assert not (tmp_path / "r").exists()


# --- the first decode says what it does ---------------------------------------------------------


def decode_notices(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("decoding ")]


def test_the_first_omniglot_decode_says_where_the_cache_goes_then_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METALEARNER_CACHE", str(tmp_path / "cache"))
    fake = write_fake_omniglot(tmp_path / "data")
    load_omniglot(fake.data_dir)
    first = capfd.readouterr()
    notices = decode_notices(first.err)
    assert len(notices) == 1 and first.out == "", first
    assert "Omniglot" in notices[0] and str(tmp_path / "cache") in notices[0]
    assert "once" in notices[0] and "later runs read the cache" in notices[0]
    load_omniglot(fake.data_dir)
    assert capfd.readouterr() == ("", "")


def test_the_first_fewrel_decode_says_where_the_cache_goes_then_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METALEARNER_CACHE", str(tmp_path / "cache"))
    root = write_fake_fewrel(tmp_path / "data")
    data, split = load_fewrel(root)
    notices = decode_notices(capfd.readouterr().err)
    assert len(notices) == 1 and "FewRel" in notices[0] and str(tmp_path / "cache") in notices[0]
    again, same = load_fewrel(root)
    assert capfd.readouterr() == ("", "")
    # What the cache gives back is what was decoded.
    assert (again.x == data.x).all() and (again.y == data.y).all()
    assert again.class_names == data.class_names and again.groups == data.groups
    assert again.preprocessing == data.preprocessing and again.name == data.name
    for part in ("train", "val", "test"):
        assert getattr(same, part).tolist() == getattr(split, part).tolist()
    load_fewrel(root, split="pubmed")  # another split is another decode, said once
    assert len(decode_notices(capfd.readouterr().err)) == 1
