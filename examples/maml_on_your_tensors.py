"""Second-order MAML on your own network and your own tensors, in a loop of your own.

Each task here is a line ``y = a·x + b`` (your data would take its place: any tensors shaped
``[tasks, examples, ...]``). MAML learns a starting point from which one gradient step on a
task's 5 support points fits its query points; the script prints the query loss on new tasks
before and after that step, against a network trained on all tasks jointly.

Run: ``python examples/maml_on_your_tensors.py [--steps 300]``

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from metalearner import functional as fx
from metalearner.strategies import build
from metalearner.tasks import TaskBatch


def line_tasks(n: int, generator: torch.Generator, *, shots: int = 5) -> TaskBatch:
    """``n`` tasks y = a·x + b: ``shots`` support and 20 query points each."""
    a = torch.empty(n, 1).uniform_(-2, 2, generator=generator)
    b = torch.empty(n, 1).uniform_(-1, 1, generator=generator)
    x = torch.empty(n, shots + 20).uniform_(-1, 1, generator=generator)
    y = a * x + b
    return TaskBatch(
        support_x=x[:, :shots, None], support_y=y[:, :shots],
        query_x=x[:, shots:, None], query_y=y[:, shots:],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="meta-steps")
    steps = parser.parse_args().steps

    torch.manual_seed(0)  # the network's own initialisation, its weights MAML starts from
    net = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    maml = build("maml", net, {"inner_lr": 0.1, "inner_steps": 1, "eval_steps": 1})
    params = maml.init_params(0)  # net's weights, under net's own names
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        metrics = maml.step(optimizer, params, line_tasks(16, g))  # meta-gradients, then a step
        if step % 100 == 0:
            print(f"step {step}: query loss after adaptation {metrics['loss']:.4f}")

    test = line_tasks(100, torch.Generator().manual_seed(2))
    fn, theta = fx.functional(net), {k: v.detach() for k, v in params.items()}
    before = after = 0.0
    for t in range(100):
        before += float(fx.task_loss(fn(theta, test.query_x[t]), test.query_y[t]))
        predict = maml.adapt(theta, test.support_x[t], test.support_y[t])
        after += float(fx.task_loss(predict(test.query_x[t]), test.query_y[t]))
    print(f"new tasks, query MSE: {before / 100:.4f} before, {after / 100:.4f} after one step")


if __name__ == "__main__":
    main()
