"""Evaluation: average return before and after 1, 2, 3 policy-gradient steps on fixed test tasks.

Every policy compared (the meta-learned one, the pretrained baseline, a randomly initialised
one) is adapted on the same seeded test tasks with the same rollout seeds: each step collects
``trajectories`` episodes per task with the current policy, reports their mean return, and
takes one inner step on them (the MAML paper's protocol). Scores are means over tasks with a
95% interval ``1.96·sd/√n``.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (figure 4: return vs gradient steps against "pretrained" and "random" baselines).
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of
    MAML", ICLR 2020 (MAML −20.3 ± 3.2 on 2D navigation after one step).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metalearner.errors import ConfigError, DataError
from metalearner.evaluation import summarize as summarize_scores
from metalearner.rl.config import RLConfig
from metalearner.rl.families import Family, TaskVectorEnv, get_family
from metalearner.rl.objectives import inner_step
from metalearner.rl.plots import Curve
from metalearner.rl.policy import Params, per_task
from metalearner.rl.rollouts import collect
from metalearner.rl.state import load_policy
from metalearner.rl.train import PRETRAIN, initial_params, make_batch
from metalearner.runs.devices import deterministic, threads
from metalearner.runs.folder import (
    CONFIG,
    EVAL,
    check_writable,
    has_checkpoint,
    run_kind,
    write_atomic,
)

POLICIES = ("maml", "pretrained", "random")


@dataclass(frozen=True)
class RLEvalResult:
    """What ``metalearner rl evaluate`` prints and writes to ``eval.json``."""

    env: str
    num_tasks: int
    trajectories: int
    curves: list[Curve]
    published: str
    iterations: dict[str, int]
    missing: list[str]  # policies that could not be evaluated (an untrained baseline)
    figures: list[str]

    def table(self) -> list[list[str]]:
        """Rows ``policy, return after 0, 1, … steps`` as ``mean ± ci`` strings."""
        return [
            [c.policy, *(f"{m:.1f} ± {h:.1f}" for m, h in zip(c.mean, c.ci95, strict=True))]
            for c in self.curves
        ]


def summarize(per_task: Tensor) -> tuple[float, float]:
    """Mean and 95% half-width ``1.96·sd/√n`` over tasks, in float64 (evaluation's
    :func:`~metalearner.evaluation.summarize`, as every score of the package)."""
    score = summarize_scores(per_task.double())
    return score.mean, score.ci95


def adaptation_returns(
    cfg: RLConfig,
    family: Family,
    env: TaskVectorEnv,
    params: Params,
    tasks: list[dict[str, Any]],
    *,
    steps: int,
    seed: int,
    keep: int = 0,
) -> tuple[Tensor, list[Tensor]]:
    """``[steps + 1, n]`` mean return per task after 0..steps inner steps, and observations.

    Args:
        cfg: the run's settings (trajectories, horizon, inner step size, advantages).
        family: the task family.
        env: a vector of its environments.
        params: θ (unbatched).
        tasks: the test tasks.
        steps: adaptation steps.
        seed: seeds the rollouts; the same for every policy compared.
        keep: also return the observations ``[keep, N, H, obs_dim]`` of the first ``keep``
            tasks after each number of steps (NaN after an episode ended; for the figure).
    """
    g = torch.Generator().manual_seed(seed)
    H = cfg.horizon or family.horizon
    fast = per_task(params, len(tasks))
    rows, kept = [], []
    for s in range(steps + 1):
        traj = collect(env, tasks, fast, per_task=cfg.trajectories, horizon=H, generator=g)
        rows.append(traj.returns().mean(1))
        if keep:
            ended = traj.mask[:keep].unsqueeze(-1) == 0
            kept.append(traj.obs[:keep].masked_fill(ended, math.nan))
        if s < steps:
            fast = inner_step(fast, make_batch(traj, cfg), cfg.inner_lr, create_graph=False)
    return torch.stack(rows), kept


def evaluate_rl(
    run_dir: Path | str,
    *,
    num_tasks: int | None = None,
    steps: int | None = None,
    figures: bool = True,
) -> RLEvalResult:
    """Scores a run's policy and the baselines on fixed test tasks; writes ``eval.json``.

    Args:
        run_dir: a folder written by ``metalearner rl train``.
        num_tasks: test tasks (default: the run's ``test_tasks``, 40).
        steps: adaptation steps (default: the run's ``eval_steps``, 3).
        figures: also draw ``returns.png`` (and ``trajectories.png`` for navigation).

    Returns:
        The curves of the meta-learned policy, the pretrained baseline (when the run trained
        it, see ``--baselines``) and the randomly initialised policy.

    Raises:
        DataError: ``run_dir`` is not an RL run folder (or is a supervised run) or has no
            checkpoint.
        ConfigError: ``num_tasks`` < 2 or ``steps`` < 0.

    Example:
        >>> result = evaluate_rl("runs/rl-navigation2d", num_tasks=40)
        >>> result.curves[0].mean  # MAML's return after 0, 1, 2, 3 steps
    """
    folder = Path(run_dir)
    if run_kind(folder) == "supervised":
        raise DataError(f"{folder} is a supervised run; use `metalearner evaluate {folder}`.")
    cfg, params, meta = load_policy(folder)
    check_writable(folder)  # before the rollouts: their result goes into the run
    n = num_tasks if num_tasks is not None else cfg.test_tasks
    S = steps if steps is not None else cfg.eval_steps
    if n < 2 or S < 0:
        raise ConfigError("--tasks must be at least 2 (for an interval) and --steps at least 0.")
    family = get_family(cfg.env)
    policies: dict[str, Params] = {cfg.method if cfg.method == "maml" else "pretrained": params}
    iterations = {next(iter(policies)): int(meta["step"])}
    missing = []
    if cfg.method == "maml":
        sub = folder / PRETRAIN
        if (sub / CONFIG).exists() and has_checkpoint(sub):
            _, policies["pretrained"], sub_meta = load_policy(sub)
            iterations["pretrained"] = int(sub_meta["step"])
        else:
            missing.append("pretrained")
    policies["random"] = initial_params(cfg, family)
    iterations["random"] = 0
    tasks = family.sample_tasks(n, torch.Generator().manual_seed(cfg.test_seed))
    env = family.vector(min(n, cfg.meta_batch or n) * cfg.trajectories)
    keep = 4 if family.name == "navigation2d" and figures else 0
    curves, paths, goals = [], {}, [t.get("goal") for t in tasks[:keep]]
    with threads(cfg.threads), torch.no_grad():
        deterministic()
        for name, theta in policies.items():
            returns, kept = adaptation_returns(
                cfg, family, env, theta, tasks, steps=S, seed=cfg.test_seed + 1, keep=keep
            )
            stats = [summarize(row) for row in returns]
            curves.append(Curve(name, [m for m, _ in stats], [h for _, h in stats]))
            paths[name] = kept
    written = []
    if figures:
        from metalearner.rl.plots import plot_returns, plot_trajectories

        written.append(str(plot_returns(curves, folder / "returns.png", env=cfg.env, tasks=n)))
        if keep and "maml" in paths:
            written.append(
                str(plot_trajectories(paths["maml"], goals, folder / "trajectories.png"))
            )
    result = RLEvalResult(
        cfg.env, n, cfg.trajectories, curves, family.published, iterations, missing, written
    )
    write_atomic(folder / EVAL, json.dumps(asdict(result), indent=2) + "\n")
    return result
