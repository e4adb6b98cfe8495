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
nearest. The few entries per row near a threshold are found by a screen on run minima
(:func:`_screen`), never by comparing whole blocks. A block whose band is too wide is redone in
the next precision (bfloat16 → float32 → float64). So the result does not depend on ``dtype``,
``batch_size`` or the device: it equals the float64 definition, ties included. ``"auto"`` runs
bfloat16 products where the CPU has bfloat16 units (:func:`resolve_dtype`).

Memory is ``O(batch_size * 2048)`` per block, never ``N x N``, plus the diagonal band that the
k-NN radii keep (``~N (N/16 + batch_size)`` float32 values, at most ``_BAND_BYTES``): the radii use
only the blocks on and above the diagonal of the symmetric within-set distance matrix, and one
pass over the generated-vs-real blocks yields all four numbers. Runs on CPU or GPU.

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
#: columns per chunk of the candidate screen (:func:`_screen`)
_CHUNK = 64
#: a tile is redone in the next precision when more than this fraction of its column chunks
#: hold candidates (re-reading them then costs more than the next precision's GEMM) — below
#: _WIDE_DIM features; from there on a GEMM costs far more per entry than re-reading it
_MAX_CHUNK_FRACTION = 0.25
_MAX_CHUNK_FRACTION_WIDE = 0.9
#: from this feature dimension on, "auto" runs the k-NN radii in bfloat16 too (measured on 2
#: Zen 4 cores at N = 10,000: float32 is faster up to d ~ 512, bfloat16 1.6x faster at 2048)
_WIDE_DIM = 768
#: rows per block when ``batch_size`` is None: 1024 on a CPU (blocks stay in cache); on a GPU,
#: 8192. Every block costs a few kernel launches and host synchronisations (the screen's
#: ``nonzero``), ~ms of Python per block, while a 1024 x 2048 x 2048 float32 product is ~8.6
#: GFLOP, ~0.2 ms at the ~50 TFLOP/s of float32 on an H200-class GPU: at N = 50,000, 1024-row
#: blocks make ~3,700 blocks (2 x 1,225 for the radii, 1,225 tiles) whose overhead dominates
#: (5.6 s measured on an H200 against ~0.5 s of products); 8192-row blocks make ~100.
_CPU_BATCH = 1024
_GPU_BATCH = 8192
#: the k-NN radii keep the blocks of their diagonal band (the bound's window) up to this size
#: and compute them again beyond it (~0.7 GiB at N = 50,000 with 1024-row blocks)
_BAND_BYTES = 2 << 30


def _fast_bfloat16_cpu() -> bool:
    """Whether this CPU has bfloat16 dot-product units (AVX-512 BF16 or AMX), where torch's
    bfloat16 GEMMs run ~2.3x faster than float32 (measured on 2 Zen 4 cores)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """The working precision of the first pass for ``dtype``.

    ``"auto"`` is bfloat16 on CPUs with bfloat16 units and float32 elsewhere (on GPUs untested).
    The rigorous rounding bound of bfloat16 inputs (``2 u = 2^-7`` relative) leaves a few
    undecided entries per row (~3.5 at k = 3, as many as are inside); they are found by a
    screen of the block (:func:`_screen`) and decided on their exact distances, so the
    faster GEMM wins at every feature dimension. Results are the same for every ``dtype``.
    """
    if dtype == "auto":
        return "bfloat16" if device.type == "cpu" and _fast_bfloat16_cpu() else "float32"
    if dtype not in _TORCH_DTYPES:
        raise ConfigError(
            f"unknown distance dtype {dtype!r}; choose one of 'auto', 'bfloat16', 'float32', 'float64' "
            "(the results are the same for all: they set the speed of the first pass)"
        )
    return dtype


def _radii_ladder(dtype: str, device: torch.device, d: int) -> tuple[torch.dtype, ...]:
    """The precisions of the k-NN radii pass: as :func:`resolve_dtype`, but ``"auto"`` starts at
    float32 below ``_WIDE_DIM`` features. The radii's candidate bound is looser than a known
    radius (it comes from the diagonal band only): in bfloat16 it leaves tens of candidates per row,
    which costs more than the faster GEMM saves until the GEMM dominates (wide features)."""
    if dtype == "auto" and d < _WIDE_DIM:
        return _LADDER["float32"]
    return _LADDER[resolve_dtype(dtype, device)]


def _max_chunk_fraction(d: int) -> float:
    return _MAX_CHUNK_FRACTION if d < _WIDE_DIM else _MAX_CHUNK_FRACTION_WIDE


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
    if t.numel() and not all(math.isfinite(float(v)) for v in torch.aminmax(t)):  # NaN propagates; one pass, no copy
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
    """Float64 ``sum_l (A[ia]_l - B[ib]_l)^2`` for index pairs, from the input values (chunked).

    The chunks go through buffers allocated once: a fresh multi-MiB temporary per chunk costs
    its page faults, which made this 30x slower at d = 2048 (measured).
    """
    n, d = ia.shape[0], A.shape[1]
    out = torch.empty(n, dtype=torch.float64, device=A.device)
    if n == 0:
        return out
    step = max(1, min(n, (1 << 18) // max(d, 1)))  # float64 buffers of 2 MiB stay in cache
    a64 = torch.empty((step, d), dtype=torch.float64, device=A.device)
    b64 = torch.empty_like(a64)
    raw = torch.empty((step, d), dtype=A.dtype, device=A.device) if A.dtype != torch.float64 else None
    for s in range(0, n, step):
        m = min(step, n - s)
        a, b = a64[:m], b64[:m]
        for src, idx, dst in ((A, ia, a), (B, ib, b)):
            if raw is None or src.dtype == torch.float64:
                torch.index_select(src, 0, idx[s : s + m], out=dst)
            else:
                dst.copy_(torch.index_select(src, 0, idx[s : s + m], out=raw[:m]))
        a.sub_(b).mul_(a)
        torch.sum(a, dim=1, out=out[s : s + m])
    return out


# ---- one set of features in the working precisions ---------------------------------------------


class _Features:
    """Features (input values kept for exact rechecks) and their centred working-precision copies."""

    def __init__(self, X: torch.Tensor, centre: torch.Tensor) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.centre = centre
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
            rows = max(1, min(self.n, (1 << 18) // max(self.d, 1)))  # 2 MiB float64 scratch, reused
            c64 = torch.empty((rows, self.d), dtype=torch.float64, device=self.X.device)
            for s in range(0, self.n, rows):
                m = min(rows, self.n - s)
                c = c64[:m].copy_(self.X[s : s + m]).sub_(self.centre)
                Xw[s : s + m] = c  # rounded to dt
                c.copy_(Xw[s : s + m])
                sq64[s : s + m] = c.mul_(c).sum(dim=1)
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


_buffers = threading.local()


def _scratch(shape: tuple[int, int], dtype: torch.dtype, device: torch.device, slot: str) -> torch.Tensor:
    """A contiguous ``shape`` tensor from this thread's reusable buffer ``slot`` (grown on demand).

    The blocks are several MiB each; a fresh allocation per block is returned to the system and
    page-faulted in again every time (~0.5 million faults, ~1 s of system time at N = 10,000,
    d = 2048). Every caller copies what it keeps out of the block, so one buffer per thread and
    slot suffices.
    """
    key = (slot, dtype, device)
    pool = getattr(_buffers, "pool", None)
    if pool is None:
        pool = _buffers.pool = {}
    size = shape[0] * shape[1]
    buf = pool.get(key)
    if buf is None or buf.numel() < size:
        buf = pool[key] = torch.empty(size, dtype=dtype, device=device)
    return buf[:size].view(shape)


@contextlib.contextmanager
def _released_scratch() -> Iterator[None]:
    """Frees this thread's scratch buffers on exit (the tile threads' go with their threads)."""
    try:
        yield
    finally:
        _buffers.pool = {}


def _sq_block(A: torch.Tensor, sqA: torch.Tensor, B: torch.Tensor, sqB: torch.Tensor) -> torch.Tensor:
    """Working-precision squared distances ``||a||^2 + ||b||^2 - 2 a.b`` of two row blocks (one
    GEMM), in a scratch buffer of this thread (valid until its next call)."""
    shape = (A.shape[0], B.shape[0])
    if A.dtype == torch.bfloat16:
        P = torch.matmul(A, B.T, out=_scratch(shape, A.dtype, A.device, "product"))
        D = _scratch(shape, torch.float32, A.device, "block").copy_(P).mul_(-2.0)
        return D.add_(sqB[None, :]).add_(sqA[:, None])
    D = torch.addmm(sqB[None, :], A, B.T, alpha=-2.0, out=_scratch(shape, A.dtype, A.device, "block"))
    return D.add_(sqA[:, None])


def _screen(D: torch.Tensor, thr: torch.Tensor, by_rows: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The entries ``(i, j, D_ij)`` of a block with ``D_ij <= thr_i`` (``by_rows``) or ``D_ij <= thr_j``.

    The thresholds keep a few entries per row, and comparing plus compacting a whole block
    (``nonzero`` over ~10^6 entries) costs more than a bfloat16 GEMM at d = 64. So the block is
    screened first: the minimum of each run of ``_CHUNK`` entries along the row (or column) is
    compared with that row's (column's) threshold, and only the runs that hold an entry are
    gathered and tested entry by entry. Also returns the fraction of runs gathered.
    """
    r, c = D.shape
    n, m = (r, c) if by_rows else (c, r)
    full = m - m % _CHUNK
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    fraction = 0.0
    if full:
        runs = D[:, :full].unflatten(1, (full // _CHUNK, _CHUNK)) if by_rows else D[:full].unflatten(0, (full // _CHUNK, _CHUNK))
        lows = runs.amin(dim=2) if by_rows else runs.amin(dim=1).T  # (n, runs per line)
        li, ri = (lows <= thr[:, None]).nonzero(as_tuple=True)
        fraction = li.numel() / max(1, lows.numel())
        vals = runs[li, ri] if by_rows else runs[ri, :, li]  # (gathered runs, _CHUNK)
        f, o = (vals <= thr[li, None]).nonzero(as_tuple=True)
        parts.append((li[f], ri[f] * _CHUNK + o, vals[f, o]))
    if full < m:  # the last entries of each line, fewer than a run: tested directly
        tail = D[:, full:] if by_rows else D[full:].T
        li, oi = (tail <= thr[:, None]).nonzero(as_tuple=True)
        parts.append((li, oi + full, tail[li, oi]))
    line, pos, vals = (torch.cat(x) for x in zip(*parts))
    return (line, pos, vals, fraction) if by_rows else (pos, line, vals, fraction)


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


def _near_bounds(D: torch.Tensor, t_other: torch.Tensor, k: int, by_rows: bool) -> torch.Tensor:
    """Per row (``by_rows``) or column of a block, values ``D~_iw + t_w`` of distinct points
    ``w`` (float64, one per column of the result), each an upper bound on ``d^2_iw - t_i``.

    On wide blocks, the minimum of each run of ``_CHUNK`` entries (with the run's largest
    ``t``): a reduction ~20x cheaper than ``topk`` at d = 64, one point per run. On narrow blocks
    the k+1 smallest entries.
    """
    m = D.shape[1] if by_rows else D.shape[0]
    if m < (k + 1) * _CHUNK:
        near = D.topk(min(k + 1, m), dim=1 if by_rows else 0, largest=False)
        z = near.values.double() + t_other[near.indices]
        return z if by_rows else z.T
    full = m - m % _CHUNK
    runs = D[:, :full].unflatten(1, (full // _CHUNK, _CHUNK)).amin(dim=2) if by_rows else D[:full].unflatten(0, (full // _CHUNK, _CHUNK)).amin(dim=1).T
    z = runs.double() + t_other[:full].view(-1, _CHUNK).amax(dim=1)[None, :]
    if full < m:
        tail = (D[:, full:] if by_rows else D[full:].T).amin(dim=1, keepdim=True)
        z = torch.cat((z, tail.double() + float(t_other[full:].max())), dim=1)
    return z


def _knn_sq_radii(F: _Features, k: int, ladder: tuple[torch.dtype, ...], batch_size: int) -> torch.Tensor:
    """Exact squared k-NN radii of every row of ``F``, from the blocks on and above the diagonal
    of the symmetric distance matrix.

    1. The blocks of a band around the diagonal (``w`` blocks per block row, so that a row sees
       about ``n / 8`` columns) are computed first and kept (up to ``_BAND_BYTES``; beyond, they
       are computed again in step 2). Over distinct points ``w`` of each row there
       (:func:`_near_bounds`), the (k+1)-th smallest ``D~_iw + t_w``, plus ``t_i``, bounds the
       squared radius ``U_i`` (each exact distance is at most ``D~_iw + t_i + t_w``).
    2. Every block — the kept band, then the rest — yields the candidates
       ``D~_ij <= U_i + t_i + t_j`` of its rows (and, by symmetry, of its columns), found by
       :func:`_screen`; they provably include the k+1 nearest. A block with too many candidates
       (a wide rounding band) is redone in the next precision of ``ladder``.
    3. Candidates whose lower bound exceeds the row's (k+1)-th smallest upper bound are
       dropped; the rest are recomputed exactly and the (k+1)-th smallest is the radius.

    The band doubles as the bound's window, so no block is computed twice.
    """
    n = F.n
    if n <= k:
        raise DataError(f"k-NN radii with k={k} need more than {k} samples, got {n}")
    n_blocks = -(-n // batch_size)
    window = min(n, max(batch_size, k + 1, n // 8))
    w = max(1, min(n_blocks, math.ceil((window / batch_size + 1) / 2)))  # a row sees ~(2w - 1) blocks
    pairs = [(bi * batch_size, bj * batch_size) for bi in range(n_blocks) for bj in range(bi, n_blocks)]
    band = [p for p in pairs if p[1] - p[0] < w * batch_size]
    rest = [p for p in pairs if p[1] - p[0] >= w * batch_size]
    dev = F.X.device
    keep_band = len(band) * batch_size * batch_size * 4 <= _BAND_BYTES

    def block(i0: int, j0: int, dt: torch.dtype) -> torch.Tensor:
        Xw, sq, _, _ = F.work(dt)
        i1, j1 = min(i0 + batch_size, n), min(j0 + batch_size, n)
        D = _sq_block(Xw[i0:i1], sq[i0:i1], Xw[j0:j1], sq[j0:j1])
        if j0 == i0:
            D.fill_diagonal_(0.0)  # the exact self-distance
        return D

    def nearest(pair: tuple[int, int]) -> tuple[torch.Tensor | None, list[tuple[int, torch.Tensor]]]:
        """A band block (a copy when kept: the scratch buffer is reused) and, for its rows and
        columns, upper bounds ``D~ + t`` on the distances of distinct points (:func:`_near_bounds`)."""
        i0, j0 = pair
        D = block(i0, j0, ladder[0])
        t = F.work(ladder[0])[2]
        i1, j1 = i0 + D.shape[0], j0 + D.shape[1]
        out = [(i0, _near_bounds(D, t[j0:j1], k, by_rows=True))]
        if j0 != i0:
            out.append((j0, _near_bounds(D, t[i0:i1], k, by_rows=False)))
        return (D.clone() if keep_band else None), out

    kept: dict[tuple[int, int], torch.Tensor] = {}
    by_block: dict[int, list[torch.Tensor]] = {}
    for pair, (D, out) in zip(band, _map_tiles(nearest, band, dev)):
        if D is not None:
            kept[pair] = D
        for start, z in out:
            by_block.setdefault(start, []).append(z)
    U = torch.full((n,), math.inf, dtype=torch.float64, device=dev)
    t0 = F.work(ladder[0])[2]
    for start, zs in by_block.items():
        Z = torch.cat(zs, dim=1)
        if Z.shape[1] > k:  # rows that saw fewer than k+1 points keep U = inf (every entry a candidate)
            U[start : start + Z.shape[0]] = Z.topk(k + 1, dim=1, largest=False).values[:, -1] + t0[start : start + Z.shape[0]]

    def tile(pair: tuple[int, int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        i0, j0 = pair
        i1, j1 = min(i0 + batch_size, n), min(j0 + batch_size, n)
        first = kept.pop(pair, None)
        for level, dt in enumerate(ladder):
            t = F.work(dt)[2]
            D = first if level == 0 and first is not None else block(i0, j0, dt)
            # screen with the block's largest t_j, then keep D~_ij <= U_i + t_i + t_j per pair
            row_thr = _up(U[i0:i1] + t[i0:i1] + float(t[j0:j1].max()), D.dtype)
            found = [_screen(D, row_thr, by_rows=True) + (False,)]
            if j0 != i0:  # the block below the diagonal, by symmetry
                col_thr = _up(U[j0:j1] + t[j0:j1] + float(t[i0:i1].max()), D.dtype)
                found.append(_screen(D, col_thr, by_rows=False) + (True,))
            screened = max(f[3] for f in found)
            count = sum(f[0].numel() for f in found)
            if level + 1 < len(ladder) and (screened > _max_chunk_fraction(F.d) or count > 0.02 * D.numel() + 64 * (i1 - i0 + j1 - j0)):
                continue  # wide rounding band: redo the block in the next precision
            out = []
            for ii, jj, v, _, by_column in found:
                v = v.double()
                rows, cols = (jj + j0, ii + i0) if by_column else (ii + i0, jj + j0)
                tol = t[rows] + t[cols]
                keep = v <= U[rows] + tol
                rows, cols, v, tol = rows[keep], cols[keep], v[keep], tol[keep]
                out.append((rows, cols, v + tol, v - tol))
            return out
        raise AssertionError("unreachable: the last precision always decides")

    found = [f for tile_found in _map_tiles(tile, band + rest, dev) for f in tile_found]
    rows_l, cols_l, upper_l, lower_l = (list(x) for x in zip(*found))
    del found
    rows, cols = torch.cat(rows_l), torch.cat(cols_l)
    upper, lower = torch.cat(upper_l), torch.cat(lower_l)
    del rows_l, cols_l, upper_l, lower_l
    rho = _segment_kth(rows, upper, k, n)  # r^2_i <= rho_i
    keep = lower <= rho[rows]
    rows, cols = rows[keep], cols[keep]
    parts = max(1, min(torch.get_num_threads(), rows.numel() // 4096))  # the pairs split over the tile threads
    bounds = [rows.numel() * p // parts for p in range(parts + 1)]
    pieces = _map_tiles(lambda b: _exact_sq_pairs(F.X, rows[b[0] : b[1]], F.X, cols[b[0] : b[1]]), zip(bounds, bounds[1:]), dev)
    return _segment_kth(rows, torch.cat(pieces), k, n)


def kth_nn_sq_distances(
    X: np.ndarray | torch.Tensor, k: int, batch_size: int | None = None, *, dtype: DType = "auto", device: str = "auto"
) -> torch.Tensor:
    """Exact squared distance (float64) from each row of ``X`` to its k-th nearest other row.

    The (k+1)-th smallest entry of each row of the squared distance matrix (the row includes the
    point's zero self-distance). The distance matrix is symmetric, so only blocks on and above
    the diagonal are computed; each block's best candidates per row and per column update a
    running list, whose exact float64 distances give the radius (see the module docstring).
    The result does not depend on ``batch_size`` or ``dtype``. Memory ``O(batch_size^2 + n k)``;
    ``batch_size`` None is the device's default (:func:`_check_batch`).
    """
    dev = resolve_device(device) if not isinstance(X, torch.Tensor) or device != "auto" else X.device
    T = as_feature_tensor(X, "features", dev)
    ladder = _radii_ladder(dtype, dev, T.shape[1])
    with torch.no_grad(), _full_float32_matmul(), _released_scratch():
        return _knn_sq_radii(_Features(T, T.sum(0, dtype=torch.float64) / T.shape[0]), k, ladder, _check_batch(batch_size, dev))


def kth_nn_distances(X: np.ndarray | torch.Tensor, k: int, batch_size: int | None = None, **options: str) -> torch.Tensor:
    """Distance from each row of ``X`` to its k-th nearest other row (``NND_k``); see :func:`kth_nn_sq_distances`."""
    return kth_nn_sq_distances(X, k, batch_size, **options).sqrt()  # type: ignore[arg-type]


def _check_batch(batch_size: int | None, device: torch.device | None = None) -> int:
    """``batch_size``, or for None the device's default: ``_CPU_BATCH`` rows on a CPU,
    ``_GPU_BATCH`` on a GPU (fewer blocks: each costs launches and synchronisations), halved
    while a block's working set (~4 float32 copies of ``b x b``) exceeds 1/8 of the GPU's memory."""
    if batch_size is None:
        if device is None or device.type != "cuda":
            return _CPU_BATCH
        b = _GPU_BATCH
        total = torch.cuda.get_device_properties(device).total_memory
        while b > _CPU_BATCH and 16 * b * b > total / 8:
            b //= 2
        return b
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _tile_columns(batch_size: int, device: torch.device) -> int:
    """Real columns per tile of the main pass: ``_TILE_COLUMNS`` on a CPU (cache), at least a
    block's rows on a GPU (fewer, larger tiles)."""
    return _TILE_COLUMNS if device.type != "cuda" else max(_TILE_COLUMNS, batch_size)


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
    batch_size: int | None = None,
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
    dev = resolve_device(device)
    batch_size = _check_batch(batch_size, dev)
    columns = _tile_columns(batch_size, dev)
    ladder = _LADDER[resolve_dtype(dtype, dev)]
    decide = _Decider(boundary == "closed")
    with torch.no_grad(), _full_float32_matmul(), _released_scratch():
        Fx = as_feature_tensor(generated, "generated", dev)
        Rx = as_feature_tensor(real, "real", dev)
        if Fx.shape[1] != Rx.shape[1]:
            raise DataError(f"feature dimensions differ: generated {Fx.shape[1]}, real {Rx.shape[1]}")
        if Fx.shape[0] <= k or Rx.shape[0] <= k:
            raise DataError(f"k-NN metrics with k={k} need more than {k} samples per set, got {Fx.shape[0]} generated and {Rx.shape[0]} real")
        centre = Rx.sum(0, dtype=torch.float64) / Rx.shape[0]  # no float64 copy of the set
        R, F_ = _Features(Rx, centre), _Features(Fx, centre)
        if real_sq_radii is None:
            r2_real = _knn_sq_radii(R, k, _radii_ladder(dtype, dev, R.d), batch_size)
        else:
            if tuple(real_sq_radii.shape) != (R.n,):
                raise DataError(f"real_sq_radii must have shape ({R.n},), got {tuple(real_sq_radii.shape)}")
            r2_real = real_sq_radii.to(dev, torch.float64)
        r2_fake = _knn_sq_radii(F_, k, _radii_ladder(dtype, dev, R.d), batch_size)
        counts = torch.zeros(F_.n, dtype=torch.int64, device=dev)
        recalled = torch.zeros(R.n, dtype=torch.bool, device=dev)
        covered = torch.zeros(R.n, dtype=torch.bool, device=dev)
        for dt in ladder[:1]:
            F_.work(dt), R.work(dt)

        def tile(corner: tuple[int, int]) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]:
            i0, c0 = corner
            i1, c1 = min(i0 + batch_size, F_.n), min(c0 + columns, R.n)
            return (i0, c0, *_prdc_block(F_, R, i0, i1, c0, c1, r2_real, r2_fake, ladder, decide))

        corners = [(i0, c0) for i0 in range(0, F_.n, batch_size) for c0 in range(0, R.n, columns)]
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


def _prdc_block(
    F_: _Features, R: _Features, i0: int, i1: int, c0: int, c1: int, r2_real: torch.Tensor, r2_fake: torch.Tensor,
    ladder: tuple[torch.dtype, ...], decide: _Decider,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Counts of one (generated rows i0:i1) x (real columns c0:c1) tile, exactly: per generated
    row the number of real balls holding it, per real column covered and recalled.

    Every entry with ``|D~_ij - d^2_ij| <= t_i + t_j`` (the rounding bound) can be inside a ball
    only if ``D~_ij <= hi_j`` (real ball ``j``, ``hi = r^2 + t_j + max_i t_i``) or
    ``D~_ij <= hi_i`` (generated ball ``i``); :func:`_screen` finds those few entries. Each is
    certainly inside when ``D~ < r^2 - t_i - t_j``, certainly outside when ``D~ > r^2 + t_i + t_j``,
    and decided on its exact distance otherwise.
    """
    for level, dt in enumerate(ladder):
        Fw, sqF, tF, _ = F_.work(dt)
        Rw, sqR, tR, _ = R.work(dt)
        D = _sq_block(Fw[i0:i1], sqF[i0:i1], Rw[c0:c1], sqR[c0:c1])
        hi = _up(r2_real[c0:c1] + tR[c0:c1] + float(tF[i0:i1].max()), D.dtype)
        hi_f = _up(r2_fake[i0:i1] + tF[i0:i1] + float(tR[c0:c1].max()), D.dtype)
        real_balls, fake_balls = _screen(D, hi, by_rows=False), _screen(D, hi_f, by_rows=True)
        if level + 1 < len(ladder) and max(real_balls[3], fake_balls[3]) > _max_chunk_fraction(F_.d):
            continue  # a wide rounding band: redo the tile in the next precision
        ii, jj, v = (torch.cat((a, b)) for a, b in zip(real_balls[:3], fake_balls[:3]))
        which = torch.arange(ii.numel(), device=D.device) < real_balls[0].numel()  # True: a real-ball entry
        v = v.double()
        # the tolerance of each pair, plus the float64 rounding of the thresholds themselves
        tol = tF[ii + i0] + tR[jj + c0]
        rr, rf = r2_real[jj + c0], r2_fake[ii + i0]
        tol_r, tol_f = tol + 4 * _U[torch.float64] * rr, tol + 4 * _U[torch.float64] * rf
        sure_r, maybe_r = which & (v < rr - tol_r), which & (v >= rr - tol_r) & (v <= rr + tol_r)
        sure_f, maybe_f = ~which & (v < rf - tol_f), ~which & (v >= rf - tol_f) & (v <= rf + tol_f)
        exact_at = (maybe_r | maybe_f).nonzero().squeeze(1)
        if exact_at.numel():
            ex = _exact_sq_pairs(F_.X, ii[exact_at] + i0, R.X, jj[exact_at] + c0)
            sure_r[exact_at] |= maybe_r[exact_at] & decide.inside(ex, rr[exact_at])
            sure_f[exact_at] |= maybe_f[exact_at] & decide.inside(ex, rf[exact_at])
        counts = torch.bincount(ii[sure_r], minlength=i1 - i0)
        covered = torch.zeros(c1 - c0, dtype=torch.bool, device=D.device)
        covered[jj[sure_r]] = True
        recalled = torch.zeros(c1 - c0, dtype=torch.bool, device=D.device)
        recalled[jj[sure_f]] = True
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
