"""Opt-in speed paths for the per-task loop: a compiled task, a CUDA graph, bfloat16 autocast.

Second-order MAML differentiates the support pass twice: the inner gradient, then the outer
gradient through it. Written with ``torch.func.grad`` (which :func:`metalearner.functional.adapt`
uses in code being compiled), the inner gradient is traced by ``torch.compile`` into ordinary
forward operations, so a whole task (every inner step and the query pass) becomes one graph
that AOTAutograd differentiates once: BatchNorm, ReLU, pooling and their derivatives run as a
few fused loops instead of one kernel per operation. Its meta-gradient equals the eager loop's
up to rounding (tests/test_speed.py checks it in float64; benchmarks/maml_speed.py in float32,
where several inner steps amplify rounding differences).

On a GPU the per-task loop is launch-bound: the vmapped path runs a whole 5-way meta-batch's
arithmetic several times faster than the loop runs it task by task, so most of the loop's time is
Python and kernel launches, not kernels (benchmarks/maml_speed.py). :class:`CapturedFunction`
records a whole meta-step once as a CUDA graph and replays it with one launch (MAML's
``cuda_graph``, with any batching: the loop, the compiled loop, vmap). Its memory stays the
recorded path's: the recorded kernels allocate from the graph's private pool, which reuses within
the recording what the recording freed, so for the loop the pool holds one task's graph at a time,
not the meta-batch's. It reads the parameters in place and takes the batch from the host into its
inputs, so it holds no second copy of either, and its peak memory is the plain loop's:
benchmarks/maml_speed.py compares its speed and memory with the libraries', and tests/test_cuda.py
checks its meta-gradients.

bfloat16 autocast runs convolutions and matrix products in bfloat16 (on CPUs with AVX512-BF16
or AMX, and on GPUs); the meta-gradient is then only as precise as bfloat16 (~1e-2 relative),
which is why it is an opt-in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch
import torch.utils._pytree as pytree

from metalearner.errors import ConfigError

Precision = Literal["float32", "bfloat16"]


def precision_context(
    precision: str, device: torch.device, *, cache: bool = True
) -> AbstractContextManager[Any]:
    """The autocast context for ``precision``: none for ``"float32"`` (the parameters' dtype).

    ``cache=False`` recasts weights at each use instead of caching their casts, which code
    recorded as a CUDA graph needs (PyTorch's CUDA-graph notes).

    Raises:
        ConfigError: for an unknown precision.
    """
    if precision == "float32":
        return nullcontext()
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    raise ConfigError(f"Unknown precision {precision!r}; use 'float32' or 'bfloat16'.")


def compile_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, one task's meta-objective, compiled for static shapes.

    The first call with a new input shape compiles (about 40 s for conv4 5-way with one inner
    step on a CPU, 110 s for 20-way with five); later calls reuse the compiled kernels. Inside
    the compiled region :class:`metalearner.nn.layers.TaskBatchNorm2d` uses the fused BatchNorm
    kernel, so ``fn`` must see one task at a time and must not be vmapped.
    """
    return torch.compile(fn, dynamic=False)


class CapturedFunction:
    """``fn`` recorded as a CUDA graph per input signature, and replayed.

    ``fn`` takes and returns nested containers (dicts, tuples) of tensors and must not wait
    for the device (no ``.item()``, ``float(tensor)``, branches on tensor values, shapes that
    depend on data) or draw random numbers. Its first call with a new signature (shapes,
    dtypes, devices, strides) runs it twice on a side stream (lazy initialisations such as
    cuBLAS's workspace must not happen while recording), then records it; every call copies its
    inputs (but those read in place, below) into the recording's static tensors on the GPU,
    replays, and returns copies of the outputs (the next replay overwrites them). Each recorded
    signature keeps its memory pool, so use it for calls whose shapes repeat, such as the
    meta-steps of a run.

    Inputs may stay on the CPU (at least one must be on the GPU, which says where ``fn``
    runs): they are copied from the host straight into the static tensors, so the GPU holds
    one copy of them, not a caller's copy and the recording's. That is how MAML's meta-step
    takes its batch (``host_batches``); for a 5-way meta-batch of 32 the batch is 7.7 MiB.

    The CUDA tensors of the positional arguments listed in ``in_place`` are not copied: the
    recording reads them where they are, so their address is part of the signature (a call
    with other tensors records again) and the recording keeps them alive. That suits tensors
    updated in place between calls, such as a run's parameters, which the optimizer steps;
    ``fn`` must not write into them (the warm-up runs and every replay would write into the
    caller's tensors). At most ``keep`` signatures stay recorded; a new one replaces the one
    used least recently. Call it on one stream: a replaced recording's inputs are freed to the
    stream it was recorded from.

    Raises:
        ValueError: an input is not a tensor, no input is a CUDA tensor, inputs are on two
            GPUs, or ``keep`` is below 1.

    References:
        NVIDIA, "CUDA C++ Programming Guide", section CUDA Graphs.
        PyTorch, "CUDA semantics", section CUDA Graphs (whole-network capture).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        warmup: int = 2,
        in_place: tuple[int, ...] = (),
        keep: int = 4,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 recording, not {keep}.")
        self._fn, self._warmup, self._in_place, self._keep = fn, warmup, in_place, keep
        self._recorded: dict[Any, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]] = {}

    def __call__(self, *args: Any) -> Any:
        inputs, spec = pytree.tree_flatten(args)
        devices = {t.device for t in inputs if isinstance(t, torch.Tensor) and t.is_cuda}
        if len(devices) != 1 or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise ValueError(
                "A CUDA graph records CUDA work on one GPU: give every input as a tensor, on "
                "that GPU or on the CPU, with at least one on the GPU."
            )
        shared = [
            i in self._in_place and t.is_cuda
            for i, arg in enumerate(args)
            for t in pytree.tree_leaves(arg)
        ]
        key = (spec, *((t.shape, t.stride(), t.dtype, t.device) for t in inputs))
        key += tuple(t.data_ptr() for t, read in zip(inputs, shared, strict=True) if read)
        if key in self._recorded:  # the most recently used goes last
            self._recorded[key] = self._recorded.pop(key)
        else:
            if len(self._recorded) >= self._keep:  # frees the least recently used one's pool
                del self._recorded[next(iter(self._recorded))]
            self._recorded[key] = self._record(inputs, shared, spec, devices.pop())
        graph, static, outputs = self._recorded[key]
        with torch.no_grad():
            for s, t, read in zip(static, inputs, shared, strict=True):
                if not read:  # from the host: one copy on the GPU, into the recording's input
                    s.copy_(t)
        graph.replay()
        return pytree.tree_map(torch.clone, outputs)

    def _record(
        self,
        inputs: list[torch.Tensor],
        shared: list[bool],
        spec: pytree.TreeSpec,
        device: torch.device,
    ) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]:
        static = [
            t.detach() if read else t.detach().to(device, copy=True)  # dense: same strides
            for t, read in zip(inputs, shared, strict=True)
        ]
        args = pytree.tree_unflatten(static, spec)
        with torch.cuda.device(device):
            side = _capture_stream(device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self._warmup):
                    self._fn(*args)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                outputs = self._fn(*args)
        return graph, static, outputs


_CAPTURE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The one side stream on which every recording of ``device`` warms up and is captured.

    cuBLAS keeps a workspace per stream it has run on (32 MiB on Hopper GPUs), allocated from
    PyTorch's memory and never given back; warming up on one new stream and capturing on
    ``torch.cuda.graph``'s own would hold two of them, and put the recording's peak memory
    well above the plain loop's.
    """
    if device not in _CAPTURE_STREAMS:
        _CAPTURE_STREAMS[device] = torch.cuda.Stream(device)
    return _CAPTURE_STREAMS[device]
