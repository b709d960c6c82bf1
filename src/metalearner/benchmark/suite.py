"""The fixed, seeded test tasks of a benchmark: one suite, the same for every strategy.

Built before any training, so missing data or an impossible sweep fails at once. The main table's
tasks are the run configs' test tasks (class-disjoint from training and validation, seeded by
``test_seed``); every sweep draws its own fixed tasks from the same test classes.

References:
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019 (scores vs shots, and
    cross-domain evaluation). Lake, Salakhutdinov & Tenenbaum, Science 2015 (20-way
    within-alphabet one-shot runs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from metalearner.data.config import DataConfig
from metalearner.errors import ConfigError, DataError
from metalearner.runs.config import RunConfig
from metalearner.runs.experiment import build_experiment
from metalearner.tasks import EpisodeSampler, NoisyLabels, SinusoidTasks, TaskSet, concat
from metalearner.tasks.regression import FixedTasks

from .plan import BenchmarkPlan

# The cross-domain sections (suite.cross keys, the report's rows): a split scored beside the
# main one is named after it (FewRel's PubMed relations: "pubmed").
WITHIN, LAKE, PUBMED = "within-alphabet", "lake-20way", "pubmed"


@dataclass
class TaskSuite:
    """Every task set a benchmark scores on.

    Attributes:
        test: the main table's tasks (``plan.tasks`` of them).
        sweep: ``plan.sweep_tasks`` tasks of the main shape (the score-vs-steps curve); none
            with ``plan.quick``, which also leaves ``shots`` and ``noise`` empty.
        shots: K → tasks with K support examples per class (same queries for every K).
        noise: fraction p → the main K's sweep tasks with p of the support labels flipped.
        cross: section name → tasks (``cross_domain`` only: Omniglot's or FewRel's).
        notes: what was left out and why (a K the data has no room for, say).
    """

    test: TaskSet
    sweep: TaskSet
    shots: dict[int, TaskSet] = field(default_factory=dict)
    noise: dict[float, TaskSet] = field(default_factory=dict)
    cross: dict[str, TaskSet] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_suite(
    plan: BenchmarkPlan, configs: dict[str, RunConfig], data_dir: Path | None
) -> TaskSuite:
    """The suite of ``plan``; ``configs`` are the strategies' run configs (checked to agree).

    Raises:
        ConfigError, DataError: the strategies see different data, or the data is missing.
    """
    reference = _reference(plan, configs)
    exp = build_experiment(reference, data_dir=data_dir)
    seed, n = reference.test_seed, plan.sweep_tasks
    source = exp.test_source
    # --quick: the main table alone (and cross-domain where asked), no curve and no sweeps.
    shots, noise = ((), ()) if plan.quick else (plan.sweep_shots, plan.label_noise)
    curve = source.fixed(0 if plan.quick else n, seed=seed)
    suite = TaskSuite(test=exp.test_tasks(reference, plan.tasks), sweep=curve)
    if isinstance(source, SinusoidTasks):
        for k in shots:
            suite.shots[k] = dataclasses.replace(source, shots=k).fixed(n, seed=seed)
        if noise:
            suite.notes.append("The label-noise sweep is for classification; sinusoids skip it.")
        return suite
    assert isinstance(source, EpisodeSampler)
    smallest = int(source.data.counts()[source.classes].min())
    fits = [k for k in shots if k < smallest]
    if len(fits) < len(shots):
        left = ", ".join(str(k) for k in shots if k not in fits)
        suite.notes.append(
            f"K = {left} left out of the shots sweep: the smallest test class has {smallest} "
            "examples, and a task needs K + 1 or more."
        )
    if fits:
        # One query count for every K, so the points differ in shots alone.
        queries = max(min(plan.queries, smallest - max(fits)), 1)
        for k in fits:
            sampler = EpisodeSampler(
                source.data, source.classes, ways=plan.ways, shots=k, queries=queries
            )
            suite.shots[k] = sampler.fixed(n, seed=seed)
    # Label noise holds extra queries of each class out as the mislabeled images, one for each
    # corrupted slot naming the class (tasks/noise.py); every p holds out as many, so all are
    # scored on the same queries.
    spares = max(
        (NoisyLabels.spares_needed(n, ways=plan.ways, shots=plan.shots, p=p, seed=seed + 1 + i)
         for i, p in enumerate(noise)),
        default=1,
    )  # fmt: skip
    queries = min(plan.queries, smallest - plan.shots - spares)
    if noise and queries < 1:
        suite.notes.append(
            f"No label-noise sweep: the smallest test class has {smallest} examples, and a "
            f"noisy task needs K + {spares + 1} = {plan.shots + spares + 1}."
        )
    elif noise:
        base = EpisodeSampler(
            source.data, source.classes, ways=plan.ways, shots=plan.shots, queries=queries + spares
        ).fixed(n, seed=seed)
        for i, p in enumerate(noise):
            suite.noise[p] = NoisyLabels(base, p, seed=seed + 1 + i, spares=spares)
    cross = plan.entry.cross_domain if plan.cross_domain else None
    if cross is not None and cross.test_split is not None:
        # The same training classes (and vocabulary); only the test classes are the split's.
        other = dataclasses.replace(reference.data, split=cross.test_split)
        scored = build_experiment(dataclasses.replace(reference, data=other), data_dir=data_dir)
        suite.cross[cross.test_split] = scored.test_tasks(reference, plan.tasks)
    if cross is not None and cross.within_groups:
        suite.cross[WITHIN] = _within_alphabet(source, plan, n, seed)
    if cross is not None and cross.lake_runs:
        suite.cross[LAKE] = _lake_runs(data_dir, plan.entry.image_side(reference.data))
    return suite


def _reference(plan: BenchmarkPlan, configs: dict[str, RunConfig]) -> RunConfig:
    """The first config with the plan's queries; every strategy's data must match it."""
    first = next(iter(configs.values()))
    reference = dataclasses.replace(first, data=_tested(first.data, plan))
    for name, cfg in configs.items():
        # Training queries may differ (ProtoNets' 5, the MAML presets' data.train_queries);
        # which classes are test classes may not.
        if _tested(cfg.data, plan) != reference.data:
            raise ConfigError(
                f"{name} would see other data settings than {first.strategy} ({cfg.data} vs "
                f"{first.data}); set the data the same for every strategy."
            )
    return reference


def _tested(data: DataConfig, plan: BenchmarkPlan) -> DataConfig:
    """``data`` as the plan's test tasks see it: the plan's queries, no setting of training
    episodes."""
    return dataclasses.replace(
        data, queries=plan.queries, train_queries=None, train_within_groups=False
    )


def _within_alphabet(source: EpisodeSampler, plan: BenchmarkPlan, n: int, seed: int) -> TaskSet:
    """N-way tasks whose N characters all come from one test alphabet: a finer distinction."""
    data, groups = source.data, source.data.groups
    if not groups:
        raise DataError(f"{data.name} records no alphabets; within-alphabet tasks need Omniglot.")
    by_alphabet: dict[str, list[int]] = {}
    for c in source.classes.tolist():
        by_alphabet.setdefault(groups[c], []).append(c)
    usable = {a: cs for a, cs in sorted(by_alphabet.items()) if len(cs) >= plan.ways}
    if not usable:
        raise DataError(f"No test alphabet has {plan.ways} characters for within-alphabet tasks.")
    per = math.ceil(n / len(usable))
    parts = []
    for i, classes in enumerate(usable.values()):
        sampler = EpisodeSampler(
            data, torch.tensor(classes), ways=plan.ways, shots=plan.shots, queries=plan.queries
        )
        tasks = sampler.fixed(per, seed=seed + 100 + i)
        parts.append(tasks.batch(0, len(tasks)))
    return FixedTasks(concat(parts))


def _lake_runs(data_dir: Path | None, size: int) -> TaskSet:
    from metalearner.tasks.lake import load_lake_runs

    return load_lake_runs(data_dir, size=size)
