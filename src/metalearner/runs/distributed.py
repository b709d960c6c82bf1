"""Meta-training across processes and machines with ``torch.distributed`` (launched by torchrun).

A meta-gradient is a mean over the tasks of a meta-batch, so the tasks can be split: every
process (rank) draws the same meta-batch from the same seeded generator, keeps its contiguous
share of the tasks, computes their meta-gradients with the unchanged strategy code, and the
ranks average the shares with one all-reduce before the single optimiser step. With equal
shares the mean of the ranks' means is the mean over the whole meta-batch, so a run on N
processes follows a single-process run up to float summation order. Validation and test tasks
are split the same way and their per-task scores gathered in task order.

Strategies that adapt per task (MAML and its variants, Reptile, ProtoNets) normalise BatchNorm
with each task's own batch, so splitting changes nothing. The transfer baselines pretrain on all
images of a meta-batch as one batch: with BatchNorm in the backbone each rank normalises over its
own share, as PyTorch's DistributedDataParallel does without SyncBatchNorm.

The process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): gloo on CPUs, NCCL with one GPU per rank.

References:
    Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
    VLDB 2020 (all-reduce of gradients before an identical optimiser step on every rank).
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (the meta-gradient as a mean over the tasks of a meta-batch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

from metalearner.errors import ConfigError
from metalearner.tasks.batch import TaskBatch, TaskSet

Backend = Literal["auto", "gloo", "nccl"]
BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks of a run.

    Attributes:
        rank: this process's index, ``0..world-1``; rank 0 alone writes the run folder.
        world: the number of processes.
        local_rank: the index on this machine (which GPU a CUDA rank uses).
        backend: ``"gloo"`` or ``"nccl"``; ``None`` for a single process.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this rank writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world > 1

    def device(self, name: str) -> torch.device:
        """The device this rank computes on: ``cuda:LOCAL_RANK`` for CUDA runs."""
        if name == "cuda" and self.distributed:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def check_meta_batch(self, meta_batch: int) -> None:
        """Refuses a meta-batch that the ranks cannot share equally.

        Raises:
            ConfigError: ``meta_batch`` is not a multiple of the number of processes.
        """
        if meta_batch % self.world:
            fits = [n for n in range(1, meta_batch + 1) if meta_batch % n == 0]
            raise ConfigError(
                f"meta_batch {meta_batch} does not divide across {self.world} processes; set "
                f"meta_batch to a multiple of {self.world} or launch one of "
                f"{', '.join(map(str, fits))} processes."
            )

    def share(self, batch: TaskBatch) -> TaskBatch:
        """This rank's contiguous share of a meta-batch that every rank drew identically."""
        per = batch.num_tasks // self.world
        return batch[self.rank * per : (self.rank + 1) * per]

    def tasks(self, tasks: TaskSet) -> TaskSet:
        """This rank's contiguous share of a fixed task set (shares differ by at most one)."""
        start, stop = _bounds(len(tasks), self.world, self.rank)
        return _Slice(tasks, start, stop)

    def mean(
        self, grads: Mapping[str, Tensor], metrics: Mapping[str, float]
    ) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The ranks' average of their meta-gradients and metrics (one all-reduce)."""
        if not self.distributed:
            return dict(grads), dict(metrics)
        keys = list(grads)
        device = grads[keys[0]].device
        # float64 parameters keep their precision; float32 and bfloat16 reduce in float32.
        wide = any(g.dtype == torch.float64 for g in grads.values())
        dtype = torch.float64 if wide else torch.float32
        values = torch.tensor(list(metrics.values()), dtype=dtype, device=device)
        flat = torch.cat([*(grads[k].reshape(-1).to(dtype) for k in keys), values])
        dist.all_reduce(flat)
        flat /= self.world
        out, at = {}, 0
        for k in keys:
            n = grads[k].numel()
            out[k] = flat[at : at + n].view_as(grads[k]).to(grads[k].dtype)
            at += n
        return out, {k: float(v) for k, v in zip(metrics, flat[at:].tolist(), strict=True)}

    def slowest(self, seconds: float) -> float:
        """The longest of the ranks' ``seconds``: one step takes as long as its slowest rank,
        and every rank must take the same decisions (time budget, validation) from it."""
        if not self.distributed:
            return seconds
        value = torch.tensor([seconds], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return float(value.item())

    def gather(self, scores: Tensor, total: int) -> Tensor:
        """Per-task scores ``[..., n_rank]`` of every rank's share, joined in task order."""
        if not self.distributed:
            return scores
        width = _bounds(total, self.world, 0)[1]  # rank 0 holds the largest share
        pad = torch.full((*scores.shape[:-1], width), float("nan"), dtype=torch.float64)
        pad[..., : scores.shape[-1]] = scores.double()
        pad = pad.to(self._comm_device())
        parts = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(parts, pad)
        kept = [
            p[..., : _bounds(total, self.world, r)[1] - _bounds(total, self.world, r)[0]]
            for r, p in enumerate(parts)
        ]
        return torch.cat(kept, dim=-1).cpu()

    def _comm_device(self) -> torch.device:
        # NCCL moves only CUDA tensors; gloo moves CPU ones.
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


SINGLE = Group()
"""A run in one process: nothing is shared or gathered."""


@contextlib.contextmanager
def joined(device: str, backend: Backend = "auto") -> Iterator[Group]:
    """This process's :class:`Group`, joining torchrun's process group for the block.

    Outside torchrun (no ``WORLD_SIZE``, or 1) it yields :data:`SINGLE`. A group that this call
    created is destroyed on leaving the block; one the caller set up is left alone.

    Args:
        device: the run's device, ``"cpu"`` or ``"cuda"``.
        backend: ``"gloo"`` (CPU tensors), ``"nccl"`` (one GPU per rank) or ``"auto"``
            (NCCL for CUDA runs, gloo otherwise).

    Raises:
        ConfigError: an unknown or unavailable backend, or a backend that does not fit the
            device.
    """
    group = from_environment(device, backend)
    created = group.distributed and not dist.is_initialized()
    if created:
        if group.backend == "nccl":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(group.backend, rank=group.rank, world_size=group.world)
    try:
        yield group
    except BaseException:
        if created and dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never get there
        raise
    if created:
        # Rank 0 may still be writing its last checkpoint: leaving together keeps gloo's
        # threads from being torn down mid-exchange.
        dist.barrier()
        dist.destroy_process_group()


def from_environment(
    device: str, backend: Backend = "auto", environ: Mapping[str, str] | None = None
) -> Group:
    """Reads the rank and world size torchrun set, and checks the backend (joins nothing).

    Raises:
        ConfigError: see :func:`joined`.
    """
    env = os.environ if environ is None else environ
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank, local = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers; launch with torchrun."
        ) from None
    if world <= 1:
        return SINGLE
    chosen = backend if backend != "auto" else ("nccl" if device == "cuda" else "gloo")
    _check_backend(chosen, device, local)
    return Group(rank=rank, world=world, local_rank=local, backend=chosen)


def _check_backend(backend: str, device: str, local_rank: int) -> None:
    if not dist.is_available():
        raise ConfigError("This PyTorch build has no torch.distributed; run in one process.")
    if backend == "gloo" and not dist.is_gloo_available():
        raise ConfigError("The gloo backend is not available in this PyTorch build; use nccl.")
    if backend == "nccl":
        if device != "cuda":
            raise ConfigError(
                "The nccl backend moves only GPU tensors; set device=cuda or use --backend gloo."
            )
        if not dist.is_nccl_available():
            raise ConfigError("The nccl backend is not available in this PyTorch build; use gloo.")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"Rank {local_rank} on this machine has no GPU of its own "
                f"({torch.cuda.device_count()} found); launch at most that many processes per "
                "node."
            )


def _bounds(total: int, world: int, rank: int) -> tuple[int, int]:
    per, extra = divmod(total, world)
    start = rank * per + min(rank, extra)
    return start, start + per + (1 if rank < extra else 0)


class _Slice:
    """Tasks ``start..stop-1`` of a fixed task set, itself a :class:`TaskSet`."""

    def __init__(self, tasks: TaskSet, start: int, stop: int) -> None:
        self._tasks, self._start, self._stop = tasks, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def batch(self, start: int, stop: int) -> TaskBatch:
        return self._tasks.batch(self._start + start, self._start + stop)
