"""Benchmark: blocked k-NN precision/recall/density/coverage vs a full-distance-matrix reference.

The reference follows the ``prdc`` package (Naeem et al. 2020): three full distance matrices
from ``sklearn.metrics.pairwise_distances`` (real-real, fake-fake, real-fake), k-th values by
``np.argpartition``; the radius test is ``<=`` in both. genloop's :func:`genloop.metrics.prdc.prdc`
computes one GEMM per row block and never holds an N x N matrix. The large case (default
N = 50,000 per side, 2048-d) runs genloop only, in a child process, and reports its peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the whole process, features
included).

    python benchmarks/bench_metrics_prdc.py                 # N = 10,000 vs reference, then N = 50,000
    python benchmarks/bench_metrics_prdc.py --quick         # N = 2,000 vs reference, then N = 5,000
    python benchmarks/bench_metrics_prdc.py --skip-large    # only the comparison
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def make_features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Features on a 32-dimensional manifold in ``d`` dimensions (like pool3 features), float32."""
    rng = np.random.default_rng(seed)
    A = np.random.default_rng(12345).normal(size=(32, d)).astype(np.float32) / np.sqrt(32)
    z = rng.normal(size=(n, 32)).astype(np.float32) + shift
    return np.abs(z @ A + 0.1 * rng.normal(size=(n, d)).astype(np.float32))


def _kth_value(unsorted: np.ndarray, k: int) -> np.ndarray:
    indices = np.argpartition(unsorted, k, axis=-1)[..., :k]
    return np.take_along_axis(unsorted, indices, axis=-1).max(axis=-1)


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The ``prdc`` package's computation (full matrices), with ``<=`` as genloop."""
    from sklearn.metrics import pairwise_distances

    r_real = _kth_value(pairwise_distances(real, real, metric="euclidean"), k + 1)
    r_fake = _kth_value(pairwise_distances(fake, fake, metric="euclidean"), k + 1)
    d = pairwise_distances(real, fake, metric="euclidean")
    inside = d <= r_real[:, None]
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float((d <= r_fake[None, :]).any(axis=1).mean()),
        "density": int(inside.sum()) / (k * fake.shape[0]),
        "coverage": float((d.min(axis=1) <= r_real).mean()),
    }


def run_large(n: int, d: int, k: int, batch_size: int, dtype: str) -> None:
    """Child process: genloop PRDC at N = n; prints one JSON line with time and peak memory."""
    from genloop.metrics.prdc import prdc

    real, fake = make_features(n, d, 1), make_features(n, d, 2, shift=0.1)
    t = time.perf_counter()
    out = prdc(fake, real, k=k, batch_size=batch_size, dtype=dtype)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps({"n": n, "time_s": elapsed, "peak_rss_gib": peak_gib, **out}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="samples per side for the comparison")
    parser.add_argument("--n-large", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs of each method")
    parser.add_argument("--quick", action="store_true", help="N = 2,000 and N-large = 5,000")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.n_large = 2000, 5000
    if args.large_child:
        run_large(args.n_large, args.dim, args.k, args.batch_size, args.dtype)
        return

    from genloop.metrics.prdc import prdc

    real, fake = make_features(args.n, args.dim, 1), make_features(args.n, args.dim, 2, shift=0.1)

    def best(fn):  # type: ignore[no-untyped-def]
        times, out = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    t_ours, ours = best(lambda: prdc(fake, real, k=args.k, batch_size=args.batch_size, dtype=args.dtype))
    # in the loop the real radii are computed once per run (Metric.prepare): time a generation
    import torch

    from genloop.metrics.prdc import kth_nn_sq_distances

    sq_radii = kth_nn_sq_distances(torch.as_tensor(real, dtype=getattr(torch, args.dtype)), args.k, args.batch_size)
    t_prep, prepared = best(
        lambda: prdc(fake, real, k=args.k, batch_size=args.batch_size, dtype=args.dtype, real_sq_radii=sq_radii)
    )
    assert prepared == ours
    t_ref, ref = best(lambda: reference_prdc(real, fake, args.k))
    print(f"PRDC, N={args.n} per side, d={args.dim}, k={args.k}, genloop dtype {args.dtype}")
    print(f"{'method':<30}{'time [s]':>10}" + "".join(f"{key:>12}" for key in ours))
    print(f"{'genloop (blocked GEMM)':<30}{t_ours:>10.2f}" + "".join(f"{v:>12.6f}" for v in ours.values()))
    print(f"{'genloop, real radii prepared':<30}{t_prep:>10.2f}" + "".join(f"{v:>12.6f}" for v in prepared.values()))
    print(f"{'reference (full matrices)':<30}{t_ref:>10.2f}" + "".join(f"{v:>12.6f}" for v in ref.values()))
    same = all(ours[key] == ref[key] for key in ours)
    diff = max(abs(ours[key] - ref[key]) for key in ours)
    print(
        f"speed-up {t_ref / t_ours:.1f}x cold, {t_ref / t_prep:.1f}x per generation with prepared real radii "
        f"(target >= 5x); identical values: {same} (max |diff| {diff:.2e})"
    )

    if not args.skip_large:
        cmd = [sys.executable, __file__, "--large-child", "--n-large", str(args.n_large), "--dim", str(args.dim),
               "--k", str(args.k), "--batch-size", str(args.batch_size), "--dtype", args.dtype]  # fmt: skip
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(
            f"genloop at N={res['n']} per side, d={args.dim}: {res['time_s']:.1f} s, peak RSS "
            f"{res['peak_rss_gib']:.2f} GiB (target < 8 GiB); precision {res['precision']:.4f} "
            f"recall {res['recall']:.4f} density {res['density']:.4f} coverage {res['coverage']:.4f}"
        )


if __name__ == "__main__":
    main()
