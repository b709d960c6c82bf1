"""Second-order MAML meta-steps per second: our paths against higher, TorchOpt, learn2learn.

A benchmark, not a test. Every path computes the same meta-gradient (mean query cross-entropy
after the inner steps, second-order terms included) on the same batch of Omniglot-shaped random
images from the same initial conv4 weights, and each runs in its own worker process so that its
peak memory is its own. Workers are stepped in turn, round after round, so that load from other
work on the machine spreads over all paths alike. Every meta-gradient is compared with our
per-task loop in float32 (must be < 1e-4 relative) and with that loop in float64.

Where float32 rounding is amplified (20-way, five inner steps, every float32 path lands ~0.2
from float64), each path also computes its meta-gradient once in float64 (after its timings)
and is compared with our loop in float64 ("in f64" column): that shows the same function.

The libraries come from the optional ``bench`` extra (``bash benchmarks/install_bench.sh``);
one that cannot be imported is listed with the reason. Their model is conv4 in the order their
examples use (conv, BatchNorm with batch statistics, ReLU, max-pool); ours pools before the ReLU,
which is the same function.

On a CPU every worker, the libraries' too, first keeps the memory it frees for reuse (what
``metalearner`` runs do, :func:`metalearner.runs.devices.retain_freed_memory`), so the ratios
compare code, not allocators; ``--allocator default`` leaves glibc's default for every path instead.

Memory: on a CPU, "peak MB" is the worker's whole-process RSS high-water mark and "tensors MB"
the most bytes of tensors alive at once during a meta-step (weights, batch and gradients held,
plus the step's own allocations, from the profiler; see tensor_memory.py). The verdict uses
the tensors: they are what a path's memory use consists of, the same quantity the GPU reports,
while RSS adds ~230 MB of interpreter and libraries that spreads by +-25 MB between identical
processes, and a compiled path's RSS also holds the compiler and its generated code.

On a GPU (``--device cuda``) every float32 path runs with TF32 off (true float32, so the
meta-gradients can be compared), steps are timed between ``torch.cuda.synchronize()`` calls,
"peak MB" is the most bytes of tensors at once (``torch.cuda.max_memory_allocated``, what the
verdict uses), and "reserved MB" the most the allocator held (``max_memory_reserved``: its cache
too, and a CUDA graph's private pool, which stays reserved between replays). The "+graph"
paths (our meta-step recorded once as a CUDA graph and replayed) run there only. They are
handed the batch on the host, as a training run does (``MAML.host_batches``): each step copies
it into the graph's inputs, and that copy is timed, while every other path is handed the batch
already on the GPU. A path that fails is listed with its error, and its traceback goes to
stderr.

Usage:
    .venv/bin/python benchmarks/maml_speed.py [--repeats 3] [--settings 5way 20way] [--record]
    python benchmarks/maml_speed.py --device cuda --repeats 10 --settings 5way \
        --paths "ours: vmap" "ours: loop+graph" "ours: loop+graph bf16" higher torchopt

Writes ``benchmarks/maml_speed.json``; ``--record`` writes each setting's table into
benchmarks/RESULTS.md in place of the last run of that setting on that device (the one it
replaces goes to benchmarks/history/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from machine import commit  # benchmarks/machine.py
from machine import record as record_section
from metalearner.nn.backbones import build_model
from metalearner.runs.devices import retain_freed_memory
from metalearner.strategies import build
from metalearner.tasks import TaskBatch
from tensor_memory import tensor_peak  # benchmarks/tensor_memory.py

HERE = Path(__file__).resolve().parent
SETTINGS = {  # ways, shots, queries, meta-batch, inner steps, inner lr
    "5way": (5, 1, 15, 32, 1, 0.4),
    "20way": (20, 1, 15, 16, 5, 0.1),
}
OURS = {  # path -> MAML config overrides
    "ours: loop": {"batching": "loop"},
    "ours: vmap": {"batching": "vmap"},
    "ours: compiled": {"batching": "compiled"},
    "ours: loop bf16": {"batching": "loop", "precision": "bfloat16"},
    "ours: compiled bf16": {"batching": "compiled", "precision": "bfloat16"},
    "ours: vmap bf16": {"batching": "vmap", "precision": "bfloat16"},
    # CUDA only: the meta-step recorded once as a CUDA graph and replayed
    "ours: loop+graph": {"batching": "loop", "cuda_graph": True},
    "ours: loop+graph bf16": {"batching": "loop", "cuda_graph": True, "precision": "bfloat16"},
    "ours: vmap+graph": {"batching": "vmap", "cuda_graph": True},
    "ours: compiled+graph": {"batching": "compiled", "cuda_graph": True},
}
CUDA_ONLY = tuple(p for p, overrides in OURS.items() if overrides.get("cuda_graph"))
LIBRARIES = ("higher", "torchopt", "learn2learn")
REFERENCE, REFERENCE64 = "ours: loop", "ours: loop float64"
F64 = ".f64"  # suffix of the file with a path's meta-gradient computed in float64
MAX_ERROR = 1e-4  # float32 meta-gradient against our float32 loop
# The same comparison with every path run in float64: rounding amplified as much as float32's
# (~1e7 at 20-way, five steps) still stays far below this, a different function far above.
MAX_ERROR_F64 = 1e-8
GOALS = {"cpu": (1.2, 1.5), "cuda": (3.0, 3.0)}  # speed-up targets: float32, bfloat16


def make_batch(setting: str, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """The same random uint8-valued images and labels in every worker (seeded)."""
    n, k, q, t, _, _ = SETTINGS[setting]
    g = torch.Generator().manual_seed(1)
    sx = torch.randint(0, 256, (t, n * k, 1, 28, 28), generator=g).to(dtype) / 255
    qx = torch.randint(0, 256, (t, n * q, 1, 28, 28), generator=g).to(dtype) / 255
    sy = torch.arange(n).repeat_interleave(k).expand(t, -1).contiguous()
    qy = torch.arange(n).repeat_interleave(q).expand(t, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy)


def library_step(
    lib: str, setting: str, params: dict[str, Tensor], batch: TaskBatch, device: torch.device
) -> Callable:
    """One meta-gradient computation written as the library's docs and examples show."""
    n, _, _, tasks, steps, lr = SETTINGS[setting]
    layers: list[nn.Module] = []
    for c_in in (1, 64, 64, 64):
        layers += [nn.Conv2d(c_in, 64, 3, padding=1), nn.BatchNorm2d(64, track_running_stats=False)]
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    dtype = next(iter(params.values())).dtype
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, n)).to(device, dtype)
    with torch.no_grad():  # our parameter order: conv w, b, norm w, b per block, then the head
        for mine, theirs in zip(params.values(), net.parameters(), strict=True):
            theirs.copy_(mine)
    sx, sy, qx, qy = batch.support_x, batch.support_y, batch.query_x, batch.query_y

    if lib == "higher":
        import higher

        inner_opt = torch.optim.SGD(net.parameters(), lr=lr)

        def step() -> None:
            net.zero_grad()
            for t in range(tasks):
                with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False) as (
                    fnet,
                    diffopt,
                ):
                    for _ in range(steps):
                        diffopt.step(F.cross_entropy(fnet(sx[t]), sy[t]))
                    (F.cross_entropy(fnet(qx[t]), qy[t]) / tasks).backward()

    elif lib == "torchopt":
        import torchopt

        meta_sgd = torchopt.MetaSGD(net, lr=lr)
        net_state = torchopt.extract_state_dict(net, by="reference", detach_buffers=True)
        opt_state = torchopt.extract_state_dict(meta_sgd, by="reference")

        def step() -> None:
            net.zero_grad()
            for t in range(tasks):
                for _ in range(steps):
                    meta_sgd.step(F.cross_entropy(net(sx[t]), sy[t]))
                (F.cross_entropy(net(qx[t]), qy[t]) / tasks).backward()
                torchopt.recover_state_dict(net, net_state)
                torchopt.recover_state_dict(meta_sgd, opt_state)

    else:
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(net, lr=lr, first_order=False)

        def step() -> None:
            maml.zero_grad()
            for t in range(tasks):
                learner = maml.clone()
                for _ in range(steps):
                    learner.adapt(F.cross_entropy(learner(sx[t]), sy[t]))
                (F.cross_entropy(learner(qx[t]), qy[t]) / tasks).backward()

    def grads() -> Tensor:
        step()
        return torch.cat([p.grad.detach().flatten() for p in net.parameters()])  # type: ignore[union-attr]

    step.grads = grads  # type: ignore[attr-defined]
    return step


def build_path(
    path: str, setting: str, device: torch.device, dtype: torch.dtype
) -> tuple[Callable[[], object], Callable[[], Tensor]]:
    """One path's meta-step and its flat meta-gradient, in ``dtype``, from the shared weights."""
    n, *_, steps, lr = SETTINGS[setting]
    net32 = build_model("conv4", (1, 28, 28), n, generator=0)  # same weights in every worker
    params = {k: v.to(device, dtype) for k, v in build("maml", net32).init_params(0).items()}
    batch = make_batch(setting, dtype)
    if not path.startswith("ours"):
        step = library_step(path, setting, params, batch.to(device), device)
        return step, step.grads  # type: ignore[attr-defined]
    net = build_model("conv4", (1, 28, 28), n, generator=0, dtype=dtype)
    overrides = OURS.get(path.replace(" float64", ""), {})
    maml = build("maml", net, {"inner_lr": lr, "inner_steps": steps, **overrides})
    if not maml.host_batches:  # else the batch stays on the host, as a run hands it over
        batch = batch.to(device)

    def run() -> Tensor:
        grads, _ = maml.meta_grads(params, batch)
        return torch.cat([g.flatten() for g in grads.values()])

    return run, run


def worker(path: str, setting: str, grad_file: str, device_name: str, allocator: str) -> None:
    """Builds one path, warms it up, saves its meta-gradient, then steps on request (stdin).

    After the timed steps and the peak-memory reading, a float32 path is built once more in
    float64 and its meta-gradient saved beside the first: where float32 rounding is amplified
    (20-way, five inner steps: every float32 path is ~0.2 from float64), equality in float64
    is what shows that two paths compute the same function.
    """
    device = torch.device(device_name)
    if device.type == "cpu" and allocator == "retained":
        retain_freed_memory()
    if device.type == "cuda":  # true float32 on every path, so meta-gradients compare
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtype = torch.float64 if path == REFERENCE64 else torch.float32
    base_rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = time.perf_counter()
    try:
        step, flat = build_path(path, setting, device, dtype)
        first_grad = flat()  # also the warm-up (compiles, records a CUDA graph)
    except ImportError as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return
    except Exception as e:  # a library that imports but cannot run here, a path that fails
        traceback.print_exc()  # the whole story on stderr, one line in the table
        print(json.dumps({"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}), flush=True)
        return
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    torch.save(first_grad.detach().double().cpu(), grad_file)
    del first_grad  # not held during the memory readings
    first = time.perf_counter() - start
    if path != REFERENCE64:
        step()  # a second warm-up step
    ready = {"first_s": first, "threads": torch.get_num_threads(), "base_rss_mb": base_rss / 2**20}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        sync()
        t = time.perf_counter()
        step()
        sync()
        print(json.dumps({"s": time.perf_counter() - t}), flush=True)
    done: dict = {}
    if device.type == "cuda":
        done["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        # What the allocator held: with the cache and a CUDA graph's private pool, which stays
        # reserved between replays.
        done["reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    else:
        done["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    if device.type == "cpu" and path != REFERENCE64:  # after the RSS: the profiler's not counted
        done["tensor_mb"] = tensor_peak(step) / 2**20
    if path != REFERENCE64 and "bf16" not in path:  # bfloat16 autocast has no float64 form
        try:
            _, flat64 = build_path(path, setting, device, torch.float64)
            torch.save(flat64().detach().cpu(), grad_file + F64)
        except Exception as e:
            done["float64_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    print(json.dumps(done), flush=True)


class Worker:
    def __init__(
        self, path: str, setting: str, grad_file: Path, device: str, allocator: str
    ) -> None:
        self.path, self.grad_file = path, grad_file
        cmd = [sys.executable, __file__, "--worker", path, "--setting", setting]
        cmd += ["--grad-file", str(grad_file), "--device", device, "--allocator", allocator]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.read()  # waits for the warm-up: workers start one at a time
        self.times: list[float] = []

    def read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"error": f"worker exited ({self.proc.wait()})"}

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def finish(self) -> None:
        if "error" not in self.info:
            self.info.update(self.ask("quit"))
        self.proc.wait()


def rel_error(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def run_setting(
    setting: str, paths: list[str], repeats: int, tmp: Path, device: str, allocator: str
) -> dict:
    workers = {
        p: Worker(p, setting, tmp / f"{setting}-{i}.pt", device, allocator)
        for i, p in enumerate(paths)
    }
    live = [w for p, w in workers.items() if "error" not in w.info and p != REFERENCE64]
    for _ in range(repeats):  # alternate the paths, round after round
        for w in live:
            w.times.append(w.ask("step")["s"])
    for w in workers.values():
        w.finish()
    ref = torch.load(workers[REFERENCE].grad_file)
    ref64 = torch.load(workers[REFERENCE64].grad_file)
    rows = {}
    for p, w in workers.items():
        row: dict = {"error": w.info["error"]} if "error" in w.info else dict(w.info)
        if w.times:
            grad = torch.load(w.grad_file)
            row.update(times=w.times, min_s=min(w.times), median_s=statistics.median(w.times))
            row.update(err_vs_loop=rel_error(grad, ref), err_vs_float64=rel_error(grad, ref64))
            in64 = Path(str(w.grad_file) + F64)
            if in64.exists():
                row["err_in_float64"] = rel_error(torch.load(in64), ref64)
                in64.unlink()
        elif p == REFERENCE64 and "error" not in row:
            row.update(err_vs_loop=rel_error(ref64, ref), err_vs_float64=0.0)
        rows[p] = row
        w.grad_file.unlink(missing_ok=True)
    libs = [rows[p]["min_s"] for p in LIBRARIES if "min_s" in rows.get(p, {})]
    fastest = min(libs) if libs else float("nan")
    for row in rows.values():
        if "min_s" in row:
            row["speedup_vs_fastest_library"] = fastest / row["min_s"]
    out = {"setting": SETTINGS[setting], "rows": rows, "fastest_library_s": fastest}
    return out | {"device": device}


def same_gradient(row: dict) -> bool:
    """The path's meta-gradient equals our loop's: in float32, or else in float64."""
    return row["err_vs_loop"] < MAX_ERROR or row.get("err_in_float64", 1.0) < MAX_ERROR_F64


def targets(result: dict) -> list[str]:
    rows = result["rows"]
    float32 = [p for p, row in rows.items() if "min_s" in row and "bf16" not in p]
    differing = [p for p in float32 if not same_gradient(rows[p])]
    out = [
        f"same meta-gradient (float32 < {MAX_ERROR:g}, or float64 < {MAX_ERROR_F64:g}): "
        + (f"NOT for {', '.join(differing)}" if differing else "all float32 paths")
    ]
    # The device's tensor memory decides (torch.cuda.max_memory_allocated on a GPU, the
    # profiler's count on a CPU); whole-process RSS is printed beside it (see tensor_memory.py).
    key = "tensor_mb" if torch.device(result["device"]).type == "cpu" else "peak_mb"
    what = "tensor peak" if key == "tensor_mb" else "peak"
    lib_peak = min((rows[p][key] for p in LIBRARIES if key in rows.get(p, {})), default=0)
    goal32, goal16 = GOALS[torch.device(result["device"]).type]
    for label, bf16, goal in (("float32", False, goal32), ("bfloat16", True, goal16)):
        ours = [
            (row["speedup_vs_fastest_library"], p)
            for p, row in rows.items()
            if p in OURS
            and ("bf16" in p) == bf16
            and "min_s" in row
            and key in row
            and (bf16 or same_gradient(row))
        ]
        if not ours:
            out.append(f"{label}: no path measured")
            continue
        best, p = max(ours)
        verdict = "met" if best >= goal else "NOT met"
        mem = rows[p][key]
        line = (
            f"{label}: best {p!r} {best:.2f}x the fastest library (target >= {goal}x): {verdict}; "
            f"its {what} {mem:.1f} MB vs the leanest library's {lib_peak:.1f} MB"
        )
        if mem > lib_peak:  # the issue asks for both: faster, and no more memory
            lean = [(x, q) for x, q in ours if rows[q][key] <= lib_peak]
            if lean:
                x, q = max(lean)
                verdict = "met" if x >= goal else "NOT met"
                line += f"; within that memory: {q!r} {x:.2f}x ({rows[q][key]:.1f} MB): {verdict}"
            else:
                line += "; no path of ours stays within that memory"
        out.append(line)
    return out


def table(name: str, result: dict) -> str:
    n, k, q, t, steps, lr = result["setting"]
    head = f"{name}: {n}-way {k}-shot {q}-query, meta-batch {t}, {steps} inner step(s), lr {lr}"
    cpu = torch.device(result["device"]).type == "cpu"
    # Beside "peak MB": on a CPU the tensors (tensor_memory.py), on a GPU what was reserved.
    key, label = ("tensor_mb", "tensors MB") if cpu else ("reserved_mb", "reserved MB")
    lines = [head, "", f"{'path':22s} {'min s':>7s} {'median s':>9s} {'vs fastest lib':>15s}"
             f" {'peak MB':>8s} {label:>11s} {'first s':>8s} {'err vs loop':>12s}"
             f" {'err vs f64':>11s} {'in f64':>8s}", "-" * 120]  # fmt: skip
    for p, row in result["rows"].items():
        mem = f" {row[key]:11.1f}" if key in row else f" {'-':>11s}"
        if "error" in row:
            lines.append(f"{p:22s} unavailable: {row['error']}")
        elif "min_s" not in row:
            lines.append(f"{p:22s} {'-':>7s} {'-':>9s} {'-':>15s} {'-':>8s}{mem}"
                         f" {row['first_s']:8.1f} {row['err_vs_loop']:12.1e}"
                         f" {0:11.1e}")  # fmt: skip
        else:
            lines.append(f"{p:22s} {row['min_s']:7.3f} {row['median_s']:9.3f}"
                         f" {row['speedup_vs_fastest_library']:14.2f}x {row['peak_mb']:8.0f}{mem}"
                         f" {row['first_s']:8.1f} {row['err_vs_loop']:12.1e}"
                         f" {row['err_vs_float64']:11.1e}"
                         f" {row.get('err_in_float64', float('nan')):8.1e}")  # fmt: skip
    return "\n".join([*lines, "", *targets(result)])


def machine(device: str = "cpu") -> str:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln)
        flags = " (AVX512-BF16)" if "avx512_bf16" in info else ""
    except (OSError, StopIteration):
        pass
    gpu = f"{torch.cuda.get_device_name(0)} with " if device.startswith("cuda") else ""
    return f"{gpu}{os.cpu_count()}-core {cpu}{flags}, torch {torch.__version__}"


def record(text: str, setting: str, command: str, device: str, allocator: str) -> None:
    """One setting's table in RESULTS.md, in place of the last run of that setting and device."""
    where = "a GPU" if device.startswith("cuda") else "a CPU"
    memory = {"retained": "freed memory kept for reuse", "default": "glibc's default"}[allocator]
    on_cpu = device == "cpu"
    other = ", glibc's default allocator" if on_cpu and allocator == "default" else ""
    record_section(
        f"Second-order MAML speed on {where}, {setting}{other} (benchmarks/maml_speed.py)",
        command,
        f"```\n{text}\n```",
        machine=machine(device),
        details=[f"Allocator (every path): {memory}"] if on_cpu else [],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--paths", nargs="+", help="default: every path the device runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--allocator",
        choices=("retained", "default"),
        default="retained",
        help="CPU: every path keeps freed memory for reuse (retained) or uses glibc's default",
    )
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--grad-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.setting, args.grad_file, args.device, args.allocator)
        return
    cuda = args.device.startswith("cuda")
    chosen = args.paths or [p for p in [*OURS, *LIBRARIES] if cuda or p not in CUDA_ONLY]
    paths = [REFERENCE, *[p for p in chosen if p != REFERENCE], REFERENCE64]
    tmp = HERE / ".maml_speed_tmp"
    tmp.mkdir(exist_ok=True)
    results, texts = {}, []
    for setting in args.settings:
        results[setting] = run_setting(
            setting, paths, args.repeats, tmp, args.device, args.allocator
        )
        texts.append(table(setting, results[setting]))
        print(texts[-1] + "\n", flush=True)
    tmp.rmdir()
    meta = {"machine": machine(args.device), "repeats": args.repeats, "allocator": args.allocator}
    meta |= {"date": str(datetime.date.today()), "commit": commit()}
    (HERE / "maml_speed.json").write_text(json.dumps({**meta, **results}, indent=1) + "\n")
    if args.record:
        python = ".venv/bin/python" if args.device == "cpu" else "python"
        command = f"{python} {shlex.join(sys.argv)}"
        for setting, text in zip(args.settings, texts, strict=True):
            record(text, setting, command, args.device, args.allocator)


if __name__ == "__main__":
    main()
