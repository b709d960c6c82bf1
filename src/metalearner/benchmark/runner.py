"""``metalearner benchmark``: train every strategy under one budget, score all on the same tasks,
write the report. Every stage is resumable: a killed benchmark run again picks up where it was.

Folder layout (``out``)::

    .lock                 held by the benchmark running here (a second one is refused)
    benchmark.yaml        the plan, as run
    <strategy>/           one normal run folder per trained strategy
    results/<strategy>.json   its scores (kept until the plan or its checkpoint changes)
    figures/*.png, report.md, report.html

References:
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019 (baselines under the
    same protocol). Finn et al. 2017; Snell et al. 2017; Nichol et al. 2018 (the strategies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metalearner.config.plans import check_same_plan, keep_plan, same_plan
from metalearner.runs.checkpoint import checkpoint_exists
from metalearner.runs.config import RunConfig
from metalearner.runs.devices import threads
from metalearner.runs.folder import LATEST, checkpoint_path, load_state, run_lock
from metalearner.runs.provenance import provenance

from .estimate import benchmark_plan_line, benchmark_stages, estimate_line
from .plan import BenchmarkPlan
from .report import write_report
from .scoring import (
    FloorResult,
    StrategyResult,
    load_result,
    save_result,
    score_floor,
    score_strategy,
)
from .stages import Stages
from .suite import TaskSuite, build_suite
from .training import Trained, check_trainable, run_folders, to_train, train_all

PLAN_FILE = "benchmark.yaml"
FREE = {"workers"}  # what a rerun may change


@dataclass(frozen=True)
class BenchmarkResult:
    """The scored strategies (in the plan's order), the report files, and the no-training floor
    on the same tasks."""

    results: list[StrategyResult]
    report_md: Path
    report_html: Path
    floor: FloorResult | None = None


def run_benchmark(
    plan: BenchmarkPlan,
    out: Path,
    *,
    data_dir: Path | None = None,
    command: str = "metalearner benchmark",
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> BenchmarkResult:
    """Trains, scores and reports every strategy of ``plan`` into ``out`` (see the module doc).

    Raises:
        ConfigError: ``out`` holds a benchmark with another plan, the plan is inconsistent, or
            another process is benchmarking into ``out``.
        DataError: the data is missing.
    """
    # Held to the end, taken before anything in ``out`` is read or written: a second benchmark
    # on the same folder is refused, changing nothing (each run folder has its own lock too).
    with run_lock(out, "used for a benchmark"):
        return _benchmark(plan, out, data_dir=data_dir, command=command, quiet=quiet, log=log)


def _benchmark(
    plan: BenchmarkPlan,
    out: Path,
    *,
    data_dir: Path | None,
    command: str,
    quiet: bool,
    log: Callable[[str], None],
) -> BenchmarkResult:
    configs = {name: plan.run_config(name) for name in plan.strategies}
    plan_file, settings = out / PLAN_FILE, plan.to_dict()
    begun = started(out)
    if not same_plan(plan_file, settings, free=FREE):  # a new plan: can every strategy train?
        if begun:
            check_same_plan(plan_file, settings, free=FREE, what="benchmark")  # refused at once
        check_trainable(configs, data_dir)
    suite = build_suite(plan, configs, data_dir)  # before anything is written: bad data fails
    out.mkdir(parents=True, exist_ok=True)
    keep_plan(plan_file, settings, free=FREE, what="benchmark", started=begun)
    stages = _stages(plan, configs, suite, out, data_dir=data_dir, log=log)
    trained = train_all(
        configs, out, stages=stages, data_dir=data_dir, workers=plan.workers, quiet=quiet, log=log
    )
    results = []
    for name in plan.strategies:
        t = trained[name]
        key, file = _result_key(plan, t), _result_file(out, name)
        result = load_result(file, key)
        if result is None:
            stages.start(name, "scoring", f"on {plan.tasks} test tasks and the sweeps")
            with threads(None):
                result = score_strategy(t, suite, metric=plan.metric, data_dir=data_dir)
            save_result(file, key, result)
            stages.end(name, "scoring")
        if t.folder is not None and t.folder.name != name:
            # A shared run's validation scores are its owner's way of adapting, not this one's.
            result.val_curve = []
            result.notes = [*result.notes, f"uses {t.folder.name}'s pretraining (the same run)"]
        results.append(result)
    first = next(iter(configs.values()))
    seeds = {"seed": first.seed, "val_seed": first.val_seed, "test_seed": first.test_seed}
    floor = score_floor(suite)
    md, page = write_report(
        plan, results, out, command=command, seeds=seeds, provenance=provenance(),
        notes=suite.notes, floor=floor,
    )  # fmt: skip
    return BenchmarkResult(results, md, page, floor)


def _stages(
    plan: BenchmarkPlan,
    configs: dict[str, RunConfig],
    suite: TaskSuite,
    out: Path,
    *,
    data_dir: Path | None,
    log: Callable[[str], None],
) -> Stages:
    """The benchmark's stages left, timed; says the plan and its estimate before any."""
    todo, runs = to_train(configs, out), run_folders(configs, out)
    # Scored anew: a strategy whose run trains now, or whose scores of its run are not kept.
    score = [
        n
        for n, cfg in configs.items()
        if runs[n] in todo.values()
        or load_result(_result_file(out, n), _result_key(plan, Trained(n, cfg, runs[n]))) is None
    ]
    # Runs trained already (their own, or the one they share) are timed as they will be scored.
    trained = {n: run for n in score if (run := runs[n]) is not None and run not in todo.values()}
    log(benchmark_plan_line(plan, suite))
    planned = benchmark_stages(
        plan, configs, suite, train=todo, score=score, trained=trained, data_dir=data_dir
    )
    log(estimate_line(planned))
    return Stages(planned, log=log)


def _result_file(out: Path, name: str) -> Path:
    return out / "results" / f"{name}.json"


def _result_key(plan: BenchmarkPlan, t: Trained) -> dict[str, object]:
    """What a kept result must have been scored with to be used: the plan and the parameters."""
    key_plan = {k: v for k, v in plan.to_dict().items() if k != "workers"}
    return {"plan": key_plan, "checkpoint": _checkpoint_id(t)}


def started(out: Path) -> bool:
    """Whether ``out`` holds any of a benchmark's work: a score, or a trained checkpoint."""
    if any((out / "results").glob("*.json")):
        return True
    return out.is_dir() and any(checkpoint_exists(d / LATEST) for d in out.iterdir() if d.is_dir())


def _checkpoint_id(t: Trained) -> dict[str, object]:
    """Which parameters were scored: the best checkpoint's step, or the initialisation."""
    if t.folder is None:
        return {"initialisation": t.cfg.seed}
    state, _ = load_state(checkpoint_path(t.folder))
    return {"folder": t.folder.name, "step": state.step, "strategy": t.strategy}
