"""Benchmark: Fréchet distance (genloop) vs the scipy ``sqrtm`` route of pytorch-fid.

The reference is pytorch-fid's ``calculate_frechet_distance``: ``scipy.linalg.sqrtm(S1 @ S2)``,
real part (with its ``eps * I`` retry when the result is not finite), run in this script on the
same statistics. Two cases at d = 2048 (Inception pool3):

* full rank (N = 2.5 d per side): distance from the same float64 statistics — genloop's one
  symmetric eigenproblem of ``L^T S2 L`` vs ``sqrtm``; and end to end from the features
  (genloop: streaming statistics + distance; reference: ``np.cov`` + ``sqrtm``);
* rank-deficient (N = 1000 < d per side): from the features — genloop's cross-Gram route (one
  N x N eigenproblem) vs ``np.cov`` + ``sqrtm``.

Timings are interleaved, best of ``--repeats``, with ``--threads`` BLAS/torch threads.

    python benchmarks/bench_metrics_frechet.py            # d = 2048
    python benchmarks/bench_metrics_frechet.py --quick    # d = 256
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def pytorch_fid_formula(mu1: np.ndarray, S1: np.ndarray, mu2: np.ndarray, S2: np.ndarray, eps: float = 1e-6) -> float:
    import scipy.linalg

    covmean = scipy.linalg.sqrtm(S1 @ S2)
    if not np.isfinite(covmean).all():
        offset = np.eye(S1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((S1 + offset) @ (S2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(S1) + np.trace(S2) - 2.0 * np.trace(covmean))


def features(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    """Correlated, non-negative features like pool3 activations (a random mix, absolute value)."""
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ A + shift).astype(np.float32)


def timed(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    best, value = float("inf"), 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="d = 256, 1 repeat")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    from genloop.metrics.frechet import FeatureStats, frechet_distance_features, frechet_distance_from_moments

    torch.set_num_threads(args.threads)
    d = 256 if args.quick else args.dim
    repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    n = int(2.5 * d)
    X, Y = features(rng, n, d, 0.0), features(rng, n, d, 0.1)
    t_stats, (a, b) = timed(lambda: (FeatureStats.from_features(X, 4096), FeatureStats.from_features(Y, 4096)), 1)
    S1, S2 = a.cov, b.cov
    frechet_distance_from_moments(a.mean, S1, b.mean, S2)  # warm-up: torch loads its LAPACK kernels on first use
    print(f"Fréchet distance, d={d}, {args.threads} threads")
    print(f"{'case':<44}{'genloop [s]':>12}{'sqrtm [s]':>11}{'speed-up':>10}{'rel. diff':>11}")

    def row(label: str, ours: tuple[float, float], ref: tuple[float, float]) -> None:
        rel = abs(ours[1] - ref[1]) / abs(ref[1])
        print(f"{label:<44}{ours[0]:>12.3f}{ref[0]:>11.3f}{ref[0] / ours[0]:>9.1f}x{rel:>11.1e}")

    t_ours = timed(lambda: frechet_distance_from_moments(a.mean, S1, b.mean, S2), repeats)
    t_ref = timed(lambda: pytorch_fid_formula(a.mean, S1, b.mean, S2), repeats)
    row(f"full rank N={n}: from statistics", t_ours, t_ref)
    e_ours = timed(lambda: frechet_distance_features(generated=X, real=Y), repeats)
    e_ref = timed(lambda: pytorch_fid_formula(X.mean(0), np.cov(X.T), Y.mean(0), np.cov(Y.T)), repeats)
    row(f"full rank N={n}: from features", e_ours, e_ref)
    m = min(1000, d // 2)
    Xs, Ys = X[:m], Y[:m]
    r_ours = timed(lambda: frechet_distance_features(generated=Xs, real=Ys), repeats)
    r_ref = timed(lambda: pytorch_fid_formula(Xs.mean(0), np.cov(Xs.T), Ys.mean(0), np.cov(Ys.T)), repeats)
    row(f"rank-deficient N={m} < d: from features", r_ours, r_ref)
    print(f"(statistics of both full-rank sets: {t_stats:.2f} s; targets: >= 10x, relative difference <= 1e-6)")


if __name__ == "__main__":
    main()
