"""Meta-RL: task families, the policy-gradient estimator, TRPO, the meta-gradient, runs, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import metalearner.rl.train as rl_train
from cli_runner import command, run_cli
from metalearner.errors import ConfigError, DataError
from metalearner.functional.optim import adam
from metalearner.rl import families
from metalearner.rl.advantages import advantages, discounted_returns, gae, linear_baseline
from metalearner.rl.cheetah import HalfCheetahDir, HalfCheetahVel
from metalearner.rl.config import RLConfig, load_rl_config, read_config, write_config
from metalearner.rl.evaluate import evaluate_rl
from metalearner.rl.navigation import Navigation2D, NavigationVectorEnv
from metalearner.rl.objectives import Batch, MetaObjective, OldPolicy, inner_loss, inner_step
from metalearner.rl.policy import LOG_STD, init_policy, per_task
from metalearner.rl.rollouts import Trajectories, collect
from metalearner.rl.state import State
from metalearner.rl.train import train_rl
from metalearner.rl.trpo import flatten, hvp_fn, trpo_step, unflatten
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.folder import run_lock

TINY = ["meta_batch=4", "trajectories=5", "horizon=20", "save_every=2"]


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    # The runs use one thread by default (RLConfig.threads); the direct calls here do the same,
    # since two spinning threads are many times slower wherever another process holds a core.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- task families


@pytest.mark.parametrize("name", list(families.FAMILIES))
def test_tasks_are_seeded_and_in_range(name: str) -> None:
    family = families.get_family(name)
    a, b = family.sample_tasks(50, gen(0)), family.sample_tasks(50, gen(0))
    assert a == b and a != family.sample_tasks(50, gen(1))
    if name == "navigation2d":
        goals = np.array([t["goal"] for t in a])
        assert goals.shape == (50, 2) and (np.abs(goals) <= 0.5).all() and goals.std() > 0.2
    elif name == "halfcheetah-vel":
        v = np.array([t["velocity"] for t in a])
        assert ((v >= 0) & (v <= 2)).all() and v.std() > 0.3
    else:
        assert {t["direction"] for t in a} == {-1, 1}


def test_navigation_reward_is_minus_the_distance_and_depends_on_the_task() -> None:
    env = Navigation2D()
    actions = [np.array([0.1, 0.05]), np.array([0.3, -0.2]), np.array([0.0, 0.1])]

    def rewards(goal: list[float]) -> list[float]:
        env.set_task({"goal": goal})
        env.reset(seed=0)
        return [env.step(a)[1] for a in actions]

    near, far = rewards([0.2, 0.0]), rewards([-0.5, 0.5])
    assert near != far
    # The second action is clipped to [-0.1, 0.1]: position (0.2, -0.05) after two steps.
    assert near[1] == pytest.approx(-0.05)
    assert far[0] == pytest.approx(-math.hypot(0.6, 0.45))


def test_navigation_vector_env_equals_the_single_env() -> None:
    tasks = [*Navigation2D.sample_tasks(6, gen(3)), {"goal": [0.0, 0.1]}]  # the last is reached
    vec = NavigationVectorEnv(len(tasks))
    vec.set_tasks(tasks)
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.15, 0.15, (12, len(tasks), 2))
    actions[:, -1] = [0.0, 0.1]
    singles = [Navigation2D(t) for t in tasks]
    for env in singles:
        env.reset(seed=0)
    done = np.zeros(len(tasks), dtype=bool)
    for a in actions:
        obs, r, term, _, _ = vec.step(a)
        for i, env in enumerate(singles):
            if not done[i]:
                o, ri, ti, _, _ = env.step(a[i])
                np.testing.assert_allclose(obs[i], o)
                assert r[i] == pytest.approx(ri) and term[i] == ti
        done |= term
    assert done[-1] and term[-1]  # terminated stays reported until reset


@pytest.mark.parametrize("cls", [HalfCheetahVel, HalfCheetahDir])
def test_set_task_changes_the_cheetah_reward_for_the_same_trajectory(cls: Any) -> None:
    env = cls()
    tasks = [{"velocity": 0.3}, {"velocity": 1.7}] if cls is HalfCheetahVel else None
    tasks = tasks or [{"direction": 1}, {"direction": -1}]
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 6))
    runs = []
    for task in tasks:
        env.set_task(task)
        obs0, _ = env.reset(seed=7)
        steps = [env.step(a) for a in actions]
        runs.append((obs0, steps))
    (o1, s1), (o2, s2) = runs
    np.testing.assert_array_equal(o1, o2)  # same seed: the same trajectory
    for (ob1, r1, _, _, i1), (ob2, r2, _, _, _), a in zip(s1, s2, actions, strict=True):
        np.testing.assert_array_equal(ob1, ob2)
        assert r1 != r2
        ctrl = 0.05 * float(np.square(a).sum())
        v = i1["x_velocity"]
        expected = -abs(v - 0.3) - ctrl if cls is HalfCheetahVel else v - ctrl
        assert r1 == pytest.approx(expected)
    assert env.observation_space.shape == (17,) and env.action_space.shape == (6,)


def test_gymnasium_ids_are_registered() -> None:
    families.register()
    env = gym.make("metalearner/Navigation2D-v0")
    env.unwrapped.set_task({"goal": [0.1, 0.1]})  # type: ignore[attr-defined]
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and env.spec is not None and env.spec.max_episode_steps == 100
    vec = gym.make_vec("metalearner/Navigation2D-v0", 8, vectorization_mode="vector_entry_point")
    assert isinstance(vec.unwrapped, NavigationVectorEnv) and vec.num_envs == 8
    vec.unwrapped.set_tasks([{"goal": [-0.5, -0.5]}] * 8)  # moving away: never reached
    vec.reset(seed=0)
    for i in range(100):  # the registered time limit truncates every episode at 100 steps
        _, _, _, truncated, _ = vec.step(np.full((8, 2), 0.01, dtype=np.float32))
        assert truncated.all() == (i == 99)
    mask = np.arange(8) < 3
    obs, _ = vec.reset(options={"reset_mask": mask})  # disabled autoreset: reset some by mask
    assert (obs[mask] == 0).all() and (obs[~mask] == 1.0).all()
    assert gym.spec("metalearner/HalfCheetahVel-v0").max_episode_steps == 200
    for name, task in (("Vel", {"velocity": 2.0}), ("Dir", {"direction": -1})):
        cheetah = gym.make(f"metalearner/HalfCheetah{name}-v0")
        tasked = cheetah.unwrapped  # the task API where the navigation environment has it
        tasked.set_task(task)  # type: ignore[attr-defined]
        cheetah.reset(seed=0)
        _, reward, *_, info = tasked.step(np.zeros(6))
        assert reward == pytest.approx(tasked.task_reward(info["x_velocity"]))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["navigation2d", "halfcheetah-vel"])
def test_vectorised_rollouts_have_the_right_shapes(name: str) -> None:
    family = families.get_family(name)
    T, N, H = 5, 3, 6
    env = family.vector(2 * N)  # 5 tasks in chunks of 2 (the last padded)
    tasks = family.sample_tasks(T, gen(0))
    params = per_task(init_policy(family.obs_dim, family.act_dim, generator=gen(0)), T)
    traj = collect(env, tasks, params, per_task=N, horizon=H, generator=gen(1))
    assert traj.obs.shape == (T, N, H, family.obs_dim)
    assert traj.actions.shape == (T, N, H, family.act_dim)
    assert traj.rewards.shape == traj.mask.shape == (T, N, H)
    assert traj.returns().shape == (T, N) and bool(torch.isfinite(traj.obs).all())
    again = collect(env, tasks, params, per_task=N, horizon=H, generator=gen(1))
    assert torch.equal(traj.rewards, again.rewards)  # the generator is the only randomness
    # A task's rollouts do not depend on the other tasks of its chunk: same per-task draws.
    two = per_task(init_policy(family.obs_dim, family.act_dim, generator=gen(0)), 2)
    a_b = collect(env, tasks[:2], two, per_task=N, horizon=H, generator=gen(1))
    a_c = collect(env, tasks[::2][:2], two, per_task=N, horizon=H, generator=gen(1))
    assert torch.equal(a_b.actions[0], a_c.actions[0]) and torch.equal(a_b.obs[0], a_c.obs[0])
    assert torch.equal(a_b.rewards[0], a_c.rewards[0])
    assert not torch.equal(a_b.rewards[1], a_c.rewards[1])  # B and C are other tasks


# ------------------------------------------------------------ estimators and losses


class BanditVectorEnv:
    """A one-step environment with reward ``−‖a − c‖²`` (observation: a constant 0)."""

    def __init__(self, num_envs: int, c: np.ndarray) -> None:
        self.num_envs, self.c = num_envs, c
        self.single_observation_space = gym.spaces.Box(-1, 1, (1,))
        self.single_action_space = gym.spaces.Box(-1, 1, (len(c),))

    def set_tasks(self, tasks: Any) -> None:
        pass

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        return np.zeros((self.num_envs, 1)), {}

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        reward = -np.square(actions - self.c).sum(-1)
        done = np.ones(self.num_envs, dtype=bool)
        return np.zeros((self.num_envs, 1)), reward, done, done, {}


def test_policy_gradient_matches_the_closed_form_on_a_bandit() -> None:
    # π = N(μ, σ²) per dimension (the MLP's output is its last bias: the input and hidden
    # units are 0), r(a) = −‖a − c‖², so E[r] = −Σ((μ − c)² + σ²): ∂/∂μ = −2(μ − c) and
    # ∂/∂log σ = −2σ². The REINFORCE estimate −∇L_in = mean ∇log π(a) r(a) is unbiased.
    mu, c, log_sd = torch.tensor([0.3, -0.2]), np.array([0.8, 0.4]), torch.tensor([-0.5, 0.2])
    params = {
        k: torch.zeros_like(v) for k, v in init_policy(1, 2, (3, 3), generator=gen(0)).items()
    }
    params["mean.bias"], params["log_std"] = mu.clone(), log_sd.clone()
    M = 20000
    traj = collect(
        BanditVectorEnv(M, c), [{}], per_task(params, 1), per_task=M, horizon=1, generator=gen(5)
    )
    batch = Batch.of(traj, advantages(traj, gamma=0.99, lam=1.0, baseline=False, normalized=False))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    estimate = torch.autograd.grad(
        -inner_loss(per_task(leaves, 1), batch).sum(), [leaves["mean.bias"], leaves["log_std"]]
    )
    sd = torch.exp(log_sd)
    exact_mu = -2 * (mu - torch.as_tensor(c, dtype=torch.float32))
    exact_ls = -2 * sd**2
    # Per-sample terms of the estimator, for a tolerance that follows from its variance.
    a, r = traj.actions[0, :, 0], traj.rewards[0, :, 0]
    per_mu = (a - mu) / sd**2 * r[:, None]
    per_ls = (((a - mu) / sd) ** 2 - 1) * r[:, None]
    for est, exact, per in ((estimate[0], exact_mu, per_mu), (estimate[1], exact_ls, per_ls)):
        torch.testing.assert_close(est, per.mean(0), rtol=1e-4, atol=1e-5)  # the same estimator
        tolerance = 4 * per.std(0) / math.sqrt(M)
        assert bool(((est - exact).abs() < tolerance).all()), (est, exact, tolerance)


def test_returns_baseline_and_gae() -> None:
    rewards = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])  # the episode ended after 3 steps
    ret = discounted_returns(rewards, mask, 0.5)
    torch.testing.assert_close(ret, torch.tensor([[[1 + 1 + 0.75, 2 + 1.5, 3.0, 0.0]]]))
    values = torch.tensor([[[0.5, 0.1, -0.2, 9.0]]])
    # λ = 1: the discounted return minus the baseline.
    torch.testing.assert_close(gae(rewards, values, mask, 0.5, 1.0), (ret - values) * mask)
    # λ = 0: the one-step TD error (no bootstrap past the end).
    td = torch.tensor([[[1 + 0.05 - 0.5, 2 - 0.1 - 0.1, 3 + 0.2, 0.0]]])
    torch.testing.assert_close(gae(rewards, values, mask, 0.5, 0.0), td)
    # The ridge fit is exact for returns that are linear in its features.
    obs = torch.randn(2, 3, 10, 2, generator=gen(0))
    t = torch.arange(10) / 10
    target = 2 * obs[..., 0] - obs[..., 1] ** 2 + 3 * t**2 + 0.5
    fitted = linear_baseline(obs, target, torch.ones(2, 3, 10), reg=1e-9)
    torch.testing.assert_close(fitted, target, atol=1e-4, rtol=1e-4)
    traj = Trajectories(obs, torch.zeros(2, 3, 10, 1), torch.randn(2, 3, 10), torch.ones(2, 3, 10))
    adv = advantages(traj, gamma=0.99, lam=1.0)
    torch.testing.assert_close(adv.mean((1, 2)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(adv.std((1, 2), unbiased=False), torch.ones(2), atol=1e-4, rtol=0)


def tiny_problem(
    dtype: torch.dtype = torch.float64, lr: float = 0.5
) -> tuple[dict[str, torch.Tensor], MetaObjective]:
    """A tiny policy and fabricated pre/post batches of 2 tasks, with the old (adapted) policy."""
    g = gen(11)
    params = init_policy(2, 2, (5, 4), generator=g, init_log_std=-0.3, dtype=dtype)
    params = {
        k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in params.items()
    }

    def batch() -> Batch:
        shape = (2, 3, 4)
        obs = torch.randn(*shape, 2, generator=g, dtype=dtype)
        actions = torch.randn(*shape, 2, generator=g, dtype=dtype)
        adv = torch.randn(*shape, generator=g, dtype=dtype)
        return Batch(obs, actions, torch.ones(shape, dtype=dtype), adv)

    pre, post = batch(), batch()
    fast = inner_step(per_task(params, 2), pre, lr, create_graph=False)
    # The sampling policy is perturbed, so that the surrogate's ratio is not 1 at θ.
    old_params = {
        k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in fast.items()
    }
    return params, MetaObjective((pre,), post, OldPolicy.of(old_params, post), lr, False)


def test_meta_gradient_through_the_inner_step_matches_finite_differences() -> None:
    params, objective = tiny_problem()
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss, _ = objective.loss_and_kl(leaves)
    auto = flatten(torch.autograd.grad(loss, list(leaves.values())))
    base, eps = flatten(params), 1e-6
    numeric = torch.zeros_like(base)
    for i in range(base.numel()):
        step = torch.zeros_like(base)
        step[i] = eps
        up = objective.loss_and_kl(unflatten(base + step, params), graph=False)[0]
        down = objective.loss_and_kl(unflatten(base - step, params), graph=False)[0]
        numeric[i] = (up - down) / (2 * eps)
    torch.testing.assert_close(auto, numeric, rtol=1e-6, atol=1e-8)
    # The second-order term matters: first-order MAML's gradient is visibly different.
    fo = dataclasses.replace(objective, first_order=True)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    first = flatten(torch.autograd.grad(fo.loss_and_kl(leaves)[0], list(leaves.values())))
    assert float((first - numeric).norm()) > 0.05 * float(numeric.norm())


def test_kl_hessian_vector_product_equals_the_full_hessian_through_adaptation() -> None:
    params, objective = tiny_problem()
    # At the sampling policy (old = adapted θ) the KL is 0: TRPO's situation.
    fast = objective.adapted(params, graph=False)
    objective = dataclasses.replace(objective, old=OldPolicy.of(fast, objective.outer))

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        return objective.loss_and_kl(unflatten(flat, params))[1]

    full = torch.autograd.functional.hessian(kl_of, flatten(params))
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    hvp = hvp_fn(objective.loss_and_kl(leaves)[1], leaves, damping=0.0)
    for seed in range(3):
        v = torch.randn(full.shape[0], generator=gen(seed), dtype=torch.float64)
        torch.testing.assert_close(hvp(v), full @ v, rtol=1e-8, atol=1e-10)
    assert float(kl_of(flatten(params))) == pytest.approx(0.0, abs=1e-12)


def test_a_training_iteration_meta_learns_through_the_inner_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The objective that `rl train` builds, not one made by hand: on the same data (the same
    # generator), its gradient must differ from first-order MAML's, and TRPO must move log σ.
    family = families.get_family("navigation2d")
    seen: list[tuple[dict[str, torch.Tensor], Any]] = []
    real = rl_train.trpo_step

    def spy(params: dict[str, torch.Tensor], loss_and_kl: Any, **settings: Any) -> Any:
        seen.append((params, loss_and_kl))
        return real(params, loss_and_kl, **settings)

    monkeypatch.setattr(rl_train, "trpo_step", spy)
    after = []
    for first_order in ("false", "true"):
        cfg = load_rl_config("navigation2d", [*TINY, f"first_order={first_order}"])
        params = rl_train.initial_params(cfg, family)
        state = State(0, params, adam(3e-4).init(params), gen(1), 0.0)
        rl_train.iteration(cfg, family, family.vector(4 * 5), state)
        after.append(state.params)
    grads = []
    for theta, loss_and_kl in seen:
        leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        loss = loss_and_kl(leaves, True)[0]
        grads.append(flatten(torch.autograd.grad(loss, list(leaves.values()))))
    second, first = grads
    # ~2.5% here; float32 round-off would be ~1e-6, an objective without the term exactly 0.
    assert float((second - first).norm()) > 1e-3 * float(second.norm())
    assert not torch.equal(after[0][LOG_STD], seen[0][0][LOG_STD])


def navigation_objective(max_tasks: int = 6) -> tuple[dict[str, torch.Tensor], MetaObjective]:
    cfg = load_rl_config("navigation2d", ["horizon=30", "trajectories=10"])
    family = families.get_family("navigation2d")
    params = init_policy(2, 2, generator=gen(0))
    tasks = family.sample_tasks(max_tasks, gen(1))
    env = family.vector(max_tasks * 10)
    g = gen(2)
    pre = collect(env, tasks, per_task(params, max_tasks), per_task=10, horizon=30, generator=g)
    pre_b = Batch.of(pre, advantages(pre, gamma=cfg.gamma, lam=cfg.gae_lambda))
    fast = inner_step(per_task(params, max_tasks), pre_b, cfg.inner_lr, create_graph=False)
    post = collect(env, tasks, fast, per_task=10, horizon=30, generator=g)
    post_b = Batch.of(post, advantages(post, gamma=cfg.gamma, lam=cfg.gae_lambda))
    return params, MetaObjective((pre_b,), post_b, OldPolicy.of(fast, post_b), cfg.inner_lr, False)


@pytest.mark.parametrize("max_kl", [0.01, 0.0005])
def test_trpo_step_respects_its_kl_bound_and_improves_the_surrogate(max_kl: float) -> None:
    params, objective = navigation_objective()
    before, kl0 = objective.loss_and_kl(params, graph=False)
    assert float(kl0) == pytest.approx(0.0, abs=1e-6)
    new, info = trpo_step(
        params, lambda p, graph: objective.loss_and_kl(p, graph=graph), max_kl=max_kl
    )
    after, kl = objective.loss_and_kl(new, graph=False)
    assert info["ls_step"] >= 0 and float(after) < float(before)
    assert 0 < float(kl) <= max_kl
    assert float(kl) > max_kl / 2**8  # a real step, not a vanishing one
    assert any(not torch.equal(new[k], params[k]) for k in params)


# -------------------------------------------------------------------- runs


def test_config_defaults_and_overrides() -> None:
    nav = load_rl_config("navigation2d")
    cheetah = load_rl_config("halfcheetah-vel", ["outer=ppo", "hidden=[64, 32]"], seed=3)
    assert (nav.meta_batch, nav.horizon, nav.first_order, nav.inner_lr) == (20, 100, False, 0.1)
    assert (cheetah.meta_batch, cheetah.horizon, cheetah.first_order) == (40, 200, True)
    assert cheetah.hidden == (64, 32) and cheetah.seed == 3
    for bad, words in [
        (["iterations=zero"], "'iterations' must be an integer"),
        (["nonsense=1"], "Unknown setting 'nonsense'"),
        (["max_kl=-1"], "'max_kl' must be > 0"),
        (["gamma=1.5"], "'gamma' must be in (0, 1]"),
        (["iterations"], "is not key=value"),
    ]:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_rl_config("navigation2d", bad)
    with pytest.raises(ConfigError, match="Unknown RL environment 'ant'"):
        load_rl_config("ant")


@pytest.mark.parametrize(
    "env, outer", [("navigation2d", "trpo"), ("navigation2d", "ppo"), ("halfcheetah-vel", "trpo")]
)
def test_a_stopped_and_resumed_run_ends_bit_identical(tmp_path: Path, env: str, outer: str) -> None:
    small = ["meta_batch=2", "trajectories=2", "horizon=8"] if env != "navigation2d" else []
    cfg = load_rl_config(env, [*TINY, *small, "iterations=5", f"outer={outer}"])
    whole = train_rl(cfg, tmp_path / "whole", quiet=True)
    train_rl(cfg, tmp_path / "cut", quiet=True, stop_at=3)
    resumed = train_rl(cfg, tmp_path / "cut", resume=True, quiet=True)
    assert whole.iteration == resumed.iteration == 5
    for k in whole.params:
        assert torch.equal(whole.params[k], resumed.params[k]), k
    lines = (tmp_path / "cut/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="already holds a run"):
        train_rl(cfg, tmp_path / "whole", quiet=True)
    with pytest.raises(DataError, match="not an RL run folder"):
        train_rl(cfg, tmp_path / "nowhere", resume=True, quiet=True)
    assert not (tmp_path / "nowhere").exists()


def test_a_run_stopped_before_its_first_checkpoint_is_taken_over_as_a_supervised_one(
    tmp_path: Path,
) -> None:
    # The shared run lifecycle (runs.folder.create_run): nothing to resume or lose, so a new
    # run replaces the config and the log; RL used to refuse such a folder.
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    write_config(folder / "config.yaml", load_rl_config("navigation2d", [*TINY, "seed=7"]))
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')
    cfg = load_rl_config("navigation2d", [*TINY, "iterations=1"])
    train_rl(cfg, folder, quiet=True)
    assert read_config(folder / "config.yaml") == cfg
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1] and "time" in lines[0]


def test_a_folder_another_process_trains_in_is_neither_taken_over_nor_resumed(
    tmp_path: Path,
) -> None:
    cfg = load_rl_config("navigation2d", [*TINY, "iterations=2"])
    run = tmp_path / "run"
    train_rl(cfg, run, quiet=True, stop_at=1)
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "metrics.jsonl")}
    held = pytest.raises(ConfigError, match="being trained by another process")
    with run_lock(run), held:  # run_lock: what a process training in it holds
        train_rl(cfg, run, resume=True, quiet=True)
    assert {f: (run / f).read_bytes() for f in before} == before
    assert train_rl(cfg, run, resume=True, quiet=True).iteration == 2  # free again


def test_a_resume_refuses_an_edited_config_that_changes_the_policy(tmp_path: Path) -> None:
    cfg = load_rl_config("navigation2d", [*TINY, "iterations=3"])
    train_rl(cfg, tmp_path / "run", quiet=True, stop_at=2)
    # What `metalearner rl train --resume` does after an edit of the run's config.yaml.
    edited = dataclasses.replace(cfg, hidden=(50, 50))
    write_config(tmp_path / "run/config.yaml", edited)
    with pytest.raises(ConfigError, match=r"sets hidden to \[50, 50\].*put that back"):
        train_rl(edited, tmp_path / "run", resume=True, quiet=True)
    longer = dataclasses.replace(cfg, iterations=4)  # a run is extended by raising iterations
    write_config(tmp_path / "run/config.yaml", longer)
    assert train_rl(longer, tmp_path / "run", resume=True, quiet=True).iteration == 4


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path: Path) -> None:
    cfg = load_rl_config("navigation2d", [*TINY, "iterations=3", "save_every=10"])
    whole = train_rl(cfg, tmp_path / "whole", quiet=True)
    # What a kill during the first iterations leaves: the config, a metric line, no checkpoint.
    folder = tmp_path / "early"
    (folder / "checkpoints").mkdir(parents=True)
    write_config(folder / "config.yaml", cfg)
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "return_before": -1.0}) + "\n")
    resumed = train_rl(cfg, folder, resume=True, quiet=True)
    assert all(torch.equal(whole.params[k], resumed.params[k]) for k in whole.params)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[0])["return_before"] != -1.0  # the stale line is gone
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="afile is a file; give a folder for --out"):
        train_rl(cfg, tmp_path / "afile", quiet=True)


def test_halfcheetah_meta_iteration_runs(tmp_path: Path) -> None:
    cfg = load_rl_config(
        "halfcheetah-dir",
        ["meta_batch=2", "trajectories=2", "horizon=8", "iterations=1", "cg_iters=3"],
    )
    result = train_rl(cfg, tmp_path / "run", quiet=True)
    assert result.iteration == 1 and math.isfinite(result.metrics["return_after"])
    scores = evaluate_rl(tmp_path / "run", num_tasks=2, steps=1, figures=False)
    assert [c.policy for c in scores.curves] == ["maml", "random"] and scores.missing == [
        "pretrained"
    ]


def test_a_short_navigation_run_adapts_on_fixed_test_tasks(tmp_path: Path) -> None:
    # Eight meta-iterations (~10 s) already open a gap of ~15 between the returns before and
    # after one step, with 95% intervals of ~5 over the 20 fixed test tasks.
    cfg = load_rl_config(
        "navigation2d", ["iterations=8", "meta_batch=10", "trajectories=10", "test_tasks=20"]
    )
    train_rl(cfg, tmp_path / "nav", quiet=True)
    scores = evaluate_rl(tmp_path / "nav", steps=1)
    maml, random = scores.curves[0], scores.curves[-1]
    assert (maml.policy, random.policy) == ("maml", "random")
    assert maml.mean[1] > maml.mean[0] + max(maml.ci95), maml
    assert maml.mean[1] > random.mean[1] + max(maml.ci95[1], random.ci95[1]), (maml, random)
    assert (tmp_path / "nav/returns.png").stat().st_size > 0
    assert (tmp_path / "nav/trajectories.png").stat().st_size > 0


# -------------------------------------------------------------------- command line


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("rl", *args, cwd=cwd)


def test_train_then_evaluate_from_the_command_line(tmp_path: Path) -> None:
    sets = [f"--set={s}" for s in [*TINY, "iterations=2"]]
    result = run(
        "train", "--env", "navigation2d", *sets, "--baselines", "--out", "r", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "trained 2 iterations" in result.stdout
    assert (tmp_path / "r/pretrain/checkpoints/latest").is_dir()
    result = run("evaluate", "r", "--tasks", "4", "--steps", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("maml", "pretrained", "random", "after 2 steps", "−20.3"):
        assert name in result.stdout
    report = json.loads((tmp_path / "r/eval.json").read_text())
    assert report["num_tasks"] == 4 and len(report["curves"]) == 3
    assert all(len(c["mean"]) == 3 for c in report["curves"])
    assert (tmp_path / "r/returns.png").is_file() and (tmp_path / "r/trajectories.png").is_file()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


BAD_INPUT = [
    (["train", "--env", "ant"], "Unknown RL environment 'ant'"),
    (["train", "--env", "navigation2d", "--set", "inner_lr=fast"], "'inner_lr' must be a number"),
    (["train", "--env", "navigation2d", "--set", "steps=3"], "Unknown setting 'steps'"),
    (["train", "--resume", "--out", "nowhere"], "not an RL run folder"),
    (["train", "--resume", "--out", "r", "--env", "navigation2d"], "keeps its own config"),
    (["evaluate", "nowhere"], "nowhere does not exist"),
    (["evaluate", "."], "not an RL run folder"),
    (["train"], "Give --env"),
]


@pytest.mark.parametrize("args, words", BAD_INPUT)
def test_bad_input_gives_one_line_and_exit_2(
    tmp_path: Path,
    args: list[str],
    words: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process through the real entry point (the subprocess test below covers one case).
    from metalearner.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["metalearner", "rl", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_bad_input_from_a_shell_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run("train", "--env", "navigation2d", "--set", "gamma=2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: Setting 'gamma' must be in (0, 1], got 2.0."


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identical(tmp_path: Path) -> None:
    sets = [f"--set={s}" for s in [*TINY, "iterations=40", "save_every=1"]]
    assert (
        run(
            "train", "--env", "navigation2d", *sets, "--out", "whole", "-q", cwd=tmp_path
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        command("rl", "train", "--env", "navigation2d", *sets, "--out", "killed", "-q"),
        cwd=tmp_path,
    )
    meta = tmp_path / "killed/checkpoints/latest/meta.json"
    deadline = time.time() + 120
    while not (meta.exists() and json.loads(meta.read_text())["step"] >= 3):
        assert time.time() < deadline and proc.poll() is None, "no checkpoint before the deadline"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(tmp_path / "killed/checkpoints/latest").meta["step"]
    assert step < 40, "the run finished before it could be killed; raise iterations"
    resumed = run("train", "--resume", "--out", "killed", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "whole/checkpoints/latest").group("params")
    b = load_checkpoint(tmp_path / "killed/checkpoints/latest").group("params")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rl_config_is_frozen_and_typed() -> None:
    cfg = RLConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.iterations = 3  # type: ignore[misc]
    for seed in (5, 4):  # θ₀'s stream, and the training tasks' (seed + 1)
        with pytest.raises(ConfigError, match="test_seed \\(5\\) must differ from seed"):
            RLConfig(seed=seed, test_seed=5)
    for bad in ("cg_damping", "init_log_std", "time_budget"):
        with pytest.raises(ConfigError, match=f"'{bad}'"):
            RLConfig(**{bad: math.nan})
