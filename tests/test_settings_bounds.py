"""Sizes and counts that cannot fit in memory or time are refused when the config is checked.

A tester's absurd values (issue 26): ``meta_batch``, ``val_tasks``, ``shots`` of 1e12, a
backbone width of 100000 and ``evaluate --tasks 1e12`` reached the allocator; ``steps: 1e38``
and ``inner_steps=1e12`` were accepted and ran until killed. Each is now one sentence naming the
setting and its bound, exit status 2, no traceback, before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from cli_runner import run_cli
from metalearner.benchmark.plan import BenchmarkPlan, parse_budget
from metalearner.config.bounds import ADAPT_STEPS, EPISODE_BYTES_MAX, STEPS, TASKS, bound_of
from metalearner.data.config import DataConfig
from metalearner.errors import ConfigError
from metalearner.rl.config import RLConfig
from metalearner.runs.config import ModelConfig, OptimizerConfig, RunConfig, load_config
from metalearner.strategies import get_strategy
from metalearner.strategies.baselines import BaselineConfig
from metalearner.strategies.maml import MAMLConfig
from metalearner.strategies.protonet import ProtoNetConfig
from metalearner.strategies.reptile import ReptileConfig
from metalearner.strategies.transfer import TransferConfig

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0-sinusoid-maml"
SINE = ("--preset", "sinusoid-k10-maml", "-q")
HUGE = "1000000000000"  # 1e12, as an integer option takes it

# Every command runs `metalearner.cli.main`, the function `python -m metalearner` runs, in one
# interpreter (one start-up instead of one per case, for a fast suite), each command's stderr
# captured apart. Address space is capped (6 GiB above what the imports took) and each command
# has an alarm, so a value that slips through fails its case at once instead of taking the
# machine's memory or running for ever.
_DRIVER = """
import contextlib, io, json, os, resource, signal, sys, traceback
from metalearner.cli import main
if os.path.exists("/proc/self/statm"):
    with open("/proc/self/statm") as statm:
        limit = int(statm.read().split()[0]) * resource.getpagesize() + 6 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

class StillRunning(BaseException):
    pass

def alarm(*_):
    raise StillRunning("still running after 30 s")

signal.signal(signal.SIGALRM, alarm)
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    sys.argv = ["metalearner", *argv]
    signal.alarm(30)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            code = "crashed"
            traceback.print_exc()
    signal.alarm(0)
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps(results))
"""

# (command line, what the one line must name: the setting and its bound)
CASES: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("train", *SINE, "--set", "meta_batch=1e12"), ("'meta_batch'", "at most 100000")),
    (("train", *SINE, "--set", "val_tasks=1e12"), ("'val_tasks'", "at most 100000")),
    (("train", *SINE, "--set", "data.shots=1e12"), ("'data.shots'", "at most 10000")),
    (("train", *SINE, "--set", "data.queries=1e12"), ("'data.queries'", "at most 10000")),
    (("train", *SINE, "--set", "steps=1e38"), ("'steps'", "at most 100000000")),
    (("train", *SINE, "--set", "time_budget=1e38"), ("'time_budget'", "at most 100000000")),
    (
        ("train", *SINE, "--set", "strategy_config.inner_steps=1e12"),
        ("strategy_config.inner_steps", "<= 10000"),
    ),
    (
        ("train", "--preset", "omniglot-5w1s-maml", "--set", "model.width=100000"),
        ("'model.width'", "at most 10000"),
    ),
    (
        ("train", "--preset", "omniglot-5w1s-maml", "--set", "data.ways=1e12"),
        ("'data.ways'", "at most 5000"),
    ),
    (  # each setting in bounds, but one meta-batch's images would not fit in any memory
        (
            "train",
            "--preset",
            "omniglot-5w1s-maml",
            *("--set", "meta_batch=100000"),
            *("--set", "data.image_size=2048"),
        ),
        ("meta_batch 100000", "image_size 2048", "more than the 64 GiB"),
    ),
    (("evaluate", "run", "--tasks", HUGE), ("--tasks", "at most 100000")),
    (("evaluate", "run", "--steps", HUGE), ("--steps", "at most 10000")),
    (
        ("adapt", "run", "--support", "s.csv", "--query", "q.csv", "--steps", HUGE),
        ("--steps", "at most 10000"),
    ),
    (
        ("benchmark", "--dataset", "sinusoid", "--strategies", "maml", "--tasks", HUGE),
        ("'tasks'", "at most 100000"),
    ),
    (
        ("benchmark", "--dataset", "sinusoid", "--strategies", "maml", "--budget", f"{HUGE}steps"),
        ("Budget", "at most 100000000 steps"),
    ),
    (
        ("search", "--dataset", "sinusoid", "--strategies", "maml", "--val-tasks", HUGE),
        ("'val_tasks'", "at most 100000"),
    ),
    (
        ("search", "--dataset", "sinusoid", "--strategies", "maml", "--trials", HUGE),
        ("'trials'", "at most 100000"),
    ),
    (
        ("search", "--dataset", "sinusoid", "--strategies", "maml", "--workers", HUGE),
        ("'workers'", "at most 4096"),
    ),
    (("tasks", "demo", "--dataset", "sinusoid", "--tasks", HUGE), ("--tasks", "at most 100000")),
    (("tasks", "demo", "--dataset", "sinusoid", "--queries", HUGE), ("--queries", "at most 10000")),
    (("quickstart", "--tasks", HUGE), ("--tasks", "at most 100000")),
    (("rl", "evaluate", "run", "--steps", HUGE), ("--steps", "at most 10000")),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, typing.Any]]:
    """Every case's exit status and stderr, run in a folder holding a trained run."""
    where = tmp_path_factory.mktemp("bounds")
    shutil.copytree(FIXTURE, where / "run")
    argvs = json.dumps([[*argv, "--out", f"out{i}"] if argv[0] == "train" else list(argv)
                        for i, (argv, _) in enumerate(CASES)])  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, argvs],
        cwd=where, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results: list[dict[str, typing.Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def assert_refused(code: object, stderr: str, words: tuple[str, ...]) -> None:
    """Exit status 2 and one line on stderr, with no traceback, naming each of ``words``."""
    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{argv[0]} {words[0]}" for argv, words in CASES]
)
def test_an_absurd_size_on_the_command_line_is_one_sentence_with_its_bound(
    outcomes: list[dict[str, typing.Any]], index: int
) -> None:
    result = outcomes[index]
    assert_refused(result["code"], result["stderr"], CASES[index][1])


def test_a_yaml_file_with_absurd_steps_is_refused_before_training(tmp_path: Path) -> None:
    # A separate process, exactly as a user runs it: before, this trained until killed.
    (tmp_path / "run.yaml").write_text("strategy: maml\ndata: {dataset: sinusoid}\nsteps: 1e38\n")
    result = run_cli("train", "run.yaml", "--out", "out", "-q", cwd=tmp_path, timeout=120)
    assert_refused(result.returncode, result.stderr, ("'steps'", "at most 100000000", "1e+38"))
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_absurd_tasks_before_reading_the_run(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "run")
    result = run_cli("evaluate", "run", "--tasks", HUGE, cwd=tmp_path, timeout=120)
    assert_refused(result.returncode, result.stderr, ("--tasks", "at most 100000", HUGE))
    assert not (tmp_path / "run" / "eval.json").exists()


# --- the bounds themselves -----------------------------------------------------------------------


def test_a_bound_itself_is_accepted_and_one_above_it_is_refused() -> None:
    sine = ["data.dataset=sinusoid", "strategy=maml"]
    assert load_config(overrides=[*sine, f"steps={STEPS.high}"]).steps == STEPS.high
    with pytest.raises(ConfigError, match=r"^Setting 'steps' must be at most 100000000, got"):
        load_config(overrides=[*sine, f"steps={STEPS.high + 1}"])
    assert load_config(overrides=[*sine, f"test_tasks={TASKS.high}"]).test_tasks == TASKS.high
    inner = "strategy_config.inner_steps"
    assert load_config(overrides=[*sine, f"{inner}=10000"]).strategy_config["inner_steps"] == 10000
    with pytest.raises(ConfigError, match=r"strategy_config\.inner_steps must be .*<= 10000"):
        load_config(overrides=[*sine, f"{inner}=10001"])


def test_a_config_built_in_code_is_held_to_the_same_bounds() -> None:
    with pytest.raises(ConfigError, match="'trajectories' must be at most"):
        RLConfig(trajectories=10**12)
    with pytest.raises(ConfigError, match="'hidden' must be at most 10000"):
        RLConfig(hidden=(64, 10**6))
    with pytest.raises(ConfigError, match="'tasks' must be at most 100000"):
        BenchmarkPlan(dataset="sinusoid", strategies=("maml",), tasks=10**12)
    with pytest.raises(ConfigError, match="at most 100000000 steps"):
        parse_budget(f"{10**12}steps")
    with pytest.raises(ConfigError, match="at most 100000000 s"):
        parse_budget("10000000000h")


def test_the_memory_estimate_names_its_numbers() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.dataset=omniglot", "meta_batch=20000", "data.image_size=512"])
    message = str(err.value)
    assert "\n" not in message and "meta_batch 20000" in message and "5 ways" in message
    assert f"{EPISODE_BYTES_MAX // 2**30} GiB" in message
    # The papers' largest settings are far below it.
    assert load_config(overrides=["data.dataset=omniglot", "data.ways=20", "meta_batch=16"])


def _int_settings(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    ints = (int, int | None, tuple[int, ...], tuple[int, int])
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in ints]


@pytest.mark.parametrize(
    "cls",
    [RunConfig, DataConfig, ModelConfig, OptimizerConfig, BenchmarkPlan, RLConfig, MAMLConfig,
     ReptileConfig, ProtoNetConfig, BaselineConfig, TransferConfig],
    ids=lambda c: c.__name__,
)  # fmt: skip
def test_every_size_and_count_setting_declares_its_bound(cls: type) -> None:
    # A new integer setting without a bound fails here; seeds have theirs (check_seed).
    missing = [
        name for name in _int_settings(cls) if bound_of(cls, name) is None and "seed" not in name
    ]
    assert not missing, f"{cls.__name__}: no bound declared for {missing}"
    for name in _int_settings(cls):  # and every default lies within it
        bound, default = bound_of(cls, name), getattr(cls(), name, None)
        if bound is not None and isinstance(default, int):
            assert bound.low <= default <= bound.high, name


def test_adaptation_steps_share_one_bound() -> None:
    for name in ("maml", "reptile", "protonet", "finetune", "scratch"):
        config = type(get_strategy(name).default_config)
        if "eval_steps" in {f.name for f in dataclasses.fields(config)}:
            assert bound_of(config, "eval_steps") == ADAPT_STEPS
