"""Your own network and your own tensors: MAML, Prototypical Networks and ANIL in a loop of yours.

The network is a torchvision-style ResNet written here (stock ``nn.BatchNorm2d``, a ``fc``
head), the data a tensor of images ``[classes, examples, 1, 16, 16]`` (noisy stripes, of an
angle and a frequency per class; yours would take its place). Each strategy takes the module
as it is: its current weights are the starting point, and the trained weights go back into it
(``load_into``). The script prints each strategy's accuracy on tasks of classes it never saw,
before and after meta-training.

Run: ``python examples/your_own_model.py [--steps 100] [--width 8]``

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the ResNet).
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of
    MAML", ICLR 2020 (ANIL).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.nn import load_into
from metalearner.strategies import ANIL, MAML, MAMLConfig, ProtoNet, ProtoNetConfig, Strategy
from metalearner.tasks import TaskBatch

WAYS, SHOTS, QUERIES = 5, 1, 5


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut, as in torchvision's ResNet."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class ResNet(nn.Module):
    """A small ResNet: a stem, three stages of basic blocks, global pooling and ``fc``."""

    def __init__(self, width: int = 8, classes: int = WAYS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 4 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def your_images(classes: int = 40, per_class: int = 10) -> Tensor:
    """``[classes, per_class, 1, 16, 16]``: each class stripes of its own angle and frequency,
    each example at a random phase, with noise."""
    g = torch.Generator().manual_seed(0)
    angle = torch.rand(classes, 1, 1, 1, generator=g) * torch.pi
    frequency = 0.5 + torch.rand(classes, 1, 1, 1, generator=g)
    phase = torch.rand(classes, per_class, 1, 1, generator=g) * 2 * torch.pi
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    stripes = torch.sin(frequency * (x * angle.cos() + y * angle.sin()) + phase)
    noise = 0.3 * torch.randn(classes, per_class, 16, 16, generator=g)
    return (stripes + noise).unsqueeze(2)


def episodes(images: Tensor, tasks: int, generator: torch.Generator) -> TaskBatch:
    """``tasks`` 5-way 1-shot episodes: labels 0..4 stand for random classes of ``images``."""
    support, query = [], []
    for _ in range(tasks):
        chosen = torch.randperm(len(images), generator=generator)[:WAYS]
        order = torch.randperm(images.shape[1], generator=generator)[: SHOTS + QUERIES]
        picked = images[chosen][:, order]  # [ways, shots + queries, 1, 16, 16]
        support.append(picked[:, :SHOTS].flatten(0, 1))
        query.append(picked[:, SHOTS:].flatten(0, 1))
    labels = torch.arange(WAYS).repeat_interleave
    return TaskBatch(
        torch.stack(support), labels(SHOTS).expand(tasks, -1),
        torch.stack(query), labels(QUERIES).expand(tasks, -1),
    )  # fmt: skip


def accuracy(strategy: Strategy, params: dict[str, Tensor], tasks: TaskBatch) -> float:
    """Mean query accuracy after adapting to each task's support set."""
    logits = strategy.predict_tasks(params, tasks)[0]
    return float((logits.argmax(-1) == tasks.query_y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="meta-steps per strategy")
    parser.add_argument("--width", type=int, default=8, help="channels of the first stage")
    args = parser.parse_args()

    images = your_images()
    train, new = images[:30], images[30:]  # meta-train on 30 classes, test on the other 10
    test_tasks = episodes(new, 100, torch.Generator().manual_seed(1))
    strategies = {
        "maml": lambda model: MAML(model, MAMLConfig(inner_lr=0.1, eval_steps=5)),
        "protonet": lambda model: ProtoNet(model, ProtoNetConfig()),
        "anil": lambda model: ANIL(model, MAMLConfig(head_only=True, inner_lr=0.4, eval_steps=5)),
    }
    for name, make in strategies.items():
        torch.manual_seed(0)  # the ResNet's own initialisation
        model = ResNet(args.width)
        strategy = make(model)
        params = strategy.init_params(0)  # the model's own weights
        before = accuracy(strategy, params, test_tasks)
        optimizer = torch.optim.Adam(params.values(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(args.steps):
            strategy.step(optimizer, params, episodes(train, 4, g))
        load_into(model, params)  # the trained weights, back in your module
        after = accuracy(strategy, params, test_tasks)
        print(f"{name}: new classes, {100 * before:.0f}% before, {100 * after:.0f}% after")


if __name__ == "__main__":
    main()
