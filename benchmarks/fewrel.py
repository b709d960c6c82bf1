"""FewRel accuracy under a wall-clock training budget: wiki relations and PubMed (not a test).

For 5-way 1-shot and 5-way 5-shot, trains ProtoNets, MAML and the fine-tune baseline from their
``fewrel-5w{K}s-*`` presets under the same budget each, on the wiki split (10 of val_wiki.json's
relations; validation on held-out sentences of them), then scores every model on the same 600
fixed tasks of the 6 held-out wiki relations and on 600 tasks of FewRel 2.0's 10 PubMed
relations (cross-domain), each with a 95% CI. It is ``metalearner benchmark --dataset fewrel
--cross-domain`` twice, so each K also leaves a full report (report.md, report.html) and normal
run folders (``evaluate`` and ``adapt`` work on them); run again after a kill, it resumes.

For orientation only: the FewRel paper's CNN ProtoNets reach 74.5% 5-way 1-shot on its
own split, trained on 64 relations with GloVe vectors; here the encoder learns its words from 10
relations (about 6,000 sentences), so expect far less, and less again on PubMed, whose words
are mostly unknown to that vocabulary.

Usage:
    .venv/bin/python benchmarks/fewrel.py --data-dir ../shared/data --budget 5m --workers 2
    .venv/bin/python benchmarks/fewrel.py --data-dir ../shared/data --budget 10s --tasks 20 \
        --no-record --out runs/fewrel-smoke        # a smoke run: seconds, not results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import machine  # benchmarks/machine.py
from metalearner.benchmark import load_plan, run_benchmark
from metalearner.benchmark.suite import PUBMED

HERE = Path(__file__).resolve().parent
STRATEGIES = ("protonet", "maml", "finetune")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-fewrel"))
    parser.add_argument("--budget", default="5m", help="training per strategy: 5m, 90s, 500steps")
    parser.add_argument("--shots", default="1,5", help="K of the 5-way tasks, e.g. 1,5")
    parser.add_argument("--tasks", type=int, default=600, help="test tasks per score")
    parser.add_argument("--workers", type=int, default=1, help="strategies trained at once")
    parser.add_argument("--set", action="append", default=[], help="extra key=value overrides")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    rows = []
    for k in (int(s) for s in args.shots.split(",")):
        plan = load_plan(
            dataset="fewrel", ways=5, shots=k, strategies=STRATEGIES, budget=args.budget,
            tasks=args.tasks, sweep_tasks=min(args.tasks, 200), sweep_shots=(), label_noise=(),
            cross_domain=True, workers=args.workers, overrides=tuple(args.set),
        )  # fmt: skip
        out = args.out / f"5w{k}s"
        result = run_benchmark(plan, out, data_dir=args.data_dir, command=_command(args))
        for r in result.results:
            pubmed = r.cross.get(PUBMED)
            rows.append({
                "task": f"5-way {k}-shot", "strategy": r.strategy, "steps": r.steps,
                "minutes": r.seconds / 60, "wiki": 100 * r.score.mean,
                "wiki_ci": 100 * r.score.ci95,
                "pubmed": None if pubmed is None else 100 * pubmed.mean,
                "pubmed_ci": None if pubmed is None else 100 * pubmed.ci95,
                "tasks": len(r.scores), "report": str(result.report_md),
            })  # fmt: skip
    table = _table(rows, args.budget)
    print(table)
    (args.out / "fewrel.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not args.no_record:
        (HERE / "fewrel.json").write_text(json.dumps(rows, indent=2) + "\n")
        machine.record(
            "FewRel under a training budget (benchmarks/fewrel.py)", _command(args), table
        )


def _table(rows: list[dict[str, object]], budget: str) -> str:
    head = (
        "| task | strategy | trained (steps) | held-out wiki relations | PubMed (cross-domain) |\n"
        "|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        pubmed = "n/a" if r["pubmed"] is None else f"{r['pubmed']:.2f}% ± {r['pubmed_ci']:.2f}"
        lines.append(
            f"| {r['task']} | {r['strategy']} | {r['minutes']:.1f} min ({r['steps']}) | "
            f"{r['wiki']:.2f}% ± {r['wiki_ci']:.2f} | {pubmed} |"
        )
    tasks = rows[0]["tasks"] if rows else 0
    note = (
        f"\nBudget {budget} of training per strategy; {tasks} fixed test tasks per score (95% "
        "CI). Trained on 10 wiki relations (FewRel's own split has 64) with word embeddings "
        "learned from scratch (the paper used GloVe): not comparable with the FewRel paper's "
        "CNN ProtoNets (74.5% 5-way 1-shot)."
    )
    return "\n".join(lines) + "\n" + note


def _command(args: argparse.Namespace) -> str:
    sets = "".join(f" --set {s}" for s in args.set)
    return (
        f".venv/bin/python benchmarks/fewrel.py --data-dir {args.data_dir} --budget {args.budget} "
        f"--shots {args.shots} --tasks {args.tasks} --workers {args.workers}{sets}"
    )


if __name__ == "__main__":
    main()
