"""Benchmark: the loop's own overhead, with the cheapest model (a Gaussian, n = 1000).

Runs 100 generations x 20 seeds (λ = 1, replace scheme) twice: through ``run_loop`` in memory,
and through the run store (checkpoint, samples, metrics line and status per generation).
Reports seconds per generation and the fraction of time spent outside model fitting and
sampling (the loop's and the store's overhead).

    .venv/bin/python benchmarks/bench_loop_overhead.py [--generations 100 --seeds 20 --n 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from genloop import make_model, run_loop
from genloop.config import parse_config
from genloop.sweep import run_experiment


def in_memory(n: int, generations: int, seeds: int) -> dict[str, float]:
    tot = {"sample": 0.0, "fit": 0.0, "eval": 0.0, "other": 0.0}
    start = time.perf_counter()
    for seed in range(seeds):
        real = np.random.default_rng(seed).standard_normal((n, 2))
        for rec in run_loop(make_model("gaussian"), real, lam=1.0, generations=generations, seed=seed):
            for k in tot:
                tot[k] += rec.timings[k]
    wall = time.perf_counter() - start
    gens = seeds * (generations + 1)
    return {"seconds/gen": wall / gens, "fit+sample share": (tot["fit"] + tot["sample"]) / wall, "wall": wall}


def with_store(n: int, generations: int, seeds: int) -> dict[str, float]:
    cfg = parse_config({
        "data": {"name": "gaussian", "n": n, "n_heldout": 1, "mean": [0.0, 0.0]},
        "model": {"name": "gaussian"},
        "loop": {"generations": generations, "lambdas": [1], "seeds": list(range(seeds))},
        "output": {"checkpoints": "all", "keep_samples": 0},
    })
    fit_sample = 0.0

    def progress(spec, rec) -> None:  # noqa: ANN001
        nonlocal fit_sample
        fit_sample += rec.timings["fit"] + rec.timings["sample"]

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_experiment(cfg, tmp, progress=progress)
        wall = time.perf_counter() - start
    gens = seeds * (generations + 1)
    return {"seconds/gen": wall / gens, "fit+sample share": fit_sample / wall, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    make_model("gaussian")  # import every registered family before timing (torch import ~1 s)
    print(f"gaussian model, n={args.n}, {args.generations + 1} generations x {args.seeds} seeds, lambda=1")
    print(f"{'mode':<10} {'s/generation':>13} {'fit+sample':>11} {'overhead':>9} {'wall s':>8}")
    for name, fn in (("in-memory", in_memory), ("store", with_store)):
        r = fn(args.n, args.generations, args.seeds)
        print(f"{name:<10} {r['seconds/gen']:>13.2e} {r['fit+sample share']:>10.1%} "
              f"{1 - r['fit+sample share']:>8.1%} {r['wall']:>8.2f}")


if __name__ == "__main__":
    main()
