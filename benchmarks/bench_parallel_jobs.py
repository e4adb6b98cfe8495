"""Benchmark: λ × seed runs in parallel processes, with and without sharing the cores.

Without a limit every worker process starts one BLAS / OpenMP / torch thread per core, so
``--jobs 2`` on 2 cores runs 4 busy threads that spin-wait on each other. genloop limits each
worker to cores // jobs threads. This runs the same small flow experiment (two moons, λ ∈ {0,
inf}, 2 generations) both ways, one after the other in one process, and prints the ratio.

    .venv/bin/python benchmarks/bench_parallel_jobs.py [--jobs 2] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from genloop.config import parse_config
from genloop.sweep import run_experiment


def config(samples: int) -> dict:
    return {
        "data": {"name": "two_moons", "n": 2000, "noise": 0.05},
        "model": {"name": "flow", "transforms": 4, "hidden_features": [32, 32],
                  "train": {"samples": samples, "finetune_samples": samples // 5, "batch_size": 512, "lr": 0.002}},
        "loop": {"generations": 2, "lambdas": [0, "inf"], "seeds": [0]},
        "metrics": [],
    }


def timed(cfg: dict, jobs: int, threads_per_job: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_experiment(parse_config(cfg), tmp, jobs=jobs, threads_per_job=threads_per_job)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a smaller training budget")
    args = ap.parse_args()
    cfg = config(60_000 if args.quick else 200_000)
    limited = timed(cfg, args.jobs, None)
    unlimited = timed(cfg, args.jobs, 0)
    print(f"jobs={args.jobs}: cores shared (default) {limited:.1f} s, no thread limit {unlimited:.1f} s, "
          f"speed-up {unlimited / limited:.2f}x")


if __name__ == "__main__":
    main()
