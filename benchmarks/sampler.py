"""Episodes per second of the Omniglot episode sampler on one CPU core (a benchmark, not a test).

Task generation must cost a few percent of a meta-training step at most, so the target is
>= 10,000 5-way 1-shot 15-query episodes per second on one core. The table splits each rate into
planning (drawing classes and rows) and gathering (indexing the uint8 images and converting them
to float), to show where the time goes.

Usage:
    .venv/bin/python benchmarks/sampler.py [--data-dir DIR] [--seconds 2]

Writes ``benchmarks/sampler.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from metalearner.data.omniglot import load_omniglot
from metalearner.data.omniglot_splits import vinyals_split
from metalearner.tasks import EpisodeSampler, with_rotations

TARGET = 10_000
SETTINGS = [(5, 1, 15), (20, 1, 15)]  # (ways, shots, queries)
META_BATCHES = [1, 32]


def rate(step: Callable[[], object], tasks_per_step: int, seconds: float) -> float:
    """Tasks per second of ``step``, after a short warm-up, over about ``seconds``."""
    for _ in range(3):
        step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        step()
        done += tasks_per_step
    return done / elapsed


def measure(
    sampler: EpisodeSampler, t: int, g: torch.Generator, seconds: float
) -> dict[str, float | int]:
    """Rates of whole episodes, of planning alone, and of gathering a fixed plan alone."""
    plan = sampler.plan(t, generator=g)
    return {
        "ways": sampler.ways,
        "shots": sampler.shots,
        "queries": sampler.queries,
        "meta_batch": t,
        "episodes_per_s": rate(lambda: sampler.sample(t, generator=g), t, seconds),
        "plan_per_s": rate(lambda: sampler.plan(t, generator=g), t, seconds),
        "gather_per_s": rate(lambda: sampler.gather(plan), t, seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="holds omniglot/")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    load_omniglot(args.data_dir)  # decodes on the first run ever, then reads the cache
    first_load = time.perf_counter() - start
    start = time.perf_counter()
    omni = load_omniglot(args.data_dir)
    cache_load = time.perf_counter() - start
    split = vinyals_split(omni, seed=0)
    data, train = with_rotations(omni.data, split.train)
    print(
        f"Omniglot: {len(omni.data)} images, {omni.data.num_classes} characters; "
        f"first load {first_load:.2f} s, cache load {cache_load:.3f} s"
    )
    print(f"train classes with rotations: {len(train)} ({len(data)} images); torch threads: 1\n")

    rows = []
    g = torch.Generator().manual_seed(0)
    for ways, shots, queries in SETTINGS:
        sampler = EpisodeSampler(data, train, ways=ways, shots=shots, queries=queries)
        for t in META_BATCHES:
            rows.append(measure(sampler, t, g, args.seconds))

    header = (
        f"{'task':<22}{'meta-batch':>11}{'episodes/s':>13}{'plan only/s':>13}{'gather only/s':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        task = f"{r['ways']}-way {r['shots']}-shot {r['queries']}-query"
        print(
            f"{task:<22}{r['meta_batch']:>11}{r['episodes_per_s']:>13,.0f}"
            f"{r['plan_per_s']:>13,.0f}{r['gather_per_s']:>15,.0f}"
        )
    best_5way = max(r["episodes_per_s"] for r in rows if r["ways"] == 5)
    verdict = "meets" if best_5way >= TARGET else "MISSES"
    print(f"\nbest 5-way rate {best_5way:,.0f}/s {verdict} the target of {TARGET:,}/s on one core")

    out = Path(__file__).with_suffix(".json")
    out.write_text(
        json.dumps(
            {
                "benchmark": "sampler",
                "machine": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "threads": 1,
                "first_load_s": round(first_load, 3),
                "cache_load_s": round(cache_load, 3),
                "train_classes": len(train),
                "target_5way_per_s": TARGET,
                "meets_target": best_5way >= TARGET,
                "results": [{k: round(v) for k, v in r.items()} for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
