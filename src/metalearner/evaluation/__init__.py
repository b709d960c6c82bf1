"""Scoring a run on its fixed test tasks: scores with 95% CIs, curves over adaptation steps,
and the no-training floor on the same tasks."""

from __future__ import annotations

from metalearner.evaluation.evaluator import (
    EvalResult,
    Score,
    evaluate,
    format_score,
    summarize,
    task_curves,
    task_scores,
)
from metalearner.evaluation.floor import FloorComparison, compare_to_floor, floor_task_scores

__all__ = [
    "EvalResult",
    "FloorComparison",
    "Score",
    "compare_to_floor",
    "evaluate",
    "floor_task_scores",
    "format_score",
    "summarize",
    "task_curves",
    "task_scores",
]
