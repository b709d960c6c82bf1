"""N-way K-shot episodes over an in-memory labeled set.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (the episode
    protocol). Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks", ICML 2017.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearner.data.labeled import LabeledSet, model_input
from metalearner.errors import DataError
from metalearner.tasks.augment import augment_images, is_colour
from metalearner.tasks.batch import TaskBatch


@dataclass(frozen=True)
class EpisodePlan:
    """Which examples make up each task: cheap to store, so fixed task sets keep only this.

    Attributes:
        classes: ``[T, N]`` global class ids; label ``j`` of task ``t`` is ``classes[t, j]``.
        rows: ``[T, N, K + Q]`` rows of the labeled set; the first ``K`` of each class are the
            support, the rest the query.
    """

    classes: Tensor
    rows: Tensor


class EpisodeSampler:
    """Draws N-way K-shot tasks with Q queries per class from the classes of one split.

    Classes are drawn uniformly without replacement among the split's classes, and each class's
    K + Q examples uniformly without replacement among its examples. All randomness comes from
    the ``generator`` passed in; the global RNG is never touched.

    Args:
        data: the labeled set.
        classes: ``[C']`` global ids of the classes this sampler may use (one split).
        ways: N, classes per task.
        shots: K, support examples per class.
        queries: Q, query examples per class.
        augment: :meth:`sample` passes colour images (``uint8 [3, H, W]``) through
            :func:`~metalearner.tasks.augment.augment_images`, support and query alike, its
            draws from the same generator (meta-training on mini-ImageNet and the like, as
            RFS and MetaOptNet do); fixed task sets (validation, test) never augment. Grey and
            other inputs pass unchanged (Omniglot's augmentation is its rotation classes).
        within_groups: each task's N classes come from one group of the labeled set (Omniglot:
            one alphabet, a rotation of it its own; tiered-ImageNet: one category), the group
            that of a class drawn uniformly among those whose group has N classes: the tasks
            of Lake et al.'s within-alphabet runs, whose characters differ less than those of
            N alphabets.
        groups_setting: the setting that asked for ``within_groups``, which an error about it
            names (``data.train_within_groups``, ``data.val_within_groups``).

    Raises:
        DataError: if the split has fewer than N classes or a class has fewer than K + Q
            examples; with ``within_groups``, if the set records no groups or no group of the
            split has N classes.

    Example:
        >>> sampler = EpisodeSampler(data, split.train, ways=5, shots=1, queries=15)
        >>> batch = sampler.sample(32, generator=torch.Generator().manual_seed(0))
        >>> batch.support_x.shape  # [32, 5, 1, 28, 28]
    """

    def __init__(
        self,
        data: LabeledSet,
        classes: Tensor,
        *,
        ways: int,
        shots: int,
        queries: int,
        augment: bool = False,
        within_groups: bool = False,
        groups_setting: str = "data.train_within_groups",
    ) -> None:
        if ways < 1 or shots < 1 or queries < 0:
            raise DataError(
                f"ways={ways}, shots={shots}, queries={queries} is not a task; "
                "use ways >= 1, shots >= 1 and queries >= 0."
            )
        if len(classes) < ways:
            raise DataError(
                f"{data.name} has {len(classes)} classes in this split but a task needs "
                f"{ways} ways; lower --ways or use a split with more classes."
            )
        self.data = data
        self.classes = classes.to(torch.int64)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.augment = augment and is_colour(data.x)
        self._table, counts = data.index_table(self.classes)
        need = shots + queries
        small = (counts < need).nonzero().flatten()
        if len(small):
            worst = int(self.classes[small[0]])
            raise DataError(
                f"Class {data.class_names[worst]!r} of {data.name} has "
                f"{int(counts[small[0]])} examples but a task needs shots + queries = {need}; "
                "lower --shots/--queries (data.train_queries, where training episodes are "
                "what does not fit) or remove that class."
            )
        # With equal class sizes (Omniglot: 20 drawings each) no padding mask is needed.
        self._ragged = bool((counts != counts.max()).any())
        self._pad = (self._table < 0) if self._ragged else None
        self._group: Tensor | None = None  # [C'] group index of each class (within_groups)
        self._anchors: Tensor | None = None  # [A] classes whose group has N classes
        if within_groups:
            self._group, self._anchors = self._groups_of(ways, groups_setting)

    def _groups_of(self, ways: int, setting: str) -> tuple[Tensor, Tensor]:
        """Each class's group index and the classes whose group has ``ways`` classes."""
        data = self.data
        if not data.groups:
            raise DataError(
                f"{data.name} records no groups of classes (alphabets, categories), so its "
                f"tasks cannot be drawn within one; unset {setting}."
            )
        names = [data.groups[c] for c in self.classes.tolist()]
        index = {g: i for i, g in enumerate(sorted(set(names)))}
        group = torch.tensor([index[g] for g in names], dtype=torch.int64)
        sizes = torch.bincount(group, minlength=len(index))
        anchors = (sizes[group] >= ways).nonzero().flatten()
        if not len(anchors):
            raise DataError(
                f"No group of {data.name}'s {len(self.classes)} classes in this split has "
                f"{ways} classes (the largest has {int(sizes.max())}), so no {ways}-way task "
                "fits within one; lower the ways (data.ways, or ProtoNets' "
                f"strategy_config.train_ways) or unset {setting}."
            )
        return group, anchors

    def plan(self, num_tasks: int, *, generator: torch.Generator) -> EpisodePlan:
        """Draws which classes and examples form ``num_tasks`` tasks (no data is gathered)."""
        n_split = len(self.classes)
        # The N smallest of i.i.d. uniforms index a uniformly random N-subset in random order.
        keys = torch.rand(num_tasks, n_split, generator=generator)
        if self._group is not None and self._anchors is not None:
            # Every class outside the task's group sorts after all of its own (keys < 1).
            pick = torch.randint(len(self._anchors), (num_tasks,), generator=generator)
            home = self._group[self._anchors[pick]]  # [T]
            keys.masked_fill_(self._group.unsqueeze(0) != home.unsqueeze(1), 2.0)
        local = keys.topk(self.ways, dim=1, largest=False).indices  # [T, N]
        width = self._table.shape[1]
        item_keys = torch.rand(num_tasks, self.ways, width, generator=generator)
        if self._pad is not None:
            item_keys.masked_fill_(self._pad[local], 2.0)  # padding sorts last
        picks = item_keys.topk(self.shots + self.queries, dim=2, largest=False).indices
        rows = self._table[local].gather(2, picks)  # [T, N, K+Q]
        return EpisodePlan(classes=self.classes[local], rows=rows)

    def gather(self, plan: EpisodePlan) -> TaskBatch:
        """Materialises the tasks of a plan: one index gather from the labeled set."""
        t, n, _ = plan.rows.shape
        k, q = self.shots, self.queries
        # index_select is ~10x faster than advanced indexing for this contiguous gather.
        x = model_input(self.data.x.index_select(0, plan.rows.reshape(-1)))
        x = x.reshape(t, n, k + q, *x.shape[1:])
        labels = torch.arange(n).view(1, n, 1)
        support_y = labels.expand(t, n, k).reshape(t, n * k)
        query_y = labels.expand(t, n, q).reshape(t, n * q)
        return TaskBatch(
            support_x=x[:, :, :k].reshape(t, n * k, *x.shape[3:]),
            support_y=support_y,
            query_x=x[:, :, k:].reshape(t, n * q, *x.shape[3:]),
            query_y=query_y,
            classes=plan.classes,
        )

    def sample(self, num_tasks: int, *, generator: torch.Generator) -> TaskBatch:
        """Draws ``num_tasks`` tasks, all randomness from ``generator``."""
        batch = self.gather(self.plan(num_tasks, generator=generator))
        if not self.augment:
            return batch
        support, query = batch.support_x, batch.query_x
        images = augment_images(torch.cat([support.flatten(0, 1), query.flatten(0, 1)]), generator)
        cut = support.shape[0] * support.shape[1]
        return dataclasses.replace(
            batch,
            support_x=images[:cut].view_as(support),
            query_x=images[cut:].view_as(query),
        )

    def fixed(self, num_tasks: int, *, seed: int) -> EpisodeTaskSet:
        """The same ``num_tasks`` tasks for every caller with this ``seed`` (val/test sets)."""
        plan = self.plan(num_tasks, generator=torch.Generator().manual_seed(seed))
        return EpisodeTaskSet(self, plan)


class EpisodeTaskSet:
    """A fixed set of episodes, stored as a plan and gathered batch by batch on demand."""

    def __init__(self, sampler: EpisodeSampler, plan: EpisodePlan) -> None:
        self.sampler = sampler
        self.plan = plan

    def __len__(self) -> int:
        return int(self.plan.rows.shape[0])

    def batch(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1``."""
        part = EpisodePlan(self.plan.classes[start:stop], self.plan.rows[start:stop])
        return self.sampler.gather(part)
