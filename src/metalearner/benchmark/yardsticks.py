"""What each score of a benchmark is read against: the no-training floor, and its paper's training.

A score means little alone. Beside it the report puts the floor on the same tasks
(:mod:`metalearner.evaluation.floor`: a nearest class mean on the inputs, no training), and says
which strategies do not beat it; and beside a published score, the share of the paper's
training the strategy had here (its preset's ``# paper steps:``), flagging a share under 10%.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metalearner.config.presets import list_presets
from metalearner.evaluation.evaluator import Score
from metalearner.evaluation.floor import FLOOR, compare_to_floor

from .document import Paragraph, Table
from .plan import BenchmarkPlan
from .scoring import FloorResult, StrategyResult

FLOOR_ROW = "floor: no training"
"""The floor's name in every table (what it is: :data:`metalearner.evaluation.floor.FLOOR`)."""
UNDER = 0.10
"""A strategy trained on less than this share of its paper's training tasks is flagged ‡."""


def paper_share(plan: BenchmarkPlan, r: StrategyResult) -> tuple[str, bool]:
    """``12.5% of 60,000 × 32 tasks``, and whether it is under :data:`UNDER`, where the report
    shows a published score and its preset records the paper's training; else ``-``."""
    found = {p.name: p for p in list_presets()}.get(plan.preset_name(r.strategy))
    budget = found.paper_budget if found else None
    if found is None or budget is None or found.expected.startswith("n/a"):
        return "-", False
    # In tasks seen, not steps: a run with another meta-batch saw more or fewer per step.
    share = budget.share(r.steps, plan.run_config(r.strategy).meta_batch or 1)  # resolved: set
    bound = "≤ " if budget.at_least else ""
    text = f"{bound}{100 * share:.3g}% of {budget.steps:,} × {budget.meta_batch} tasks"
    return (f"{text} ‡", True) if share < UNDER else (text, False)


def versus_floor(plan: BenchmarkPlan, r: StrategyResult, floor: FloorResult | None) -> str:
    """``+37.10 ± 1.20 pts``: the strategy's paired gain over the floor, ``(does not beat it)``
    where that is not above 0 by more than its 95% CI."""
    if floor is None or len(floor.scores) != len(r.scores):
        return "-"
    versus = compare_to_floor(r.scores, floor.scores, metric=plan.metric)
    return versus.gain(plan.metric) + ("" if versus.beats else " (does not beat it)")


def with_floor_row(
    table: Table, floor: FloorResult | None, fmt: Callable[[Score | None], str]
) -> Table:
    """The main table with the floor's row last: its score, nothing trained, and ``-`` in every
    column that is a strategy's alone (whatever columns the table has)."""
    if floor is None:
        return table
    known = {"training": "none", "meta-parameters": "0"}
    cells = [known.get(column, "-") for column in table.header]
    cells[:2] = [f"*{FLOOR_ROW}*", fmt(floor.score)]  # the strategy's and the score's columns
    return Table(table.header, (*table.rows, tuple(cells)))


def below_table(
    plan: BenchmarkPlan, results: Sequence[StrategyResult], floor: FloorResult | None
) -> list[Paragraph]:
    """What the floor is, which strategies do not beat it, and the ‡ of short training."""
    out = []
    if floor is not None:
        lost = [
            r.strategy
            for r in results
            if len(r.scores) == len(floor.scores)
            and not compare_to_floor(r.scores, floor.scores, metric=plan.metric).beats
        ]
        text = (
            f"The floor ({FLOOR[plan.metric]}) is scored on the same tasks. A strategy beats it "
            "when the 95% CI of its mean per-task gain over the floor (paired over the tasks, "
            "Student's t) lies above 0."
        )
        if lost:
            text += f" **Does not beat the floor: {', '.join(lost)}.**"
        else:
            text += " Every strategy beats it."
        out.append(Paragraph(text))
    if any(paper_share(plan, r)[1] for r in results):
        out.append(
            Paragraph(
                f"‡ trained on under {UNDER:.0%} of the tasks its paper trained on (steps × "
                "meta-batch; ≤: the paper stopped early, after at least that many): its score "
                "says little about the published one."
            )
        )
    return out
