"""Sample-based distances between generated and real vectors: W2, sliced W2, MMD, NLL, moments.

All metrics take arrays of shape ``(n, *shape)``; anything beyond the sample axis is flattened,
so images are compared as vectors of length ``C*H*W``. Each metric exists as a pure function
(:func:`wasserstein2`, :func:`mmd2_unbiased`, :func:`moment_drift`) and as a registered
:class:`~genloop.metrics.base.Metric` (``w2``, ``sw2``, ``mmd``, ``nll``, ``moments``) that the
loop calls as ``metric(generated, real, model=..., rng=...)``.

Randomness (subsampling, projections) comes from the ``rng`` passed to the call; with
``rng=None`` a fixed stream (seed 0) is used so a metric value is reproducible.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import ot

from genloop._validation import check_array
from genloop.errors import ConfigError, DataError
from genloop.metrics import register_metric
from genloop.metrics._arrays import as_vectors, check_same_dim, default_rng, subsample
from genloop.metrics.base import Metric

if TYPE_CHECKING:
    from genloop.models.base import GenerativeModel

logger = logging.getLogger(__name__)


def _pair(generated: object, real: object, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    g = as_vectors(generated, name="generated", min_samples=min_samples)
    r = as_vectors(real, name="real", min_samples=min_samples)
    check_same_dim(g, r)
    return g, r


def _check_positive(name: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# ---- exact and sliced Wasserstein-2 -------------------------------------------------------------


def wasserstein2(X: np.ndarray, Y: np.ndarray) -> float:
    """Exact Wasserstein-2 distance between the empirical measures of the rows of ``X`` and ``Y``.

    ``W2 = (min_{P in U(1/n, 1/m)} sum_ij P_ij ||x_i - y_j||^2)^{1/2}``, solved as a linear
    program with POT's network simplex (``ot.emd2``) on the squared Euclidean cost. Cost is
    O(n^3) in time and O(nm) in memory; subsample for large sets (see :class:`W2`).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    a = np.full(X.shape[0], 1.0 / X.shape[0])
    b = np.full(Y.shape[0], 1.0 / Y.shape[0])
    M = ot.dist(X, Y, metric="sqeuclidean")
    cost, log = ot.emd2(a, b, M, numItermax=10_000_000, log=True)
    if log.get("warning"):
        logger.warning("w2: exact OT solver did not converge cleanly: %s", log["warning"])
    return math.sqrt(max(float(cost), 0.0))


@register_metric("w2")
class W2(Metric):
    """Exact Wasserstein-2 distance between the generated and real empirical measures.

    Computed with POT's exact solver (``ot.emd2``, squared Euclidean cost; the square root of
    the optimal cost is returned). The solver is cubic in the number of samples, so each side
    larger than ``max_exact`` is first **subsampled** to ``max_exact`` rows without replacement
    using the call's ``rng``: the value is then an estimate of the W2 between subsamples, which
    is biased upwards relative to the full sets. Use ``sw2`` for large ``n``.
    """

    def __init__(self, max_exact: int = 2000) -> None:
        _check_positive("max_exact", max_exact)
        self.max_exact = max_exact

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model
        g, r = _pair(generated, real)
        gen = default_rng(rng)
        if max(g.shape[0], r.shape[0]) > self.max_exact:
            logger.debug("w2: subsampling to %d samples per side", self.max_exact)
        g = subsample(g, self.max_exact, gen)
        r = subsample(r, self.max_exact, gen)
        return {"w2": wasserstein2(g, r)}


@register_metric("sw2")
class SW2(Metric):
    """Sliced Wasserstein-2 distance (Rabin et al. 2011; Bonneel et al. 2015).

    ``SW2 = (E_theta W2^2(theta#generated, theta#real))^{1/2}`` over directions ``theta``
    uniform on the sphere, estimated with ``n_projections`` random directions drawn from the
    call's ``rng`` (POT's ``ot.sliced_wasserstein_distance``, ``p=2``). Each 1-D problem is
    solved exactly by sorting, so the cost is O(n log n) per direction: suited to large ``n``.
    """

    def __init__(self, n_projections: int = 200) -> None:
        _check_positive("n_projections", n_projections)
        self.n_projections = n_projections

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model
        g, r = _pair(generated, real)
        seed = int(default_rng(rng).integers(0, 2**31 - 1))
        value = ot.sliced_wasserstein_distance(g, r, n_projections=self.n_projections, p=2, seed=seed)
        return {"sw2": float(value)}


# ---- maximum mean discrepancy -------------------------------------------------------------------


def _sq_dists(Z: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", Z, Z)
    D = sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T)
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def median_bandwidth(D: np.ndarray) -> float:
    """Median heuristic: the median Euclidean distance between distinct points.

    ``D`` is the matrix of squared distances of the pooled sample; the median is taken over the
    ``N(N-1)/2`` pairs ``i < j``. Falls back to the mean positive distance when the median is 0
    (many duplicates), and to 1 when all points coincide.
    """
    iu = np.triu_indices(D.shape[0], k=1)
    pairs = D[iu]
    med = float(np.median(pairs))
    if med > 0:
        return math.sqrt(med)
    positive = pairs[pairs > 0]
    return math.sqrt(float(positive.mean())) if positive.size else 1.0


def mmd2_unbiased(X: np.ndarray, Y: np.ndarray, bandwidth: float | None = None) -> tuple[float, float]:
    """Unbiased squared MMD with a Gaussian (RBF) kernel (Gretton et al. 2012, Lemma 6).

    ``k(x, y) = exp(-||x - y||^2 / (2 h^2))`` and ::

        MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(mn) sum_{i, j} k(x_i, y_j)

    The U-statistic can be slightly negative. When ``bandwidth`` is ``None``, ``h`` is the
    median heuristic on the **pooled** sample ``X ∪ Y`` (:func:`median_bandwidth`); a symmetric
    function of the pooled sample keeps the estimator exactly unbiased (zero mean) when both
    samples come from the same distribution. Returns ``(mmd2, h)``. Memory is O((m+n)^2).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    m, n = X.shape[0], Y.shape[0]
    if m < 2 or n < 2:
        raise DataError(f"unbiased MMD needs at least 2 samples per side, got {m} and {n}")
    D = _sq_dists(np.concatenate([X, Y], axis=0))
    h = median_bandwidth(D) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ConfigError(f"MMD bandwidth must be > 0, got {h}")
    K = np.exp(-D / (2.0 * h * h))
    kxx = (K[:m, :m].sum() - m) / (m * (m - 1))  # diagonal k(x, x) = 1 removed
    kyy = (K[m:, m:].sum() - n) / (n * (n - 1))
    kxy = K[:m, m:].mean()
    return float(kxx + kyy - 2.0 * kxy), h


@register_metric("mmd")
class MMD(Metric):
    """Unbiased squared MMD, Gaussian kernel, median-heuristic bandwidth on the pooled sample.

    See :func:`mmd2_unbiased`. Each side larger than ``max_samples`` is subsampled without
    replacement with the call's ``rng`` (memory is quadratic in the pooled size). Keys:
    ``mmd`` (the squared MMD estimate) and ``mmd_bandwidth`` (the kernel width ``h`` used).
    """

    def __init__(self, max_samples: int = 2000) -> None:
        _check_positive("max_samples", max_samples)
        self.max_samples = max_samples

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model
        g, r = _pair(generated, real, min_samples=2)
        gen = default_rng(rng)
        g = subsample(g, self.max_samples, gen)
        r = subsample(r, self.max_samples, gen)
        value, h = mmd2_unbiased(g, r)
        return {"mmd": value, "mmd_bandwidth": h}


# ---- held-out likelihood ------------------------------------------------------------------------


@register_metric("nll")
class NLL(Metric):
    """Mean negative log-likelihood of the **real** held-out samples under the fitted model.

    ``nll = -(1/n) sum_i log p_theta(x_i)`` for the real samples ``x_i`` (nats per sample); the
    generated samples are not used. Needs the model (``requires_model = True``). When no model
    is given, or the model has no exact likelihood (``has_log_prob`` is false), the result is
    ``{"nll": nan}`` and a message is logged (once per metric object at INFO level), so that
    every generation records the same keys whatever the model family.
    """

    requires_model = True

    def __init__(self) -> None:
        self._warned = False

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del generated, rng
        if model is None or not getattr(model, "has_log_prob", False):
            if not self._warned:
                what = "no model was given" if model is None else f"model {model.name!r} has no log_prob"
                logger.info("nll: %s; recording NaN", what)
                self._warned = True
            return {"nll": math.nan}
        X = check_array(real, name="real")
        logp = np.asarray(model.log_prob(X), dtype=np.float64)
        if logp.shape != (X.shape[0],):
            raise DataError(f"model.log_prob returned shape {logp.shape}, expected ({X.shape[0]},)")
        return {"nll": float(-logp.mean())}


# ---- moments ------------------------------------------------------------------------------------


def moment_drift(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """First- and second-moment drift between two samples of vectors.

    * ``mean_drift`` = ``||mu_g - mu_r||_2``
    * ``cov_drift`` = ``||Sigma_g - Sigma_r||_F`` (unbiased sample covariances)
    * ``std_ratio`` = mean over coordinates of ``std_g / std_r`` (unbiased variances), over the
      coordinates where ``std_r > 0`` (constant real coordinates, e.g. blank image borders, are
      skipped; NaN if all are constant). It decays towards 0 under Gaussian collapse
      (Bertrand et al. 2024, §2.2) and is 1 for a faithful model.
    """
    g = np.asarray(generated, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    mg, mr = g.mean(axis=0), r.mean(axis=0)
    gc, rc = g - mg, r - mr
    Sg = gc.T @ gc / (g.shape[0] - 1)
    Sr = rc.T @ rc / (r.shape[0] - 1)
    sg, sr = np.sqrt(np.diag(Sg)), np.sqrt(np.diag(Sr))
    keep = sr > 0
    ratio = float(np.mean(sg[keep] / sr[keep])) if np.any(keep) else math.nan
    return {
        "mean_drift": float(np.linalg.norm(mg - mr)),
        "cov_drift": float(np.linalg.norm(Sg - Sr, ord="fro")),
        "std_ratio": ratio,
    }


@register_metric("moments")
class Moments(Metric):
    """Mean drift, covariance drift and mean standard-deviation ratio (see :func:`moment_drift`)."""

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model, rng
        g, r = _pair(generated, real, min_samples=2)
        return moment_drift(g, r)


__all__ = [
    "wasserstein2",
    "mmd2_unbiased",
    "median_bandwidth",
    "moment_drift",
    "W2",
    "SW2",
    "MMD",
    "NLL",
    "Moments",
]
