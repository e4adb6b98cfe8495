"""Benchmark: genloop's k-NN precision/recall/density/coverage vs the ``prdc`` package.

The reference is the ``prdc`` package itself (Naeem et al. 2020, ``compute_prdc(real, fake,
nearest_k)``: three full sklearn distance matrices, ``np.argpartition``, ``<``), run in this
script on the same features; genloop runs with ``boundary="open"`` (the package's ``<``) so the
values must be identical. Both are timed interleaved, best of ``--repeats``, with the same
number of threads (``--threads``; torch, BLAS and the package's joblib all see it); wall and CPU
time are both printed, with the load average (on a shared machine the wall-time ratio moves
with the load: other processes' threads steal time slices from both). The large
case (default N = 50,000 per side, 2048-d) runs genloop only, in a child process, and reports
its peak resident memory (``ru_maxrss``: the whole process, features included).

    python benchmarks/bench_metrics_prdc.py                 # N = 10,000 at d = 64 and 2048, then N = 50,000
    python benchmarks/bench_metrics_prdc.py --quick         # N = 2,000, then N = 5,000
    python benchmarks/bench_metrics_prdc.py --skip-large    # only the comparisons
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
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


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The ``prdc`` package (its progress print silenced)."""
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        out = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {key: float(v) for key, v in out.items()}


def run_large(n: int, d: int, k: int, batch_size: int, dtype: str) -> None:
    """Child process: genloop PRDC at N = n; prints one JSON line with time and peak memory."""
    from genloop.metrics.prdc import prdc

    real, fake = make_features(n, d, 1), make_features(n, d, 2, shift=0.1)
    t = time.perf_counter()
    out = prdc(generated=fake, real=real, k=k, batch_size=batch_size, dtype=dtype)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(json.dumps({"n": n, "time_s": elapsed, "peak_rss_gib": peak_gib, **out}))


def gemm_floor(n: int, d: int, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds that the distance products of one cold P/R/D/C call take at the speed of a
    bfloat16 GEMM measured here (best of 3, one thread, scaled by ``--threads``), and that
    GFLOP/s rate: both k-NN radii passes (blocks on and above the diagonal) plus the
    generated-vs-real pass, 2 d flops per entry."""
    import torch

    b = args.batch_size
    blocks = -(-n // b)
    entries = 2 * (blocks * (blocks + 1) // 2) * b * b + n * n
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        A, B = torch.randn(b, d).bfloat16(), torch.randn(b, d).bfloat16()
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            A @ B.T
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    rate = 2.0 * b * b * d / best
    return entries * 2.0 * d / (rate * args.threads), rate / 1e9


def compare(n: int, d: int, args: argparse.Namespace) -> None:
    import torch

    from genloop.metrics.prdc import kth_nn_sq_distances, prdc, resolve_dtype

    real, fake = make_features(n, d, 1), make_features(n, d, 2, shift=0.1)
    opts = {"k": args.k, "batch_size": args.batch_size, "dtype": args.dtype, "boundary": "open"}
    sq_radii = kth_nn_sq_distances(real, args.k, args.batch_size, dtype=args.dtype)
    t_ours, t_prep, t_ref = [], [], []
    c_ours, c_prep, c_ref = [], [], []
    ours = prepared = ref = {}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):  # interleaved, so that machine load affects all alike
        t, c = time.perf_counter(), time.process_time()
        ours = prdc(generated=fake, real=real, **opts)
        t_ours.append(time.perf_counter() - t)
        c_ours.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        prepared = prdc(generated=fake, real=real, real_sq_radii=sq_radii, **opts)
        t_prep.append(time.perf_counter() - t)
        c_prep.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        ref = reference_prdc(real, fake, args.k)
        t_ref.append(time.perf_counter() - t)
        c_ref.append(time.process_time() - c)
    keys = list(ref)
    print(f"\nPRDC, N={n} per side, d={d}, k={args.k}, {torch.get_num_threads()} threads, first pass {args.dtype} "
          f"({resolve_dtype(args.dtype, torch.device('cpu'))} for the generated-vs-real pass; radii: float32 below d = 768 under auto), "
          f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"{'method':<32}{'wall [s]':>10}{'CPU [s]':>10}" + "".join(f"{key:>12}" for key in keys))
    for label, tt, cc, vals in (("genloop", t_ours, c_ours, ours), ("genloop, real radii prepared", t_prep, c_prep, prepared),
                                ("prdc package", t_ref, c_ref, ref)):  # fmt: skip
        print(f"{label:<32}{min(tt):>10.2f}{min(cc):>10.2f}" + "".join(f"{vals[key]:>12.6f}" for key in keys))
    floor, rate = gemm_floor(n, d, args)
    print(f"the distance products alone (bfloat16 GEMMs at the measured {rate:.0f} GFLOP/s per thread, "
          f"{args.threads} threads): {floor:.2f} s, i.e. at most {min(t_ref) / floor:.1f}x the package with exact decisions")  # fmt: skip
    same = all(ours[key] == ref[key] for key in keys) and all(prepared[key] == ref[key] for key in keys)
    print(f"speed-up (wall) {min(t_ref) / min(t_ours):.1f}x cold, {min(t_ref) / min(t_prep):.1f}x per generation with "
          f"prepared real radii (target >= 10x); CPU time {min(c_ref) / min(c_ours):.1f}x cold; identical values: {same}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="samples per side for the comparison")
    parser.add_argument("--n-large", type=int, default=50_000)
    parser.add_argument("--dims", type=str, default="64,2048", help="feature dimensions of the comparisons")
    parser.add_argument("--large-dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--dtype", choices=["auto", "bfloat16", "float32", "float64"], default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many interleaved runs of each method")
    parser.add_argument("--quick", action="store_true", help="N = 2,000 and N-large = 5,000, one repeat")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.n_large, args.repeats = 2000, 5000, 1
    if args.large_child:
        run_large(args.n_large, args.large_dim, args.k, args.batch_size, args.dtype)
        return
    for d in (int(x) for x in args.dims.split(",")):
        compare(args.n, d, args)
    if not args.skip_large:
        cmd = [sys.executable, __file__, "--large-child", "--n-large", str(args.n_large), "--large-dim",
               str(args.large_dim), "--k", str(args.k), "--batch-size", str(args.batch_size), "--dtype", args.dtype,
               "--threads", str(args.threads)]  # fmt: skip
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(
            f"\ngenloop at N={res['n']} per side, d={args.large_dim}, {args.threads} threads: {res['time_s']:.1f} s "
            f"(target <= 60 s), peak RSS {res['peak_rss_gib']:.2f} GiB (target <= 8 GiB); precision "
            f"{res['precision']:.4f} recall {res['recall']:.4f} density {res['density']:.4f} coverage {res['coverage']:.4f}"
        )


if __name__ == "__main__":
    main()
