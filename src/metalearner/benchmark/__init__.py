"""``metalearner benchmark``: strategies and baselines compared under one budget, one report.

- :mod:`.plan`: what is compared (strategies, task shape, budget, sweeps) and each run config;
- :mod:`.suite`: the fixed test tasks every strategy is scored on;
- :mod:`.training`: training every strategy (resumable, optionally in parallel);
- :mod:`.scoring`: per-task scores, timings and sweeps of one strategy;
- :mod:`.stats`: paired comparisons with Holm's adjustment;
- :mod:`.figures`, :mod:`.document`, :mod:`.report`: the figures and ``report.md``/``.html``;
- :mod:`.runner`: the command's work, end to end.
"""

from metalearner.benchmark.plan import BenchmarkPlan, Budget, load_plan, parse_budget
from metalearner.benchmark.runner import BenchmarkResult, run_benchmark
from metalearner.benchmark.stats import Paired, all_pairs, holm, paired

__all__ = [
    "BenchmarkPlan",
    "BenchmarkResult",
    "Budget",
    "Paired",
    "all_pairs",
    "holm",
    "load_plan",
    "paired",
    "parse_budget",
    "run_benchmark",
]
