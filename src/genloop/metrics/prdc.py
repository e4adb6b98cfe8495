"""k-NN precision, recall, density, coverage and the kernel inception distance, on features.

**Precision / recall** (Kynkäänniemi et al. 2019, Eq. 1–2): the real manifold is the union of
balls ``B(r_i, NND_k(r_i))`` around real features, ``NND_k`` being the distance to the k-th
nearest other real feature; precision is the fraction of generated features inside it, recall
the fraction of real features inside the generated manifold (balls around generated features).
**Density / coverage** (Naeem et al. 2020, Eq. 3–4): density = ``1/(kM) sum_j sum_i
1[f_j in B(r_i, NND_k(r_i))]``; coverage = fraction of real ``r_i`` whose ball contains at
least one generated feature. The paper uses k = 3 (DESIGN.md §2.3).

Ball membership is tested with ``<=`` (a point exactly on the sphere counts as inside, as in
Kynkäänniemi et al.'s definition; the ``prdc`` package uses ``<``, which differs only on exact
ties). ``NND_k`` is the (k+1)-th smallest distance in a row that includes the point itself, as
in the ``prdc`` package, so duplicates of a point count as neighbours.

Distances are computed as one GEMM per block (``||a||^2 + ||b||^2 - 2 a.b``) on blocks of ``batch_size`` rows followed by
``topk`` / comparisons, so memory is ``O(batch_size * N)``, never ``N x N``: the k-NN radii use
only the blocks on and above the diagonal of the symmetric within-set distance matrix, and one
pass over the generated-vs-real blocks yields all four numbers. Runs on CPU or GPU.

**KID** (Bińkowski et al. 2018): unbiased squared MMD with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (as torch-fidelity does).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from genloop.errors import ConfigError, DataError
from genloop.metrics._arrays import resolve_device

DType = Literal["float32", "float64"]


def _to_tensor(X: np.ndarray | torch.Tensor, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
    if t.ndim != 2:
        raise DataError(f"{name} features must be a 2-D array (n, dim), got shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} features contain NaN or infinite values")
    return t


def _sq_dists(A: torch.Tensor, sqA: torch.Tensor, B: torch.Tensor, sqB: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``||a||^2 + ||b||^2 - 2 a.b`` of two row blocks (one GEMM), >= 0."""
    D = A @ B.T
    D.mul_(-2.0).add_(sqA[:, None]).add_(sqB[None, :]).clamp_(min=0.0)
    return D


def _kth_nn_sq(X: torch.Tensor, sq: torch.Tensor | None, k: int, batch_size: int) -> torch.Tensor:
    n = X.shape[0]
    if n <= k:
        raise DataError(f"k-NN radii with k={k} need more than {k} samples, got {n}")
    if sq is None:
        sq = (X * X).sum(dim=1)
    kk = k + 1
    best = torch.full((n, kk), float("inf"), dtype=X.dtype, device=X.device)
    for i0 in range(0, n, batch_size):
        i1 = min(i0 + batch_size, n)
        for j0 in range(i0, n, batch_size):
            j1 = min(j0 + batch_size, n)
            D = _sq_dists(X[i0:i1], sq[i0:i1], X[j0:j1], sq[j0:j1])
            if j0 == i0:
                D.fill_diagonal_(0.0)  # exact self-distance (the GEMM form leaves round-off)
            m = min(kk, D.shape[1])
            rows = D.topk(m, dim=1, largest=False).values
            best[i0:i1] = torch.cat([best[i0:i1], rows], 1).topk(kk, dim=1, largest=False).values
            if j0 != i0:
                cols = D.topk(min(kk, D.shape[0]), dim=0, largest=False).values.T
                best[j0:j1] = torch.cat([best[j0:j1], cols], 1).topk(kk, dim=1, largest=False).values
    return best[:, k]


def kth_nn_sq_distances(X: torch.Tensor, k: int, batch_size: int = 1024) -> torch.Tensor:
    """Squared distance from each row of ``X`` to its k-th nearest other row, in square blocks.

    The (k+1)-th smallest entry of each row of the squared distance matrix (the row includes the
    point's zero self-distance). The distance matrix is symmetric, so only blocks on and above
    the diagonal are computed (half the work of full rows); each block's k+1 smallest values per
    row and per column update a running ``(n, k+1)`` list. Memory ``O(batch_size^2 + n k)``.
    """
    return _kth_nn_sq(X, None, k, batch_size)


def kth_nn_distances(X: torch.Tensor, k: int, batch_size: int = 1024) -> torch.Tensor:
    """Distance from each row of ``X`` to its k-th nearest other row (``NND_k``); see :func:`kth_nn_sq_distances`."""
    return kth_nn_sq_distances(X, k, batch_size).sqrt()


def prdc(
    generated: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    *,
    k: int = 3,
    batch_size: int = 1024,
    device: str = "auto",
    dtype: DType = "float32",
    real_sq_radii: torch.Tensor | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``generated`` w.r.t. ``real`` features.

    ``real_sq_radii`` (the real squared k-NN radii from :func:`kth_nn_sq_distances`, same
    ``k``, device and ``dtype``) may be passed to reuse them across calls; results are
    identical. ``dtype`` is the precision of the distance computation. Distances are compared
    squared (``d^2 <= r^2``, the same test as ``d <= r``), one GEMM per block.
    """
    if k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    dev = resolve_device(device)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    with torch.no_grad():
        F_ = _to_tensor(generated, "generated", dev, tdtype)
        R = _to_tensor(real, "real", dev, tdtype)
        if F_.shape[1] != R.shape[1]:
            raise DataError(f"feature dimensions differ: generated {F_.shape[1]}, real {R.shape[1]}")
        sq_real, sq_fake = (R * R).sum(dim=1), (F_ * F_).sum(dim=1)
        if real_sq_radii is None:
            r2_real = _kth_nn_sq(R, sq_real, k, batch_size)
        else:
            if real_sq_radii.shape != (R.shape[0],):
                raise DataError(f"real_sq_radii must have shape ({R.shape[0]},), got {tuple(real_sq_radii.shape)}")
            r2_real = real_sq_radii.to(dev, tdtype)
        r2_fake = _kth_nn_sq(F_, sq_fake, k, batch_size)
        n_real, n_fake = R.shape[0], F_.shape[0]
        precise = 0
        dense = 0
        recalled = torch.zeros(n_real, dtype=torch.bool, device=dev)
        nearest_fake = torch.full((n_real,), float("inf"), dtype=tdtype, device=dev)
        for s in range(0, n_fake, batch_size):
            e = min(s + batch_size, n_fake)
            d2 = _sq_dists(F_[s:e], sq_fake[s:e], R, sq_real)  # (b, n_real)
            inside_real = d2 <= r2_real[None, :]
            precise += int(inside_real.any(dim=1).sum())
            dense += int(inside_real.sum())
            recalled |= (d2 <= r2_fake[s:e, None]).any(dim=0)
            nearest_fake = torch.minimum(nearest_fake, d2.min(dim=0).values)
        coverage = float((nearest_fake <= r2_real).double().mean())
    return {
        "precision": precise / n_fake,
        "recall": float(recalled.double().mean()),
        "density": dense / (k * n_fake),
        "coverage": coverage,
    }


def kid(
    generated: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    rng: np.random.Generator,
    device: str = "auto",
) -> dict[str, float]:
    """Kernel inception distance: mean and std over subsets of the unbiased polynomial MMD².

    For each of ``n_subsets`` draws of ``m = min(subset_size, n_generated, n_real)`` rows per
    side (without replacement, from ``rng``)::

        MMD_u^2 = [sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)] / (m(m-1)) - 2/m^2 sum_{i,j} k(x_i, y_j)

    with ``k(x, y) = (x.y / d + 1)^3`` (Bińkowski et al. 2018, degree 3, gamma = 1/d, coef 1),
    in float64. Returns ``{"kid": mean, "kid_std": std}`` (std with ``ddof=0``, as torch-fidelity).
    """
    if n_subsets < 1 or subset_size < 2:
        raise ConfigError(f"kid needs n_subsets >= 1 and subset_size >= 2, got {n_subsets}, {subset_size}")
    dev = resolve_device(device)
    with torch.no_grad():
        X = _to_tensor(generated, "generated", dev, torch.float64)
        Y = _to_tensor(real, "real", dev, torch.float64)
        if X.shape[1] != Y.shape[1]:
            raise DataError(f"feature dimensions differ: generated {X.shape[1]}, real {Y.shape[1]}")
        d = X.shape[1]
        m = min(subset_size, X.shape[0], Y.shape[0])
        if m < 2:
            raise DataError(f"kid needs at least 2 samples per side, got {X.shape[0]} and {Y.shape[0]}")
        values = np.empty(n_subsets)
        for i in range(n_subsets):
            x = X[torch.as_tensor(rng.choice(X.shape[0], m, replace=False), device=dev)]
            y = Y[torch.as_tensor(rng.choice(Y.shape[0], m, replace=False), device=dev)]
            kxx = (x @ x.T / d + 1.0) ** 3
            kyy = (y @ y.T / d + 1.0) ** 3
            kxy = (x @ y.T / d + 1.0) ** 3
            within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            values[i] = float(within - 2.0 * kxy.sum() / (m * m))
    return {"kid": float(values.mean()), "kid_std": float(values.std())}


__all__ = ["kth_nn_distances", "kth_nn_sq_distances", "prdc", "kid"]
