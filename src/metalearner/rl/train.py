"""Meta-training of a policy: MAML-RL (or the pretrained baseline), checkpointed and resumable.

One iteration draws a meta-batch of tasks, collects ``trajectories`` episodes per task with θ,
adapts θ to each task with ``inner_steps`` policy-gradient steps (fresh episodes before each),
collects episodes with the adapted policies, and updates θ with TRPO (or PPO) on the outer
objective: differentiated through the adaptation (second order), or with the inner gradient
held constant (``first_order``, PPO's default). The pretrained baseline runs the same loop
with no adaptation on as many episodes of random tasks per iteration.

The run folder is the supervised runs' (:mod:`metalearner.runs.folder`): ``config.yaml``,
``metrics.jsonl`` (one line per iteration) and ``checkpoints/latest`` (safetensors + JSON,
written atomically). All randomness (tasks, reset seeds, action noise) comes from one
``torch.Generator`` whose state is checkpointed with θ and Adam's moments, so a run with an
iteration budget, killed at any moment and resumed, ends bit-identical to one never interrupted
(under a ``time_budget`` the last iteration depends on the clock). A run killed before its first
checkpoint starts again from iteration 0 when resumed.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (section 5.3, appendix A.2). Schulman et al., "Trust Region Policy Optimization", ICML 2015.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metalearner.errors import ConfigError, MetalearnerError
from metalearner.functional.optim import adam
from metalearner.rl.advantages import advantages
from metalearner.rl.config import RLConfig, config_yaml, read_config, to_dict
from metalearner.rl.families import Family, TaskVectorEnv, get_family
from metalearner.rl.objectives import Batch, MetaObjective, OldPolicy, inner_step
from metalearner.rl.policy import Params, init_policy, per_task
from metalearner.rl.ppo import ppo_step
from metalearner.rl.rollouts import Trajectories, collect
from metalearner.rl.state import State, restore_state, save_state
from metalearner.rl.trpo import trpo_step
from metalearner.runs.devices import deterministic, threads
from metalearner.runs.folder import (
    CONFIG,
    append_metrics,
    create_run,
    has_checkpoint,
    run_lock,
    truncate_metrics,
)
from metalearner.training.progress import Horizon, TrainingProgress

PRETRAIN = "pretrain"  # the pretrained baseline's run folder inside a MAML run
SAVE_SECONDS = 120.0  # also checkpoint after this long: a HalfCheetah iteration takes ~1 min


class RLDivergedError(MetalearnerError):
    """The policy's parameters became NaN or infinite; the last checkpoint is kept."""


@dataclass(frozen=True)
class RLTrainResult:
    """The outcome of :func:`train_rl`.

    Attributes:
        run_dir: the run folder.
        iteration: meta-iterations completed.
        params: the final θ.
        metrics: the last iteration's numbers (empty if none ran in this call).
        finished: all iterations done or the time budget spent (not stopped early).
    """

    run_dir: Path
    iteration: int
    params: Params
    metrics: dict[str, float]
    finished: bool


def make_batch(traj: Trajectories, cfg: RLConfig) -> Batch:
    """The trajectories with the advantages ``cfg`` asks for."""
    adv = advantages(
        traj,
        gamma=cfg.gamma,
        lam=cfg.gae_lambda,
        normalized=cfg.normalize_advantages,
        reg=cfg.baseline_reg,
    )
    return Batch.of(traj, adv)


def initial_params(cfg: RLConfig, family: Family) -> Params:
    """θ₀ from ``cfg.seed`` (also the randomly initialised baseline of evaluation)."""
    g = torch.Generator().manual_seed(cfg.seed)
    return init_policy(
        family.obs_dim, family.act_dim, cfg.hidden, generator=g, init_log_std=cfg.init_log_std
    )


def train_rl(
    cfg: RLConfig,
    run_dir: Path | str,
    *,
    resume: bool = False,
    quiet: bool = False,
    stop_at: int | None = None,
) -> RLTrainResult:
    """Meta-trains a policy for ``cfg``, writing the run folder as it goes.

    Args:
        cfg: the resolved config (:func:`metalearner.rl.config.load_rl_config`); on resume the
            caller passes the run folder's own (:func:`metalearner.rl.config.read_config`).
        run_dir: the run folder (created unless ``resume``).
        resume: continue from ``checkpoints/latest`` (θ, Adam's state, the generator, time).
        quiet: no progress bar.
        stop_at: stop (with a checkpoint) after this many iterations, as if interrupted.

    Returns:
        The final state; with ``cfg.baselines`` the pretrained baseline has been trained too,
        into ``run_dir/pretrain``.

    Raises:
        ConfigError: ``run_dir`` already holds a run (and not ``resume``).
        DataError: resuming a folder without a usable checkpoint.
        RLDivergedError: the parameters became NaN or infinite.

    Example:
        >>> cfg = load_rl_config("navigation2d", ["iterations=100"])
        >>> result = train_rl(cfg, "runs/nav")
    """
    folder = Path(run_dir)
    with threads(cfg.threads):
        deterministic()
        result = _train(cfg, folder, resume, quiet, stop_at)
        if cfg.baselines and cfg.method == "maml" and result.finished:
            sub = folder / PRETRAIN
            base = dataclasses.replace(cfg, method="pretrain", baselines=False)
            _train(base, sub, (sub / CONFIG).exists(), quiet, None)
    return result


def _train(
    cfg: RLConfig, folder: Path, resume: bool, quiet: bool, stop_at: int | None
) -> RLTrainResult:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give a folder for --out.")
    if resume and not folder.is_dir():
        read_config(folder / CONFIG)  # DataError: not a run folder (and none made by the lock)
    with run_lock(folder):  # one process trains in a run folder at a time
        return _train_locked(cfg, folder, resume, quiet, stop_at)


def _train_locked(
    cfg: RLConfig, folder: Path, resume: bool, quiet: bool, stop_at: int | None
) -> RLTrainResult:
    family = get_family(cfg.env)
    if resume and not has_checkpoint(folder):
        # Killed before its first checkpoint: nothing to resume, so it starts again.
        if to_dict(read_config(folder / CONFIG)) != to_dict(cfg):  # DataError: not a run
            raise ConfigError(f"{folder} was set up with another config; resume it with its own.")
        resume = False
    if resume:
        state = restore_state(folder, cfg)
        truncate_metrics(folder, state.iteration)
    else:
        create_run(folder, config_yaml(cfg))  # the run folder's lifecycle, as meta_train's
        params = initial_params(cfg, family)
        generator = torch.Generator().manual_seed(cfg.seed + 1)  # not θ₀'s stream
        state = State(0, params, adam(cfg.ppo_lr).init(params), generator, 0.0)
    end = min(cfg.iterations, stop_at) if stop_at is not None else cfg.iterations
    spent = cfg.time_budget is not None and state.elapsed >= cfg.time_budget
    if spent:
        end = state.iteration  # resumed after the budget was spent
    env = family.vector((cfg.meta_batch or 1) * cfg.trajectories)
    started = saved = time.perf_counter()
    metrics: dict[str, float] = {}
    with TrainingProgress(
        Horizon(cfg.iterations, cfg.time_budget), folder.name or str(folder),
        start=state.iteration, spent=state.elapsed, tasks_per_step=cfg.tasks_per_iteration,
        quiet=quiet,
    ) as bar:  # fmt: skip
        while state.iteration < end:
            tick = time.perf_counter()
            metrics = iteration(cfg, family, env, state)
            took = time.perf_counter() - tick
            state.elapsed += took
            state.iteration += 1
            if cfg.time_budget is not None and state.elapsed >= cfg.time_budget:
                spent, end = True, state.iteration  # the budget is used up: this was the last
            record: dict[str, Any] = {"step": state.iteration, "time": round(state.elapsed, 3)}
            record |= {"wall": round(time.perf_counter() - started, 3), "seconds": round(took, 3)}
            append_metrics(folder, record | metrics)
            due = time.perf_counter() - saved >= SAVE_SECONDS
            if state.iteration % cfg.save_every == 0 or state.iteration == end or due:
                save_state(folder, cfg, state)
                saved = time.perf_counter()
            shown = f"return {metrics['return_before']:.1f}"
            if "return_after" in metrics:
                shown += f"→{metrics['return_after']:.1f}"
            bar.update(state.iteration, state.elapsed, loss=metrics["loss"], val=shown)
    final = {k: v.detach().clone() for k, v in state.params.items()}
    finished = spent or state.iteration >= cfg.iterations
    return RLTrainResult(folder, state.iteration, final, metrics, finished)


def iteration(cfg: RLConfig, family: Family, env: TaskVectorEnv, state: State) -> dict[str, float]:
    """One meta-iteration: sample tasks, collect, adapt, collect, update ``state`` in place."""
    g, N, H = state.generator, cfg.trajectories, cfg.horizon or family.horizon
    tasks = family.sample_tasks(cfg.tasks_per_iteration, g)
    fast = per_task(state.params, len(tasks))
    inner: list[Batch] = []
    returns: list[float] = []
    steps = cfg.inner_steps if cfg.method == "maml" else 0
    for _ in range(steps):
        traj = collect(env, tasks, fast, per_task=N, horizon=H, generator=g)
        returns.append(float(traj.returns().mean()))
        inner.append(make_batch(traj, cfg))
        fast = inner_step(fast, inner[-1], cfg.inner_lr, create_graph=False)
    traj = collect(env, tasks, fast, per_task=N, horizon=H, generator=g)
    returns.append(float(traj.returns().mean()))
    outer = make_batch(traj, cfg)
    first_order = bool(cfg.first_order)
    objective = MetaObjective(
        tuple(inner), outer, OldPolicy.of(fast, outer), cfg.inner_lr, first_order
    )
    if cfg.outer == "trpo":
        state.params, info = trpo_step(
            state.params,
            lambda p, graph: objective.loss_and_kl(p, graph=graph),
            max_kl=cfg.max_kl,
            cg_iters=cfg.cg_iters,
            damping=cfg.cg_damping,
            backtrack=cfg.ls_backtrack,
            ls_steps=cfg.ls_steps,
        )
    else:
        state.params, state.adam, info = ppo_step(
            state.params,
            objective,
            state.adam,
            epochs=cfg.ppo_epochs,
            clip=cfg.ppo_clip,
            lr=cfg.ppo_lr,
        )
    if not all(bool(torch.isfinite(v).all()) for v in state.params.values()):
        raise RLDivergedError(
            f"The policy's parameters became NaN or infinite at iteration {state.iteration + 1}; "
            "start a new run (another --out) with a lower ppo_lr or max_kl."
        )
    out = {"return_before": returns[0]}
    if steps:
        out["return_after"] = returns[-1]
    return out | info
