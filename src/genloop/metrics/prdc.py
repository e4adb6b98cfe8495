"""k-NN precision, recall, density, coverage and the kernel inception distance, on features.

**Precision / recall** (Kynkäänniemi et al. 2019, Eq. 1–2): the real manifold is the union of
balls ``B(r_i, NND_k(r_i))`` around real features, ``NND_k`` being the distance to the k-th
nearest other real feature; precision is the fraction of generated features inside it, recall
the fraction of real features inside the generated manifold (balls around generated features).
**Density / coverage** (Naeem et al. 2020, Eq. 3–4): density = ``1/(kM) sum_j sum_i
1[f_j in B(r_i, NND_k(r_i))]``; coverage = fraction of real ``r_i`` whose ball contains at
least one generated feature. The paper uses k = 3 (docs/theory.md).

**Boundary convention.** ``boundary="closed"`` (default) counts a point exactly on a sphere as
inside (``d <= r``, the definition of Kynkäänniemi et al. and Naeem et al.);
``boundary="open"`` uses ``d < r``, the convention of the ``prdc`` package, for comparisons
with numbers computed by it (the two differ only on exact ties, e.g. duplicated features).
``NND_k`` is the (k+1)-th smallest distance in a row that includes the point itself, as in the
``prdc`` package, so duplicates of a point count as neighbours.

**Exact decisions, fast arithmetic.** Every membership is decided on the float64 squared
distance computed from the coordinate differences ``sum_l (a_l - b_l)^2`` of the input values
(the "exact" distance below; integer-valued features give exact ties). The bulk of the work
runs in a low working precision (``dtype``: bfloat16 or float32 GEMMs, or float64) on features
centred on the real mean: one GEMM per block, ``||a||^2 + ||b||^2 - 2 a.b``. Centring removes
the cancellation that a large common offset causes in that formula. For every block a rigorous
bound on the rounding error of the working-precision distance,
``|d~^2 - d^2| <= tau (||a|| + ||b||)^2 <= t_a + t_b`` with ``t = 2 tau ||a||^2`` (input rounding,
``gamma_d`` for the dot product in any summation order, output and assembly rounding), splits
the entries into certainly inside, certainly outside, and a thin band that is recomputed
exactly; the k-NN radii are the exact distances of candidates that provably include the k+1
nearest. A block whose band is too wide is redone in the next precision (bfloat16 → float32 →
float64). So the result does not depend on ``dtype``, ``batch_size`` or the device: it equals
the float64 definition, ties included.

Memory is ``O(batch_size * chunk)`` per block, never ``N x N``: the k-NN radii use only the
blocks on and above the diagonal of the symmetric within-set distance matrix, and one pass
over the generated-vs-real blocks yields all four numbers. Runs on CPU or GPU.

**KID** (Bińkowski et al. 2018): unbiased squared MMD with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (as torch-fidelity does).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import numpy as np
import torch

from genloop.errors import ConfigError, DataError
from genloop.metrics._arrays import resolve_device

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DType = Literal["auto", "bfloat16", "float32", "float64"]
Boundary = Literal["closed", "open"]

_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
#: unit round-off of each working precision
_U = {torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24, torch.float64: 2.0**-53}
#: the precisions tried after each one when a block's band of undecided entries is too wide
_LADDER = {"bfloat16": (torch.bfloat16, torch.float32, torch.float64), "float32": (torch.float32, torch.float64),
           "float64": (torch.float64,)}  # fmt: skip
#: real columns per tile of the main pass (tiles of batch_size x 2048 stay in cache)
_TILE_COLUMNS = 2048
#: a tile is redone in the next precision when more than this fraction of its rows and columns
#: hold undecided entries
_MAX_BAND_FRACTION = 0.05


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """The working precision of the first pass for ``dtype`` (``"auto"``: float32).

    bfloat16 GEMMs are ~2.5x faster than float32 on CPUs with bf16 units, but the rigorous
    rounding bound of bf16 inputs (``2 u = 2^-7`` relative) leaves a wide undecided band: on
    realistic features most blocks are then redone in float32, so ``"auto"`` picks float32.
    """
    if dtype == "auto":
        return "float32"
    if dtype not in _TORCH_DTYPES:
        raise ConfigError(
            f"unknown distance dtype {dtype!r}; choose one of 'auto', 'bfloat16', 'float32', 'float64' "
            "(the results are the same for all: they set the speed of the first pass)"
        )
    return dtype


def as_feature_tensor(X: object, name: str, device: torch.device | None = None) -> torch.Tensor:
    """``X`` as a 2-D float32/float64 tensor of features, or a DataError naming the problem.

    Integer and float16 features are converted exactly to float64 / float32; booleans, complex
    values, non-numeric arrays, wrong shapes and non-finite values are refused.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    else:
        arr = np.asarray(X)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(f"{name} features must be a real numeric array, got dtype {arr.dtype}")
        with warnings.catch_warnings():  # read-only arrays (cached features) are only read here
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} features must be real numbers, got dtype {t.dtype}")
    if t.ndim != 2:
        raise DataError(f"{name} features must be a 2-D array (n, dim), got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else torch.float64)
    if device is not None:
        t = t.to(device)
    if t.numel() and not bool(torch.isfinite(t.abs().amax())):  # amax propagates NaN; one fast reduction
        raise DataError(f"{name} features contain NaN or infinite values")
    return t


@contextlib.contextmanager
def _full_float32_matmul() -> Iterator[None]:
    """float32 GEMMs in full float32 (no TF32 / bf16 shortcuts), which the rounding bounds assume."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


# ---- tiles in threads ------------------------------------------------------------------------


def _map_tiles(fn: Callable[..., _T], items: Iterable[object], device: torch.device) -> list[_T]:
    """``[fn(x) for x in items]``, on CPU in ``torch.get_num_threads()`` Python threads, each
    running torch with one intra-op thread.

    Tiles are independent, so coarse-grained threads need no barrier per operation; torch's
    intra-op pool synchronises after every elementwise pass, which on a loaded machine (more
    runnable threads than cores) costs a scheduler time slice per pass and made PRDC ~10x slower.
    """
    items = list(items)
    n = torch.get_num_threads()
    if device.type != "cpu" or n <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(n)


# ---- exact distances --------------------------------------------------------------------------


def _exact_sq_pairs(A: torch.Tensor, ia: torch.Tensor, B: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """Float64 ``sum_l (A[ia]_l - B[ib]_l)^2`` for index pairs, from the input values (chunked)."""
    d = A.shape[1]
    out = torch.empty(ia.shape[0], dtype=torch.float64, device=A.device)
    step = max(1, (1 << 22) // max(d, 1))
    for s in range(0, ia.shape[0], step):
        diff = A[ia[s : s + step]].double() - B[ib[s : s + step]].double()
        out[s : s + step] = (diff * diff).sum(dim=1)
    return out


# ---- one set of features in the working precisions ---------------------------------------------


class _Features:
    """Features (input values kept for exact rechecks) and their centred working-precision copies."""

    def __init__(self, X: torch.Tensor, centre: torch.Tensor, chunk: int = 8192) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.centre = centre
        self.chunk = chunk
        self._work: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]] = {}
        self._lock = threading.Lock()

    def work(self, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(Xw, sq, t, t_max)`` at precision ``dt``: centred copy, its squared norms (assembly
        precision), the tolerance components ``t = 2 tau ||x~||^2`` (float64) and their maximum."""
        with self._lock:
            return self._make_work(dt)

    def _make_work(self, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        if dt not in self._work:
            Xw = torch.empty((self.n, self.d), dtype=dt, device=self.X.device)
            sq64 = torch.empty(self.n, dtype=torch.float64, device=self.X.device)
            for s in range(0, self.n, self.chunk):
                c = (self.X[s : s + self.chunk].double() - self.centre).to(dt)
                Xw[s : s + self.chunk] = c
                sq64[s : s + self.chunk] = (c.double() ** 2).sum(dim=1)
            t = 2.0 * _tau(dt, self.d) * sq64
            acc = torch.float64 if dt == torch.float64 else torch.float32
            self._work[dt] = (Xw, sq64.to(acc), t, float(t.max()) if self.n else 0.0)
        return self._work[dt]


def _tau(dt: torch.dtype, d: int) -> float:
    """Rounding-error factor: ``|d~^2 - d^2| <= tau (||a|| + ||b||)^2`` for the working precision ``dt``.

    Input rounding ``(2u + u^2)``; the dot product ``gamma_d = d u_acc / (1 - d u_acc)`` (any
    summation order) plus output rounding, times ``2 a.b <= (||a|| + ||b||)^2 / 2``; the float32
    (float64) assembly ``||a||^2 + ||b||^2 - 2 a.b`` ``4 u_f``; a 5 % margin and the float64
    centring.
    """
    u_in = _U[dt]
    u_acc = _U[torch.float64] if dt == torch.float64 else _U[torch.float32]
    gamma = d * u_acc / (1.0 - d * u_acc)
    return 1.05 * (2 * u_in + u_in * u_in + 0.5 * (gamma + u_in * (1 + gamma)) + 4 * u_acc) + 8 * _U[torch.float64]


def _sq_block(A: torch.Tensor, sqA: torch.Tensor, B: torch.Tensor, sqB: torch.Tensor) -> torch.Tensor:
    """Working-precision squared distances ``||a||^2 + ||b||^2 - 2 a.b`` of two row blocks (one GEMM)."""
    if A.dtype == torch.bfloat16:
        D = (A @ B.T).float().mul_(-2.0)
        return D.add_(sqB[None, :]).add_(sqA[:, None])
    return torch.addmm(sqB[None, :], A, B.T, alpha=-2.0).add_(sqA[:, None])


def _down(x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """``x`` (float64) in ``dt``, rounded so that the result is ``<= x``."""
    y = x.to(dt)
    return y if dt == torch.float64 else torch.nextafter(y, torch.tensor(-math.inf, dtype=dt, device=y.device))


def _up(x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """``x`` (float64) in ``dt``, rounded so that the result is ``>= x``."""
    y = x.to(dt)
    return y if dt == torch.float64 else torch.nextafter(y, torch.tensor(math.inf, dtype=dt, device=y.device))


# ---- exact k-NN radii --------------------------------------------------------------------------


def _segment_kth(rows: torch.Tensor, vals: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """For each ``i < n``, the (k+1)-th smallest of ``vals[rows == i]`` (every row has > k entries)."""
    order = torch.argsort(vals, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    return vals[order][starts + k]


def _knn_bound(F: _Features, dt: torch.dtype, k: int, batch_size: int, window: int) -> torch.Tensor:
    """Per row, an upper bound ``U`` on the working-precision distance of every point that can be
    among its k+1 nearest: the (k+1)-th smallest distance within a window of ``window`` rows
    around it, plus ``2 t_i + 2 t_max`` (rounded up)."""
    Xw, sq, t, t_max = F.work(dt)
    n = F.n

    def tile(i0: int) -> torch.Tensor:
        i1 = min(i0 + batch_size, n)
        w0 = max(0, min(i0, n - window))
        D = _sq_block(Xw[i0:i1], sq[i0:i1], Xw[w0 : w0 + window], sq[w0 : w0 + window])
        r = torch.arange(i1 - i0, device=D.device)
        D[r, r + (i0 - w0)] = 0.0  # the exact self-distance
        return D.topk(k + 1, dim=1, largest=False).values[:, -1].double()

    U = torch.cat(_map_tiles(tile, range(0, n, batch_size), F.X.device))
    return _up(U + 2.0 * t + 2.0 * t_max, sq.dtype)


def _knn_sq_radii(F: _Features, k: int, ladder: tuple[torch.dtype, ...], batch_size: int) -> torch.Tensor:
    """Exact squared k-NN radii of every row of ``F``.

    Candidates: in every block on or above the diagonal, the entries below the row's (or, by
    symmetry, the column's) bound from :func:`_knn_bound`; they provably include the k+1 nearest
    (each working distance is within ``t_i + t_j`` of the exact one). Candidates whose lower
    bound exceeds the row's (k+1)-th smallest upper bound are dropped; the rest are recomputed
    exactly and the (k+1)-th smallest is the radius. A block with too many candidates (a wide
    rounding band) is redone in the next precision of ``ladder``.
    """
    n = F.n
    if n <= k:
        raise DataError(f"k-NN radii with k={k} need more than {k} samples, got {n}")
    window = min(n, max(batch_size, k + 1, n // 8))
    bounds: dict[torch.dtype, torch.Tensor] = {}
    for dt in ladder[:1]:
        bounds[dt] = _knn_bound(F, dt, k, batch_size, window)
    lock = threading.Lock()

    def bound(dt: torch.dtype) -> torch.Tensor:
        with lock:
            if dt not in bounds:
                bounds[dt] = _knn_bound(F, dt, k, batch_size, window)
            return bounds[dt]

    def tile(pair: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        i0, j0 = pair
        i1, j1 = min(i0 + batch_size, n), min(j0 + batch_size, n)
        for level, dt in enumerate(ladder):
            Xw, sq, t, _ = F.work(dt)
            U = bound(dt)
            D = _sq_block(Xw[i0:i1], sq[i0:i1], Xw[j0:j1], sq[j0:j1])
            if j0 == i0:
                D.fill_diagonal_(0.0)  # the exact self-distance
            found = [(D <= U[i0:i1, None]).nonzero(as_tuple=True) + (False,)]
            if j0 != i0:
                found.append((D <= U[None, j0:j1]).nonzero(as_tuple=True) + (True,))
            count = sum(f[0].numel() for f in found)
            if level + 1 < len(ladder) and count > 0.02 * D.numel() + 64 * (i1 - i0 + j1 - j0):
                continue  # wide rounding band: redo the block in the next precision
            out = []
            for ii, jj, by_column in found:
                v = D[ii, jj].double()
                rows, cols = (jj + j0, ii + i0) if by_column else (ii + i0, jj + j0)
                tol = t[rows] + t[cols]
                out.append((rows, cols, v + tol, v - tol))
            return out
        raise AssertionError("unreachable: the last precision always decides")

    pairs = [(i0, j0) for i0 in range(0, n, batch_size) for j0 in range(i0, n, batch_size)]
    found = [f for tile_found in _map_tiles(tile, pairs, F.X.device) for f in tile_found]
    rows_l, cols_l, upper_l, lower_l = (list(x) for x in zip(*found))
    del found
    rows, cols = torch.cat(rows_l), torch.cat(cols_l)
    upper, lower = torch.cat(upper_l), torch.cat(lower_l)
    del rows_l, cols_l, upper_l, lower_l
    rho = _segment_kth(rows, upper, k, n)  # r^2_i <= rho_i
    keep = lower <= rho[rows]
    rows, cols = rows[keep], cols[keep]
    return _segment_kth(rows, _exact_sq_pairs(F.X, rows, F.X, cols), k, n)


def kth_nn_sq_distances(
    X: np.ndarray | torch.Tensor, k: int, batch_size: int = 1024, *, dtype: DType = "auto", device: str = "auto"
) -> torch.Tensor:
    """Exact squared distance (float64) from each row of ``X`` to its k-th nearest other row.

    The (k+1)-th smallest entry of each row of the squared distance matrix (the row includes the
    point's zero self-distance). The distance matrix is symmetric, so only blocks on and above
    the diagonal are computed; each block's best candidates per row and per column update a
    running list, whose exact float64 distances give the radius (see the module docstring).
    The result does not depend on ``batch_size`` or ``dtype``. Memory ``O(batch_size^2 + n k)``.
    """
    dev = resolve_device(device) if not isinstance(X, torch.Tensor) or device != "auto" else X.device
    T = as_feature_tensor(X, "features", dev)
    ladder = _LADDER[resolve_dtype(dtype, dev)]
    with torch.no_grad(), _full_float32_matmul():
        return _knn_sq_radii(_Features(T, T.sum(0, dtype=torch.float64) / T.shape[0]), k, ladder, _check_batch(batch_size))


def kth_nn_distances(X: np.ndarray | torch.Tensor, k: int, batch_size: int = 1024, **options: str) -> torch.Tensor:
    """Distance from each row of ``X`` to its k-th nearest other row (``NND_k``); see :func:`kth_nn_sq_distances`."""
    return kth_nn_sq_distances(X, k, batch_size, **options).sqrt()  # type: ignore[arg-type]


def _check_batch(batch_size: int) -> int:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# ---- precision, recall, density, coverage ------------------------------------------------------


class _Decider:
    """Decides ``d^2 <= r^2`` (or ``<``) for the entries of approximate blocks, exactly."""

    def __init__(self, closed: bool) -> None:
        self.closed = closed

    def inside(self, d2: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        return d2 <= r2 if self.closed else d2 < r2


def prdc(
    *,
    generated: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    k: int = 3,
    batch_size: int = 1024,
    device: str = "auto",
    dtype: DType = "auto",
    boundary: Boundary = "closed",
    real_sq_radii: torch.Tensor | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``generated`` w.r.t. ``real`` features.

    Keyword-only (``generated=``, ``real=``), so the two sets cannot be swapped by position
    (swapping them swaps precision and recall); :func:`prdc_real_first` takes the ``prdc``
    package's order ``(real, fake)``. ``boundary`` is ``"closed"`` (``d <= r``, the papers'
    definition) or ``"open"`` (``d < r``, the ``prdc`` package). ``dtype`` sets the precision of
    the first pass only; results equal the float64 definition whatever ``dtype`` and
    ``batch_size`` (module docstring). ``real_sq_radii`` (from :func:`kth_nn_sq_distances`, same
    ``k``) may be passed to reuse the real radii across calls; results are identical.

    Returns the four values and their standard errors given the other set (``precision_se`` =
    ``sqrt(p(1-p)/M)``, ``density_se`` = std of the per-sample counts / k over ``sqrt(M)``,
    ``recall_se`` and ``coverage_se`` binomial over the ``N`` real samples).
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if boundary not in ("closed", "open"):
        raise ConfigError(f"boundary must be 'closed' (d <= r, the papers) or 'open' (d < r, the prdc package), got {boundary!r}")
    batch_size = _check_batch(batch_size)
    dev = resolve_device(device)
    ladder = _LADDER[resolve_dtype(dtype, dev)]
    decide = _Decider(boundary == "closed")
    with torch.no_grad(), _full_float32_matmul():
        Fx = as_feature_tensor(generated, "generated", dev)
        Rx = as_feature_tensor(real, "real", dev)
        if Fx.shape[1] != Rx.shape[1]:
            raise DataError(f"feature dimensions differ: generated {Fx.shape[1]}, real {Rx.shape[1]}")
        if Fx.shape[0] <= k or Rx.shape[0] <= k:
            raise DataError(f"k-NN metrics with k={k} need more than {k} samples per set, got {Fx.shape[0]} generated and {Rx.shape[0]} real")
        centre = Rx.sum(0, dtype=torch.float64) / Rx.shape[0]  # no float64 copy of the set
        R, F_ = _Features(Rx, centre), _Features(Fx, centre)
        if real_sq_radii is None:
            r2_real = _knn_sq_radii(R, k, ladder, batch_size)
        else:
            if tuple(real_sq_radii.shape) != (R.n,):
                raise DataError(f"real_sq_radii must have shape ({R.n},), got {tuple(real_sq_radii.shape)}")
            r2_real = real_sq_radii.to(dev, torch.float64)
        r2_fake = _knn_sq_radii(F_, k, ladder, batch_size)
        counts = torch.zeros(F_.n, dtype=torch.int64, device=dev)
        recalled = torch.zeros(R.n, dtype=torch.bool, device=dev)
        covered = torch.zeros(R.n, dtype=torch.bool, device=dev)
        for dt in ladder[:1]:
            F_.work(dt), R.work(dt)

        def tile(corner: tuple[int, int]) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]:
            i0, c0 = corner
            i1, c1 = min(i0 + batch_size, F_.n), min(c0 + _TILE_COLUMNS, R.n)
            return (i0, c0, *_prdc_block(F_, R, i0, i1, c0, c1, r2_real, r2_fake, ladder, decide))

        corners = [(i0, c0) for i0 in range(0, F_.n, batch_size) for c0 in range(0, R.n, _TILE_COLUMNS)]
        for i0, c0, row_counts, cov, rec in _map_tiles(tile, corners, dev):
            counts[i0 : i0 + row_counts.shape[0]] += row_counts
            covered[c0 : c0 + cov.shape[0]] |= cov
            recalled[c0 : c0 + rec.shape[0]] |= rec
        n_f, n_r = F_.n, R.n
        precision = float((counts > 0).double().mean())
        per_sample = counts.double() / k
        density = (1.0 / k) * (float(counts.sum()) / n_f)  # the prdc package's rounding order
        recall = float(recalled.double().mean())
        coverage = float(covered.double().mean())
        density_se = float(per_sample.std() / math.sqrt(n_f)) if n_f > 1 else math.nan
    return {
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "precision_se": math.sqrt(precision * (1 - precision) / n_f),
        "recall_se": math.sqrt(recall * (1 - recall) / n_r),
        "density_se": density_se,
        "coverage_se": math.sqrt(coverage * (1 - coverage) / n_r),
    }


def _band_entries(Z: torch.Tensor, half: float, rows: torch.Tensor | None, cols: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` of the entries with ``|Z_ij| <= half`` among the given rows or columns."""
    if rows is not None:
        ii, jj = (Z[rows].abs() <= half).nonzero(as_tuple=True)
        return rows[ii], jj
    assert cols is not None
    ii, jj = (Z[:, cols].abs() <= half).nonzero(as_tuple=True)
    return ii, cols[jj]


def _prdc_block(
    F_: _Features, R: _Features, i0: int, i1: int, c0: int, c1: int, r2_real: torch.Tensor, r2_fake: torch.Tensor,
    ladder: tuple[torch.dtype, ...], decide: _Decider,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Counts of one (generated rows i0:i1) x (real columns c0:c1) tile, exactly: per generated
    row the number of real balls holding it, per real column covered and recalled.

    With ``lo``/``hi`` the working-precision thresholds below/above which an entry is certainly
    inside/outside a ball, ``E = D - lo`` (real balls, per column) and ``G = D - lo_f`` (generated
    balls, per row): ``E < 0`` is certainly inside; undecided entries satisfy ``0 <= E <= w``,
    found as ``|E - w/2| <= w/2`` in the few rows (columns) whose minimum says they hold one, and
    decided exactly. Row and column minima (fast reductions) give precision, coverage and recall.
    """
    for level, dt in enumerate(ladder):
        Fw, sqF, tF, _ = F_.work(dt)
        Rw, sqR, tR, tR_max = R.work(dt)
        D = _sq_block(Fw[i0:i1], sqF[i0:i1], Rw[c0:c1], sqR[c0:c1])
        tB = float(tF[i0:i1].max())
        lo = _down(r2_real[c0:c1] - tR[c0:c1] - tB, D.dtype)
        hi = _up(r2_real[c0:c1] + tR[c0:c1] + tB, D.dtype)
        w = float(_up((hi.double() - lo.double()).max(), D.dtype))
        lo_f = _down(r2_fake[i0:i1] - tF[i0:i1] - tR_max, D.dtype)
        hi_f = _up(r2_fake[i0:i1] + tF[i0:i1] + tR_max, D.dtype)
        w_f = float(_up((hi_f.double() - lo_f.double()).max(), D.dtype))
        E = D - lo[None, :]
        G = D.sub_(lo_f[:, None])
        # undecided entries lie in [0, w]: shift by w/2 so that they are |Z| <= w/2 (exact in floats)
        E_sure = E < 0
        row_sure = torch.count_nonzero(E_sure, dim=1)
        cov_sure = E.amin(dim=0) < 0
        rec_sure = G.amin(dim=0) < 0
        E.sub_(w / 2).abs_()
        G.sub_(w_f / 2).abs_()
        band_rows = (E.amin(dim=1) <= w / 2).nonzero().squeeze(1)
        band_cols = ((G.amin(dim=0) <= w_f / 2) & ~rec_sure).nonzero().squeeze(1)
        if level + 1 < len(ladder) and band_rows.numel() + band_cols.numel() > _MAX_BAND_FRACTION * (i1 - i0 + c1 - c0):
            continue  # many undecided rows or columns: redo the tile in the next precision
        counts, covered, recalled = row_sure, cov_sure, rec_sure
        if band_rows.numel():
            ii, jj = _band_entries(E, w / 2, band_rows, None)
            ii, jj = ii[~E_sure[ii, jj]], jj[~E_sure[ii, jj]]
            if ii.numel():
                ex = _exact_sq_pairs(F_.X, ii + i0, R.X, jj + c0)
                ins = decide.inside(ex, r2_real[jj + c0])
                counts.index_add_(0, ii[ins], torch.ones_like(ii[ins]))
                covered[jj[ins]] = True
        if band_cols.numel():
            ii, jj = _band_entries(G, w_f / 2, None, band_cols)
            if ii.numel():
                ex = _exact_sq_pairs(F_.X, ii + i0, R.X, jj + c0)
                ins = decide.inside(ex, r2_fake[ii + i0])
                recalled[jj[ins]] = True
        return counts, covered, recalled
    raise AssertionError("unreachable: the last precision always decides")


def prdc_real_first(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, nearest_k: int = 3, **options: object) -> dict[str, float]:
    """:func:`prdc` with the ``prdc`` package's positional order ``(real_features, fake_features, nearest_k)``."""
    return prdc(generated=fake, real=real, k=nearest_k, **options)  # type: ignore[arg-type]


# ---- kernel inception distance ----------------------------------------------------------------


def kid(
    *,
    generated: np.ndarray | torch.Tensor,
    real: np.ndarray | torch.Tensor,
    n_subsets: int = 100,
    subset_size: int | None = 1000,
    rng: np.random.Generator,
    device: str = "auto",
) -> dict[str, float]:
    """Kernel inception distance: mean and std over subsets of the unbiased polynomial MMD².

    For each of ``n_subsets`` draws of ``m = subset_size`` rows per side (without replacement,
    from ``rng``)::

        MMD_u^2 = [sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)] / (m(m-1)) - 2/m^2 sum_{i,j} k(x_i, y_j)

    with ``k(x, y) = (x.y / d + 1)^3`` (Bińkowski et al. 2018, degree 3, gamma = 1/d, coef 1),
    in float64. A ``subset_size`` larger than a set is an error (it would silently change the
    estimator); ``subset_size=None`` uses the smaller set's size. Returns ``kid``, ``kid_std``
    (the spread over subsets, ``ddof=0`` as torch-fidelity), ``kid_se`` (the first-order
    standard error of the full-sample estimate, :func:`_kid_se`) and ``kid_subset_size``.
    """
    if not isinstance(n_subsets, (int, np.integer)) or n_subsets < 1:
        raise ConfigError(f"kid needs n_subsets >= 1, got {n_subsets!r}")
    dev = resolve_device(device)
    with torch.no_grad():
        X = as_feature_tensor(generated, "generated", dev).double()
        Y = as_feature_tensor(real, "real", dev).double()
        if X.shape[1] != Y.shape[1]:
            raise DataError(f"feature dimensions differ: generated {X.shape[1]}, real {Y.shape[1]}")
        n_min = min(X.shape[0], Y.shape[0])
        m = n_min if subset_size is None else int(subset_size)
        if m < 2:
            raise DataError(f"kid needs subsets of at least 2 samples per side, got {m} (sets of {X.shape[0]} and {Y.shape[0]})")
        if m > n_min:
            raise DataError(
                f"kid subset_size={m} is larger than the {'generated' if X.shape[0] < Y.shape[0] else 'real'} "
                f"set ({n_min} samples); pass subset_size<={n_min}, or subset_size=None to use the smaller set's size"
            )
        d = X.shape[1]
        values = np.empty(n_subsets)
        for i in range(n_subsets):
            x = X[torch.as_tensor(rng.choice(X.shape[0], m, replace=False), device=dev)]
            y = Y[torch.as_tensor(rng.choice(Y.shape[0], m, replace=False), device=dev)]
            kxx = (x @ x.T / d + 1.0) ** 3
            kyy = (y @ y.T / d + 1.0) ** 3
            kxy = (x @ y.T / d + 1.0) ** 3
            within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            values[i] = float(within - 2.0 * kxy.sum() / (m * m))
        se = _kid_se(X, Y, rng, dev)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "kid_se": se, "kid_subset_size": float(m)}


def _kid_se(X: torch.Tensor, Y: torch.Tensor, rng: np.random.Generator, dev: torch.device, cap: int = 2000) -> float:
    """First-order (Hoeffding) standard error of the full-sample KID, from at most ``cap`` rows per side.

    With ``a_i = mean_{j != i} k(x_i, x_j) - mean_j k(x_i, y_j)`` and ``b_j`` likewise,
    ``Var ~ 4 Var(a)/m + 4 Var(b)/n``; computed on subsets of ``s <= cap`` rows and scaled by
    ``sqrt(s / n)`` (the variance scales as ``1/n``). Accurate when the distributions differ,
    near zero when they are equal (the statistic is then degenerate).
    """
    d = X.shape[1]
    sx, sy = min(cap, X.shape[0]), min(cap, Y.shape[0])
    x = X[torch.as_tensor(rng.choice(X.shape[0], sx, replace=False), device=dev)]
    y = Y[torch.as_tensor(rng.choice(Y.shape[0], sy, replace=False), device=dev)]
    kxx, kyy, kxy = ((x @ x.T / d + 1.0) ** 3, (y @ y.T / d + 1.0) ** 3, (x @ y.T / d + 1.0) ** 3)
    a = (kxx.sum(1) - kxx.diagonal()) / (sx - 1) - kxy.mean(1)
    b = (kyy.sum(1) - kyy.diagonal()) / (sy - 1) - kxy.mean(0)
    var = 4.0 * float(a.var()) / sx * (sx / X.shape[0]) + 4.0 * float(b.var()) / sy * (sy / Y.shape[0])
    return math.sqrt(max(var, 0.0))


__all__ = ["as_feature_tensor", "kth_nn_distances", "kth_nn_sq_distances", "prdc", "prdc_real_first", "kid", "resolve_dtype"]
