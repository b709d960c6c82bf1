"""Scoring a run on its fixed test tasks: scores with 95% CIs, curves over adaptation steps."""

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

__all__ = [
    "EvalResult",
    "Score",
    "evaluate",
    "format_score",
    "summarize",
    "task_curves",
    "task_scores",
]
