"""Fréchet distance between feature distributions (FID when the features are Inception pool3).

Staged as in torch-fidelity: features → :class:`FeatureStats` (streaming mean and covariance in
float64) → :func:`frechet_distance`. The distance is the squared Bures–Wasserstein distance
between Gaussians fitted to the two feature sets (Heusel et al. 2017, Eq. 6; Dowson & Landau
1982)::

    FID = ||mu_1 - mu_2||^2 + tr S_1 + tr S_2 - 2 tr (S_1 S_2)^{1/2}

``tr (S_1 S_2)^{1/2}`` is computed without ``scipy.linalg.sqrtm``
(:func:`genloop.metrics.gaussian.trace_sqrt_product`): ``S_1 S_2`` is similar to the symmetric
PSD matrix ``L^T S_2 L`` (``S_1 = L L^T``, Cholesky), so the trace is the sum of the square roots
of that matrix's eigenvalues, from one symmetric eigensolver in float64; no spurious imaginary
parts. From features with fewer samples than dimensions (rank-deficient covariances),
:func:`frechet_distance_features` uses the cross-Gram route instead: with centred feature
matrices ``A`` (n_1 x d) and ``B`` (n_2 x d), the non-zero eigenvalues of ``S_1 S_2`` are the
squared singular values of ``A B^T / sqrt((n_1-1)(n_2-1))``, so
``tr (S_1 S_2)^{1/2} = ||A B^T||_* / sqrt((n_1-1)(n_2-1))`` from one ``min(n_1, n_2)``-sized
symmetric eigenproblem.

**Bias and noise.** FID is biased upward by a term that shrinks like ``1/N`` in the number of
generated samples (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where
to find them"), so FIDs computed on different ``N`` do not compare and a small ``n_eval`` can
rank models wrongly. :func:`fid_infinity` fits ``FID_N = FID_inf + s / N`` over nested random
subsets and extrapolates to ``N = inf`` (their ``FID_inf``), with the standard error of the
intercept. :func:`split_se` estimates the standard error of the FID itself from random halves of
the generated set (``Var FID_N ~ 1/N``: each half-difference has 4x the variance of the full
estimate).

**Files.** :func:`save_fid_npz` / :func:`load_fid_npz` read and write the ``.npz`` statistics of
pytorch-fid (keys ``mu``, ``sigma``; clean-fid's reference files use the same two keys), with an
extra ``n`` that those readers ignore.

Statistics of the real set are computed once per run and can be cached on disk by a content
hash of the real data plus the feature extractor's id (:class:`StatsCache`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genloop import _json as strict_json
from genloop.errors import DataError
from genloop.metrics._arrays import default_cache_dir
from genloop.metrics.gaussian import trace_sqrt_product

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class FeatureStats:
    """Streaming first and second moments of feature vectors, accumulated in float64.

    Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979): each batch's
    mean and centred scatter matrix are computed in float64 and combined with the running
    values, ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n``, which avoids the cancellation of
    the raw ``sum x x^T - n mu mu^T`` formula. The result is independent of the batch split up
    to float64 round-off.
    """

    dim: int
    n: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    scatter: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.dim)
        if self.scatter is None:
            self.scatter = np.zeros((self.dim, self.dim))

    def update(self, batch: np.ndarray) -> FeatureStats:
        """Add the rows of ``batch`` ``(b, dim)``; returns ``self``."""
        xc = np.array(batch, dtype=np.float64)  # a copy, centred in place below
        if xc.ndim != 2 or xc.shape[1] != self.dim:
            raise DataError(f"feature batch must have shape (b, {self.dim}), got {xc.shape}")
        if not np.all(np.isfinite(xc)):
            raise DataError("features contain NaN or infinite values")
        nb = xc.shape[0]
        if nb == 0:
            return self
        mb = xc.mean(axis=0)
        xc -= mb
        m2b = xc.T @ xc  # numpy runs X^T X as one symmetric rank-k update (syrk)
        n = self.n + nb
        delta = mb - self.mean
        if self.n:
            m2b += np.outer(delta, delta) * (self.n * nb / n)
        self.scatter += m2b
        self.mean += delta * (nb / n)
        self.n = n
        return self

    @classmethod
    def from_features(cls, X: np.ndarray, batch_size: int | None = None) -> FeatureStats:
        """Statistics of the rows of ``X`` (optionally accumulated ``batch_size`` rows at a time)."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise DataError(f"features must be a 2-D array (n, dim), got shape {X.shape}")
        return cls.from_batches(
            (X[i : i + (batch_size or len(X))] for i in range(0, len(X), batch_size or max(len(X), 1))), X.shape[1]
        )

    @classmethod
    def from_batches(cls, batches: Iterable[np.ndarray], dim: int) -> FeatureStats:
        """Statistics accumulated over an iterable of ``(b, dim)`` batches."""
        stats = cls(dim)
        for b in batches:
            stats.update(b)
        return stats

    @property
    def cov(self) -> np.ndarray:
        """Unbiased sample covariance ``scatter / (n - 1)``."""
        if self.n < 2:
            raise DataError(f"a covariance needs at least 2 samples, got {self.n}")
        return self.scatter / (self.n - 1)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], meta: dict[str, object] | None = None) -> None:
        """Write to ``path`` (``.safetensors``, float64) plus ``path.json`` metadata, atomically."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from genloop._fs import atomic_write_text, atomic_write_with

        arrays = {"mean": self.mean, "scatter": self.scatter, "n": np.array([self.n], dtype=np.int64)}
        atomic_write_with(path, lambda tmp: save_file(arrays, str(tmp)))
        info = {"dim": self.dim, "n": self.n, **(meta or {})}
        atomic_write_text(path.with_name(path.name + ".json"), strict_json.dumps(info, indent=1, default=str))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        """Read statistics written by :meth:`save`."""
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        mean = arrays["mean"]
        return cls(dim=mean.shape[0], n=int(arrays["n"][0]), mean=mean, scatter=arrays["scatter"])


class StatsCache:
    """Folder of :class:`FeatureStats` keyed by strings (content hash of data + extractor id).

    Default folder: ``<cache>/stats`` (``$GENLOOP_CACHE_DIR`` or ``~/.cache/genloop``). Writes
    are atomic (temporary file + rename), so concurrent runs may share the folder. The folder is
    kept under ``max_bytes`` (default 1 GiB, ~32 real sets of 2048-d features): after each
    :meth:`put`, the least recently used entries (modification time, refreshed by :meth:`get`)
    are deleted until it fits.
    """

    DEFAULT_MAX_BYTES = 1 << 30

    def __init__(self, folder: str | os.PathLike[str] | None = None, *, max_bytes: int | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir() / "stats"
        self.max_bytes = self.DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def get(self, key: str) -> FeatureStats | None:
        """The cached statistics under ``key``, or None."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            stats = FeatureStats.load(p)
        except Exception as exc:  # noqa: BLE001 - a corrupt cache entry is recomputed
            logger.warning("ignoring unreadable cached statistics %s: %s", p, exc)
            return None
        with contextlib.suppress(OSError):
            os.utime(p)  # most recently used
        return stats

    def put(self, key: str, stats: FeatureStats, meta: dict[str, object] | None = None) -> None:
        """Store ``stats`` under ``key``, then evict least recently used entries over ``max_bytes``."""
        stats.save(self.path(key), meta)
        self.evict(keep=key)

    def entries(self) -> list[tuple[float, int, Path]]:
        """``(last use, bytes, path)`` of every entry, oldest first."""
        out = []
        for p in self.folder.glob("*.safetensors"):
            with contextlib.suppress(OSError):
                st = p.stat()
                side = p.with_name(p.name + ".json")
                out.append((st.st_mtime, st.st_size + (side.stat().st_size if side.exists() else 0), p))
        return sorted(out)

    def evict(self, keep: str | None = None) -> int:
        """Delete least recently used entries until the folder holds at most ``max_bytes``; returns how many."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, p in entries:
            if total <= self.max_bytes:
                break
            if keep is not None and p == self.path(keep):
                continue
            for q in (p, p.with_name(p.name + ".json")):
                with contextlib.suppress(OSError):
                    q.unlink()
            total -= size
            removed += 1
        if removed:
            logger.info("statistics cache %s: evicted %d least recently used entries", self.folder, removed)
        return removed


def frechet_distance_from_moments(mu1: np.ndarray, S1: np.ndarray, mu2: np.ndarray, S2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}`` in float64, clipped at 0."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    S1, S2 = np.asarray(S1, dtype=np.float64), np.asarray(S2, dtype=np.float64)
    if mu1.shape != mu2.shape or S1.shape != S2.shape or S1.shape != (mu1.shape[0], mu1.shape[0]):
        raise DataError(f"incompatible statistics: means {mu1.shape}, {mu2.shape}; covariances {S1.shape}, {S2.shape}")
    diff = mu1 - mu2
    value = float(diff @ diff) + float(np.trace(S1)) + float(np.trace(S2)) - 2.0 * trace_sqrt_product(S1, S2)
    return max(value, 0.0)


def check_rank(stats: FeatureStats, what: str, allow_rank_deficient: bool) -> None:
    """Raise :class:`DataError` when ``stats.n <= stats.dim`` (singular covariance) unless allowed."""
    if stats.n <= stats.dim and not allow_rank_deficient:
        raise DataError(
            f"{what} has {stats.n} samples for {stats.dim}-dimensional features: the covariance is "
            f"rank-deficient (need n > dim) and the Fréchet distance is unreliable; use more samples, "
            f"lower-dimensional features, or pass allow_rank_deficient=True"
        )


def frechet_distance(
    generated: FeatureStats, real: FeatureStats, *, allow_rank_deficient: bool = False
) -> float:
    """Fréchet distance between the Gaussians fitted to two :class:`FeatureStats`.

    Raises :class:`DataError` when either side has ``n <= dim`` unless ``allow_rank_deficient``.
    """
    if generated.dim != real.dim:
        raise DataError(f"feature dimensions differ: generated {generated.dim}, real {real.dim}")
    check_rank(generated, "generated set", allow_rank_deficient)
    check_rank(real, "real set", allow_rank_deficient)
    return frechet_distance_from_moments(generated.mean, generated.cov, real.mean, real.cov)


def _centred(X: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"{name} features must be a 2-D array (n, dim), got shape {X.shape}")
    if X.shape[0] < 2:
        raise DataError(f"{name} features need at least 2 samples, got {X.shape[0]}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{name} features contain NaN or infinite values")
    mu = X.mean(axis=0)
    return mu, X - mu


def frechet_distance_features(*, generated: np.ndarray, real: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted (mean, unbiased covariance) to two feature sets.

    When either set has no more samples than dimensions (rank-deficient covariances), the
    cross-Gram route of the module docstring is used (one eigenproblem of size ``min(n_1, n_2)``);
    otherwise the statistics route (:class:`FeatureStats`, :func:`frechet_distance_from_moments`).
    Both equal ``scipy.linalg.sqrtm``'s value where that is accurate.
    """
    g = np.asarray(generated)
    r = np.asarray(real)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1]:
        raise DataError(f"feature sets must be (n, dim) with one dim, got {g.shape} and {r.shape}")
    if min(g.shape[0], r.shape[0]) > g.shape[1]:
        rows = max(4096, (1 << 25) // g.shape[1])  # float64 batches of <= 256 MiB: fewer, larger GEMMs
        return frechet_distance(FeatureStats.from_features(g, rows), FeatureStats.from_features(r, rows))
    mu1, A = _centred(g, "generated")
    mu2, B = _centred(r, "real")
    n1, n2 = A.shape[0], B.shape[0]
    if n1 > n2:
        A, B = B, A
    C = A @ B.T  # (min n, max n)
    import scipy.linalg

    ev = scipy.linalg.eigvalsh(C @ C.T, check_finite=False, driver="evr")
    nuclear = float(np.sum(np.sqrt(np.clip(ev, 0.0, None))))
    diff = mu1 - mu2
    tr1 = float(np.einsum("ij,ij->", A, A)) / ((A.shape[0]) - 1)
    tr2 = float(np.einsum("ij,ij->", B, B)) / ((B.shape[0]) - 1)
    value = float(diff @ diff) + tr1 + tr2 - 2.0 * nuclear / math.sqrt((n1 - 1) * (n2 - 1))
    return max(value, 0.0)


def _distance_to(stats: FeatureStats, real: FeatureStats) -> float:
    return frechet_distance_from_moments(stats.mean, stats.cov, real.mean, real.cov)


def fid_infinity(
    generated: np.ndarray,
    real: FeatureStats,
    *,
    rng: np.random.Generator,
    n_points: int = 15,
    min_size: int | None = None,
) -> dict[str, float]:
    """``FID_inf`` of Chong & Forsyth (2020): extrapolate ``FID_N`` linearly in ``1/N`` to ``N = inf``.

    ``FID_N`` is computed on ``n_points`` nested random subsets of ``generated`` (one
    permutation from ``rng``; sizes evenly spaced in ``1/N`` from ``min_size`` — default
    ``max(n/5, dim + 2)``, as their 5,000 of 50,000 — to all ``n`` samples) against the full
    real statistics, and an ordinary least-squares line ``FID_N = FID_inf + s / N`` is fitted.
    Returns ``fid_inf`` (the intercept), ``fid_inf_se`` (its OLS standard error) and
    ``fid_inf_slope``. Nested subsets cost one pass of statistics over the data.
    """
    X = np.asarray(generated, dtype=np.float64)
    n, d = X.shape
    lo = min_size if min_size is not None else max(n // 5, d + 2)
    if n_points < 3 or lo < 2 or lo >= n:
        raise DataError(
            f"FID_inf needs >= 3 subset sizes between min_size and n = {n} with min_size > dim = {d} "
            f"(got min_size {lo}, {n_points} points): use more generated samples or lower-dimensional features"
        )
    inv = np.linspace(1.0 / lo, 1.0 / n, n_points)
    sizes = np.unique(np.round(1.0 / inv).astype(int))
    X = X[rng.permutation(n)]
    stats = FeatureStats(d)
    values = []
    start = 0
    for size in sizes:
        stats.update(X[start:size])
        start = size
        values.append(_distance_to(stats, real))
    x = 1.0 / sizes
    y = np.asarray(values)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = max(len(x) - 2, 1)
    cov = np.linalg.inv(design.T @ design) * float(resid @ resid) / dof
    return {"fid_inf": float(coef[0]), "fid_inf_se": float(math.sqrt(max(cov[0, 0], 0.0))), "fid_inf_slope": float(coef[1])}


def split_se(generated: np.ndarray, real: FeatureStats, *, rng: np.random.Generator, n_splits: int = 2) -> float:
    """Standard error of ``FID_N`` (generated-sample noise) from random halves of ``generated``.

    For each of ``n_splits`` random halvings, ``delta = FID(half_1) - FID(half_2)`` has variance
    ``2 Var FID_{N/2} ~ 4 Var FID_N`` (the variance of FID scales as ``1/N``), so
    ``se = sqrt(mean(delta^2) / 4)``. NaN when a half has no more samples than dimensions.
    """
    X = np.asarray(generated, dtype=np.float64)
    n, d = X.shape
    if n // 2 <= d + 1 or n_splits < 1:
        return math.nan
    deltas = []
    for _ in range(n_splits):
        perm = rng.permutation(n)
        a = FeatureStats.from_features(X[perm[: n // 2]], 4096)
        b = FeatureStats.from_features(X[perm[n // 2 : 2 * (n // 2)]], 4096)
        deltas.append(_distance_to(a, real) - _distance_to(b, real))
    return float(math.sqrt(np.mean(np.square(deltas)) / 4.0))


def save_fid_npz(path: str | os.PathLike[str], stats: FeatureStats) -> Path:
    """Write pytorch-fid-compatible statistics: ``mu`` (d,), ``sigma`` (d, d) float64, plus ``n``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"statistics files end in .npz (pytorch-fid's format), got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    from genloop._fs import atomic_write_with

    atomic_write_with(path, lambda tmp: np.savez(tmp, mu=stats.mean, sigma=stats.cov, n=np.array(stats.n, dtype=np.int64)),
                      suffix=".tmp.npz")
    return path


def load_fid_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(mu, sigma, n)`` from a pytorch-fid / clean-fid ``.npz`` (``n`` is None when absent); never unpickles."""
    from genloop.metrics._arrays import load_npz

    arrays = load_npz(path, what=f"statistics file {str(path)!r}")
    return stats_from_arrays(arrays, str(path))


def stats_from_arrays(arrays: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``(mu, sigma, n)`` from the arrays of a statistics ``.npz``, checked: both ``mu`` (d,) and
    ``sigma`` (d, d) present, real numbers, one dimension ``d``; ``n`` a whole number if given."""
    missing = [k for k in ("mu", "sigma") if k not in arrays]
    if missing:
        raise DataError(f"{name!r} is not a statistics file: it needs arrays 'mu' and 'sigma' and has no "
                        f"{' or '.join(repr(k) for k in missing)} (it holds {sorted(arrays)})")
    try:
        mu, sigma = np.asarray(arrays["mu"], dtype=np.float64), np.asarray(arrays["sigma"], dtype=np.float64)
        n = int(arrays["n"]) if "n" in arrays else None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name!r}: mu, sigma and n must be real numbers: {exc}") from None
    if mu.ndim != 1:
        raise DataError(f"{name!r}: mu must be a vector (d,), has shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(f"{name!r}: mu has dimension {mu.shape[0]} but sigma has shape {sigma.shape} "
                        f"(expected ({mu.shape[0]}, {mu.shape[0]}))")
    return mu, sigma, n


def stats_from_moments(mu: np.ndarray, sigma: np.ndarray, n: int | None) -> FeatureStats:
    """:class:`FeatureStats` with the given mean and covariance (``n`` unknown: taken as ``dim + 2``)."""
    d = mu.shape[0]
    m = int(n) if n is not None and n >= 2 else d + 2
    return FeatureStats(dim=d, n=m, mean=mu.copy(), scatter=sigma * (m - 1))


__all__ = [
    "FeatureStats",
    "fid_infinity",
    "frechet_distance_features",
    "load_fid_npz",
    "stats_from_arrays",
    "save_fid_npz",
    "split_se",
    "stats_from_moments",
    "StatsCache",
    "check_rank",
    "frechet_distance",
    "frechet_distance_from_moments",
    "trace_sqrt_product",
]
