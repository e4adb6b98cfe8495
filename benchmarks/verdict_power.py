"""How many seeds and generations the verdict rule needs to call a known collapse and a known
stable λ, measured on Monte Carlo of the real loop (docs/theory.md, "Verdict power").

The loop: the registered ``gaussian`` model (MLE) on n = 100 draws of N(0, 1), replace scheme,
λ ∈ {0, 0.5, ∞}. Theory: λ = ∞ collapses (E[σ_t²] = (1 − 1/n)^t σ_0², the mean a random walk);
λ = 0.5 contracts at m/(n+m) = 1/3 per generation to a stationary law within a few per cent of
λ = 0. The metric is the exact W₂ distance between the fitted Gaussian and the truth,
W₂² = (μ − 0)² + (σ − 1)², the quantity the ``gaussian_w2`` metric records. For each (seeds k,
generations G) the experiment is repeated ``--reps`` times with disjoint seeds and
:func:`genloop.results.verdicts` is applied; the table gives the fraction of experiments whose
verdict is "collapsing" (λ = ∞) and "stable" (λ = 0.5).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/verdict_power.py --reps 40
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from genloop.loop import run_loop
from genloop.models import make_model
from genloop.results import verdicts


def _w2(model) -> float:  # noqa: ANN001 - a fitted gaussian model
    mu, sd = float(model.mean_[0]), math.sqrt(float(model.covariance_[0, 0]))
    return math.sqrt(mu * mu + (sd - 1.0) ** 2)


def experiment(seeds: list[int], generations: int, n: int = 100) -> dict[float, str]:
    rows = []
    for seed in seeds:
        real = np.random.default_rng(10_000 + seed).standard_normal((n, 1))
        for lam in (0.0, 0.5, math.inf):
            for rec in run_loop(make_model("gaussian"), real, lam=lam, generations=generations, seed=seed):
                rows.append({"cell": "", "lam": lam, "seed": seed, "generation": rec.generation, "metric": "w2",
                             "value": _w2(rec.model)})
    return {v.lam: v.verdict for v in verdicts(pd.DataFrame(rows))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 8, 16])
    parser.add_argument("--generations", type=int, nargs="+", default=[5, 10, 20, 40])
    args = parser.parse_args()
    print("| seeds | generations | λ = ∞ called collapsing | λ = ∞ drifting | λ = 0.5 called stable | λ = 0.5 uncertain |")
    print("|---|---|---|---|---|---|")
    for k in args.seeds:
        for G in args.generations:
            calls = [experiment(list(range(r * k, (r + 1) * k)), G) for r in range(args.reps)]
            frac = {name: sum(c[lam] == name for c in calls) / args.reps
                    for lam, name in ((math.inf, "collapsing"), (0.5, "stable"))}
            drift = sum(c[math.inf] == "drifting" for c in calls) / args.reps
            unc = sum(c[0.5] == "uncertain" for c in calls) / args.reps
            print(f"| {k} | {G} | {frac['collapsing']:.2f} | {drift:.2f} | {frac['stable']:.2f} | {unc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
