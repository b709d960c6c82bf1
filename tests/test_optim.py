"""The pure optimisers against torch.optim (an independent implementation), and their purity."""

from __future__ import annotations

import pytest
import torch

from metalearner.functional import optim


def _problem(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = {"w": torch.randn(3, 4, generator=g, dtype=torch.float64)}
    params["b"] = torch.randn(3, generator=g, dtype=torch.float64)
    target = torch.randn(3, generator=g, dtype=torch.float64)
    return params, target


def _loss(p: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)
    return ((torch.tanh(p["w"] @ x + p["b"]) - target) ** 2).sum()


def _run_ours(opt: optim.Optimizer, steps: int) -> dict[str, torch.Tensor]:
    params, target = _problem()
    state = opt.init(params)
    for _ in range(steps):
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        grads = torch.autograd.grad(_loss(leaves, target), list(leaves.values()))
        params, state = opt.update(params, dict(zip(leaves, grads, strict=True)), state)
    return params


def _run_torch(make: type[torch.optim.Optimizer], steps: int, **kw: object) -> list[torch.Tensor]:
    params, target = _problem()
    leaves = [v.clone().requires_grad_() for v in params.values()]
    opt = make(leaves, **kw)
    for _ in range(steps):
        opt.zero_grad()
        _loss(dict(zip(params, leaves, strict=True)), target).backward()
        opt.step()
    return leaves


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.0, 0.99)])
def test_adam_takes_torch_adams_steps(betas: tuple[float, float]) -> None:
    ours = _run_ours(optim.adam(0.05, betas=betas, eps=1e-8), steps=7)
    ref = _run_torch(torch.optim.Adam, 7, lr=0.05, betas=betas, eps=1e-8)
    for mine, theirs in zip(ours.values(), ref, strict=True):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("momentum", "decay"), [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3)])
def test_sgd_takes_torch_sgds_steps(momentum: float, decay: float) -> None:
    ours = _run_ours(optim.sgd(0.1, momentum=momentum, weight_decay=decay), steps=6)
    ref = _run_torch(torch.optim.SGD, 6, lr=0.1, momentum=momentum, weight_decay=decay)
    for mine, theirs in zip(ours.values(), ref, strict=True):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-12, atol=1e-12)


def test_an_update_changes_none_of_its_inputs_and_passes_other_parameters_through() -> None:
    params, _ = _problem()
    before = {k: v.clone() for k, v in params.items()}
    opt = optim.adam(0.1)
    state = opt.init(params)
    saved = {k: v.clone() for k, v in state.items()}
    grads = {"w": torch.ones_like(params["w"])}  # "b" is not updated
    new, new_state = opt.update(params, grads, state)
    for k in params:
        assert torch.equal(params[k], before[k])
    for k in state:
        assert torch.equal(state[k], saved[k])
    assert new["b"] is params["b"] and not torch.equal(new["w"], params["w"])
    assert int(new_state["count"]) == 1 and int(state["count"]) == 0


def test_sgd_with_per_parameter_rates_is_differentiable_in_params_and_rates() -> None:
    # One step p' = p - a * g(p) on f(p) = p³/3 (g = p²): dp'/dp = 1 - 2ap, dp'/da = -p².
    p = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(p**3 / 3, p, create_graph=True)
    new, _ = optim.sgd({"p": a}).update({"p": p}, {"p": g}, {})
    dp, da = torch.autograd.grad(new["p"], [p, a])
    assert float(dp) == pytest.approx(1 - 2 * 0.3 * 0.7) and float(da) == pytest.approx(-0.49)
