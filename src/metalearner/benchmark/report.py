"""The benchmark report: what was compared, how, the numbers, the tests, the figures.

Written as ``report.md`` (figures as PNG files beside it) and ``report.html`` (one file, figures
embedded). It states everything needed to reproduce it: the command, the plan, the budgets, the
seeds, the BatchNorm mode, the versions and the commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metalearner.config.presets import list_presets
from metalearner.evaluation.evaluator import Score

from .document import Bullets, Document, Heading, Image, Paragraph, Table
from .figures import Drawn, draw_all
from .plan import BenchmarkPlan
from .scoring import FloorResult, StrategyResult
from .stages import duration  # also the command's table's (cli/benchmark.py)
from .stats import all_pairs
from .yardsticks import FLOOR_ROW, below_table, paper_share, versus_floor, with_floor_row

Formatter = Callable[[Score | None], str]
Section = Callable[[StrategyResult], Mapping[Any, Score | None]]

BATCH_NORM = {
    "transductive": "transductive: BatchNorm uses the statistics of the batch it sees (the "
    "support set while adapting, a task's whole query set when predicting), never running "
    "averages, as in the MAML and ProtoNets reference code",
    "inductive": "inductive: BatchNorm normalises a task's queries with its support set's "
    "statistics (under the weights of the moment), so each query is predicted on its own; "
    "never running averages",
}


def write_report(
    plan: BenchmarkPlan,
    results: Sequence[StrategyResult],
    folder: Path,
    *,
    command: str,
    seeds: dict[str, int],
    provenance: dict[str, str],
    notes: Sequence[str] = (),
    floor: FloorResult | None = None,
) -> tuple[Path, Path]:
    """Draws the figures into ``folder/figures`` and writes ``report.md`` and ``report.html``."""
    figures = draw_all(
        results, folder / "figures", metric=plan.metric, shots=plan.shots,
        floor=floor.score if floor else None,
    )  # fmt: skip
    doc = build_document(
        plan, results, figures, command=command, seeds=seeds, provenance=provenance, notes=notes,
        floor=floor,
    )  # fmt: skip
    md, page = folder / "report.md", folder / "report.html"
    for file, text in ((md, doc.markdown(folder)), (page, doc.html())):
        tmp = file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(file)
    return md, page


def build_document(
    plan: BenchmarkPlan,
    results: Sequence[StrategyResult],
    figures: dict[str, Drawn | None],
    *,
    command: str,
    seeds: dict[str, int],
    provenance: dict[str, str],
    notes: Sequence[str] = (),
    floor: FloorResult | None = None,
) -> Document:
    """The report as blocks (see :mod:`.document`); ``floor`` is a row of every table."""
    fmt, entry = _formatter(plan.metric), plan.entry
    title = entry.task_shape(plan.ways, plan.shots)
    per = "query points per task" if entry.regression else "queries per class"
    doc = Document(f"Benchmark: {title}")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(
        Paragraph(
            f"{len(results)} strategies, each trained under the same budget "
            f"({plan.parsed_budget().describe()}) and scored on the same {plan.tasks} fixed test "
            f"tasks ({plan.queries} {per}), made {when}."
        ),
        Heading("Setup"),
        Bullets(_setup(plan, results, command, seeds, provenance)),
        Heading("Results"),
        with_floor_row(
            Table(
                (
                    "strategy",
                    f"test {plan.metric} ± 95% CI",
                    "vs the floor (paired 95% CI)",
                    "published",
                    "training vs the paper's",
                    "training",
                    "outer steps",
                    "adapt + predict per task",
                    "meta-parameters",
                    "BatchNorm",
                ),
                tuple(_row(plan, r, fmt, floor) for r in results),
            ),
            floor,
            fmt,
        ),
        *below_table(plan, results, floor),
    )
    _figure(doc, figures, "scores")
    if len(results) > 1:
        doc.add(Heading("Paired comparisons"), Paragraph(_PAIRED), _pairs_table(plan, results))
    doc.add(Heading("Training and adaptation"))
    for key, missing in (
        ("validation", "No strategy was trained, so there is no validation curve."),
        ("steps", _QUICK if plan.quick else "No strategy takes adaptation steps."),
    ):
        _figure(doc, figures, key, missing)
    doc.add(Heading("Robustness"))
    if plan.quick:
        doc.add(Paragraph(_QUICK))
    else:
        doc.add(Heading("Scarce data: score vs shots", 3), Paragraph(_SHOTS.format(k=plan.shots)))
        _sweep(doc, results, lambda r: r.shots, "K = {}", fmt, floor)
        _figure(doc, figures, "shots", "The data left room for one K only.")
        doc.add(Heading("Noisy labels: score vs flipped support labels", 3))
        if plan.label_noise and plan.metric == "accuracy":
            doc.add(Paragraph(_NOISE))
            _sweep(doc, results, lambda r: r.noise, "p = {:g}", fmt, floor)
            _figure(doc, figures, "noise", "Only one noise level was asked for.")
        else:
            doc.add(Paragraph("Not run (label_noise is empty, or the tasks are regression)."))
    cross = entry.cross_domain
    doc.add(Heading("Cross-domain" + (f": {cross.title}" if cross else ""), 3))
    if plan.cross_domain and cross is not None:
        doc.add(Paragraph(cross.summary))
        _sweep(doc, results, lambda r: r.cross, "{}", fmt, floor)
        _figure(doc, figures, "cross")
    else:
        doc.add(Paragraph("Not run (off by default: pass --cross-domain on Omniglot or FewRel)."))
    doc.add(
        Heading("Settings"),
        Paragraph("As resolved for each strategy (every trained run's config.yaml has all):"),
        Table(("strategy", "settings"), tuple((r.strategy, r.settings) for r in results)),
    )
    all_notes = [*notes, *(f"{r.strategy}: {n}" for r in results for n in r.notes)]
    if all_notes:
        doc.add(Heading("Notes"), Bullets(tuple(all_notes)))
    return doc


_PAIRED = (
    "Each pair on the same test tasks: the mean per-task difference (first minus second) with "
    "its 95% CI, the paired t-test's two-sided p-value, the p-value after Holm's adjustment "
    "over all pairs, and the tasks each side won. A verdict is drawn at 5% after adjustment."
)
_QUICK = (
    "Not run: --quick scores the main table alone (no score-vs-steps curve, no shots or "
    "label-noise sweep)."
)
_SHOTS = (
    "The same trained models (meta-trained with K = {k}) adapted to tasks with more support "
    "examples; every K uses the same number of queries per class."
)
_NOISE = (
    "A fraction p of each task's support examples mislabeled: the slot of class j holds an unseen "
    "image of another class of the task, a different image for each slot, so every class keeps "
    "its K examples (the same corruption for every strategy); query labels stay clean."
)


def _trained_on(plan: BenchmarkPlan) -> str:
    """Where the cross-domain protocol trains every strategy, if not on the plan's split."""
    cross = plan.entry.cross_domain
    if not plan.cross_domain or cross is None or cross.train_split is None:
        return ""
    return f", trained on {cross.trained_on} (split {cross.train_split})"


def _formatter(metric: str) -> Formatter:
    def fmt(score: Score | None) -> str:
        if score is None:
            return "n/a"
        if metric == "accuracy":
            return f"{100 * score.mean:.2f}% ± {100 * score.ci95:.2f}"
        return f"{score.mean:.4g} ± {score.ci95:.2g}"

    return fmt


def _setup(
    plan: BenchmarkPlan,
    results: Sequence[StrategyResult],
    command: str,
    seeds: dict[str, int],
    provenance: dict[str, str],
) -> tuple[str, ...]:
    threads = sorted({r.threads for r in results if r.threads})
    budget = plan.parsed_budget().describe()
    return (
        f"Command: `{command}`",
        f"Data: {plan.dataset}" + (f" ({plan.path})" if plan.path else "") + _trained_on(plan),
        f"Budget per strategy: {budget} (validation and checkpoints not counted), "
        f"{plan.workers} strategy(ies) at a time on {', '.join(map(str, threads)) or '-'} "
        "CPU thread(s) each",
        f"Seeds: initialisation and training tasks {seeds['seed']}, validation tasks "
        f"{seeds['val_seed']}, test tasks {seeds['test_seed']}; sweeps: "
        + ("none (--quick)" if plan.quick else f"{plan.sweep_tasks} tasks per point"),
        _batch_norm(results),
        "Each strategy's settings: its paper's preset where one exists, else the MAML preset's "
        "data and model with the strategy's defaults; every run folder's config.yaml has them",
        f"Versions: metalearner {provenance.get('metalearner')}, torch {provenance.get('torch')}, "
        f"Python {provenance.get('python')}; commit {provenance.get('commit')}",
        f"Machine: {provenance.get('machine')}",
    )  # fmt: skip


def _row(
    plan: BenchmarkPlan, r: StrategyResult, fmt: Formatter, floor: FloorResult | None
) -> tuple[str, ...]:
    training = "not trained" if not r.steps else duration(r.seconds)
    return (
        f"**{r.strategy}**",
        fmt(r.score),
        versus_floor(plan, r, floor),
        _published(plan, r.strategy),
        paper_share(plan, r)[0],
        training,
        str(r.steps) if r.steps else "-",
        f"{r.adapt_ms:.1f} ms",
        f"{r.parameters:,}",
        r.norm or "none",
    )


def _batch_norm(results: Sequence[StrategyResult]) -> str:
    """The setup's line on BatchNorm: each mode the strategies ran in, what it means."""
    modes = sorted({r.norm for r in results if r.norm}, key=list(BATCH_NORM).index)
    if not modes:
        return "BatchNorm: none (no model has BatchNorm)"
    return "BatchNorm: " + "; ".join(BATCH_NORM[m] for m in modes)


def _published(plan: BenchmarkPlan, strategy: str) -> str:
    """The preset's published score, with its number of adaptation steps where it names one
    (MAML's sinusoid MSE is after one step; the table's scores are after eval_steps)."""
    found = {p.name: p for p in list_presets()}.get(plan.preset_name(strategy))
    if not found or not found.expected:
        return "-"
    score, _, note = found.expected.partition("(")
    steps = [part.strip() for part in note.rstrip(")").split(",") if "step" in part]
    return score.strip() + (f" ({steps[0]})" if steps else "")


def _pairs_table(plan: BenchmarkPlan, results: Sequence[StrategyResult]) -> Table:
    higher = plan.metric == "accuracy"
    scale, unit = (100.0, " pts") if higher else (1.0, "")
    pairs = all_pairs({r.strategy: r.scores for r in results})
    rows = []
    for p in pairs:
        better, worse = (p.wins, p.losses) if higher else (p.losses, p.wins)
        rows.append((
            f"{p.a} − {p.b}",
            f"{scale * p.mean:+.2f} ± {scale * p.ci95:.2f}{unit}",
            _p(p.p),
            _p(p.p_holm),
            f"{better} / {p.ties} / {worse}",
            p.verdict(higher_is_better=higher),
        ))  # fmt: skip
    header = ("pair (a − b)", "mean difference ± 95% CI", "p", "p (Holm)",
              "tasks a better / same / b better", "verdict (5%)")  # fmt: skip
    return Table(header, tuple(rows))


def _p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def _sweep(
    doc: Document,
    results: Sequence[StrategyResult],
    get: Section,
    label: str,
    fmt: Formatter,
    floor: FloorResult | None = None,
) -> None:
    keys = sorted({k for r in results for k in get(r)}, key=str if label == "{}" else float)
    if not keys:
        doc.add(Paragraph("No tasks could be made for this section (see the notes)."))
        return
    rows = tuple(
        (f"**{r.strategy}**", *(fmt(get(r).get(k)) if k in get(r) else "-" for k in keys))
        for r in results
    )
    if floor is not None:  # the floor's section is found by the same getter: same field names
        own: Mapping[Any, Score | None] = get(floor)  # type: ignore[arg-type]
        rows += ((f"*{FLOOR_ROW}*", *(fmt(own.get(k)) if k in own else "-" for k in keys)),)
    doc.add(Table(("strategy", *(label.format(k) for k in keys)), rows))


def _figure(doc: Document, figures: dict[str, Drawn | None], key: str, missing: str = "") -> None:
    drawn = figures.get(key)
    if drawn is not None:
        doc.add(Image(drawn.file, drawn.caption))
    elif missing:
        doc.add(Paragraph(missing))
