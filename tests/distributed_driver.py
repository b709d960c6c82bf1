"""Run by tests/test_distributed.py under torchrun: meta-trains and evaluates a list of jobs.

The process group is joined once here (``meta_train`` then uses it and leaves it alone), so
one launch covers every strategy. Usage: ``torchrun --nproc-per-node 2 distributed_driver.py
jobs.json`` with ``[{"overrides": [...], "out": "...", "data_dir": ..., "evaluate": n}, ...]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.config import load_config
from metalearner.training.loop import meta_train


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo")
    for job in jobs:
        data_dir = Path(job["data_dir"]) if job.get("data_dir") else None
        cfg = load_config(overrides=job["overrides"])
        meta_train(cfg, job["out"], quiet=True, data_dir=data_dir)
        if job.get("evaluate"):
            evaluate(job["out"], num_tasks=job["evaluate"], steps=2, data_dir=data_dir)
    dist.barrier()  # rank 0 may still be writing: leave together
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
