"""Monte Carlo of the real loop against the variant laws ``genloop theory`` prints (docs/theory.md §9).

Per case: a 1-D ``gaussian`` config with a loop variant; the printed row (rate, E[tr Σ_T]/tr S,
sd at T, and the mean / reward where printed) next to the same quantities measured over many
loop seeds of :func:`genloop.run_loop` on the config's real training set (seed 0), with the
standard error of the Monte Carlo mean and z = (measured − printed)/se. The mean-reversion
rate is measured as the regression slope of μ_{t+1} − x̄ on μ_t − x̄ (pooled over seeds and
generations t ≥ 1) where the mean map is a single factor (biased, corrected with the real
target); for a target mean away from x̄ the rate shows in E[μ_T] instead.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/variant_laws_mc.py --seeds 1000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from genloop import run_loop
from genloop.config import parse_config, real_data
from genloop.models import make_model
from genloop.theory import config_theory as theory_cli

CASES: list[tuple[str, dict, float, int, int]] = [
    ("corrected γ=0.5 (real target)", {"kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian"}, 1.0, 20, 5),
    ("corrected γ=0.5 (real target)", {"kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian"}, math.inf, 20, 5),
    ("corrected γ=0.5, target μ*=6", {"kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian",
                                      "target_mean": [6.0], "target_cov": [[0.5]]}, 0.5, 7, 4),
    ("biased T=0.8", {"kind": "biased", "temperature": 0.8}, 1.0, 20, 5),
    ("biased T=1.2, truncation 0.5", {"kind": "biased", "temperature": 1.2, "truncation": 0.5}, 0.5, 20, 5),
    ("biased T=0.9", {"kind": "biased", "temperature": 0.9}, math.inf, 20, 5),
    ("curated softmax K=4 τ=0.5, c=1", {"kind": "curated", "reward": {"name": "quadratic", "center": [1.0]}, "K": 4,
                                        "tau": 0.5}, 1.0, 30, 4),
    ("curated top 30 of 100, c=1", {"kind": "curated", "reward": {"name": "quadratic", "center": [1.0]},
                                    "select": "top", "fraction": 0.3}, 1.0, 30, 4),
    ("mixture last 2, uniform", {"kind": "mixture", "last_k": 2}, 1.0, 20, 6),
    ("mixture all, uniform", {"kind": "mixture"}, math.inf, 20, 5),
]


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x)))


def _cell(measured: np.ndarray, printed: float | None) -> str:
    if printed is None:
        return "- | - | -"
    m, se = float(measured.mean()), _se(measured)
    return f"{printed:.4g} | {m:.4g} ± {se:.2g} | {(m - printed) / se:+.1f}"


def run_case(variant: dict, lam: float, n: int, T: int, seeds: int) -> tuple[dict, dict[str, str], float]:
    doc = {"data": {"name": "gaussian", "n": n, "mean": [0.3], "cov": [[2.0]]}, "model": {"name": "gaussian"},
           "loop": {"generations": T, "lambdas": [lam], "seeds": [0], "variant": variant}, "metrics": ["gaussian_w2"]}
    cfg = parse_config(doc)
    theory_cli._CACHE.clear()
    row = theory_cli.config_theory(cfg).rows[0]
    _, split = real_data(cfg, 0)
    real = np.asarray(split.train, dtype=np.float64)
    start = time.perf_counter()
    mus, vs = np.zeros((seeds, T + 1)), np.zeros((seeds, T + 1))
    for s in range(seeds):
        for rec in run_loop(make_model("gaussian"), real, lam=lam, generations=T, seed=10_000 + s,
                            variant=cfg.loop.variant, n_eval=2):
            mus[s, rec.generation], vs[s, rec.generation] = rec.model.mean_[0], rec.model.covariance_[0, 0]
    seconds = time.perf_counter() - start
    xbar, S = real.mean(), float(np.var(real[:, 0]))
    cells = {"var": _cell(vs[:, -1] / S, row["law_T"]), "sd": _cell((mus[:, -1] - xbar) ** 2, row["sd_T"] ** 2)}
    if "mean_T" in row:
        cells["mean"] = _cell(mus[:, -1], row["mean_T"])
    if "reward_T" in row:
        cells["reward"] = _cell(-0.5 * ((mus[:, -1] - 1.0) ** 2 + vs[:, -1]), row["reward_T"])
    if variant["kind"] in ("biased", "corrected") and "target_mean" not in variant:
        x, y = (mus[:, 1:-1] - xbar).ravel(), (mus[:, 2:] - xbar).ravel()
        slope = float(x @ y / (x @ x))
        se = math.sqrt(float(np.sum((y - slope * x) ** 2)) / (len(x) - 1) / float(x @ x))
        k = row["m"]
        factor = (1.0 if math.isinf(lam) else k / (n + k)) * (1 - variant.get("gamma", 0.0))
        cells["slope"] = f"{factor:.4g} | {slope:.4g} ± {se:.2g} | {(slope - factor) / se:+.1f}"
    return row, cells, seconds


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000)
    args = parser.parse_args()
    print("| case | λ | n | m | T | printed rate | mean factor (law) | loop slope | z | E[tr Σ_T]/tr S printed | loop | z "
          "| (sd at T)² printed | loop | z | E[μ_T] or E[r_T] printed | loop | z | loop s |")
    print("|" + " --- |" * 19)
    for name, variant, lam, n, T in CASES:
        row, cells, seconds = run_case(variant, lam, n, T, args.seeds)
        rate = "-" if row["rate"] is None else f"{row['rate']:.4g}"
        other = cells.get("reward", cells.get("mean", "- | - | -"))
        print(f"| {name} | {'∞' if math.isinf(lam) else f'{lam:g}'} | {n} | {row['m']} | {T} | {rate} | "
              f"{cells.get('slope', '- | - | -')} | {cells['var']} | {cells['sd']} | {other} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
