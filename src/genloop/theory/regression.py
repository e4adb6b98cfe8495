"""Test-error laws of linear regression retrained on its own labels (Dohmatob et al. 2024;
Gerstgrasser et al. 2024), for genloop's ``regression`` model in the loop.

Setting. n real rows (x_i, y_i), y = x·β* + σε; generation 0 fits OLS β̂_0 on them; generation
t >= 1 is trained on synthetic rows whose labels are the predictions of generation t−1 plus
fresh noise N(0, σ²). The excess risk is E_t = E[(β̂_t − β*)ᵀ Σ (β̂_t − β*)], Σ = E[xxᵀ].

Fixed design X (every block of rows has the same features, ``design="fixed"``). Write
u_s = (XᵀX)⁻¹Xᵀε_s (independent, Cov = σ²(XᵀX)⁻¹) and τ = tr(Σ(XᵀX)⁻¹); then E_t = σ² τ c_t
with c_t from the scheme (derivations in docs/discrete.md):

* ``replace``, fully synthetic: β̂_t = β̂_{t−1} + u_t, so c_t = t + 1 — linear growth.
* ``replace`` with real data, m = kn synthetic rows (k copies of the design, λ = k):
  β̂_t = (β̂_real + k β̂_{t−1} + Σ_j u_{t,j})/(1+k), so c_t = 1 + k(1 − a^{2t})/(1 + 2k) with
  a = k/(1+k): bounded by 1 + λ/(1+2λ), the exponential-family stationary law again.
* ``accumulate``, real data kept, λ = 1 (Gerstgrasser et al.): β̂_t is the OLS fit of t+1
  stacked copies, δ_t = δ_{t−1} + u_t/(t+1), so c_t = Σ_{k=1}^{t+1} 1/k² < π²/6 — bounded.
* ``accumulate``, fully synthetic (the pool only): c_0 = 1, c_t = 1 + Σ_{k=1}^{t} 1/k².

Gaussian design averaged (rows N(0, Σ), n > d+1): E[τ] = d/(n − d − 1) (the inverse-Wishart
mean), giving Dohmatob et al.'s E_t = σ² d (t+1)/(n − d − 1) for replace. With fresh
features each generation (``design="fresh"``, x ~ N(0, S), S = X_0ᵀX_0/n):
E_t = σ² d/(n−d−1) · (1 + t n/(n−d−1)).

Ridge (α > 0) and any λ/scheme with a fixed design: :func:`linear_loop_excess_risk` tracks β̂_t
as an exact affine function of β* and of the independent noise vectors z_s = Xᵀε_s, which gives
E_t exactly (bias and variance) for any α; it reproduces the OLS closed forms above.
"""

from __future__ import annotations

import math

import numpy as np

from genloop.errors import ConfigError
from genloop.loop.schemes import parse_lambda

__all__ = [
    "ols_excess_factor",
    "ols_excess_risk",
    "gaussian_design_trace",
    "fresh_design_excess_risk",
    "linear_loop_excess_risk",
]


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _copies(lam: float) -> int | None:
    """k = λ for an integer λ, None for λ = ∞; other λ do not repeat the design whole."""
    if math.isinf(lam):
        return None
    if lam != int(lam):
        raise ConfigError(f"with a fixed design the closed forms need an integer lambda (copies of the design), got {lam}")
    return int(lam)


def ols_excess_factor(scheme: str, lam: float | str, generations: int) -> np.ndarray:
    """c_t, t = 0 … generations, with E_t = σ² tr(Σ(XᵀX)⁻¹) c_t (OLS, fixed design; module doc)."""
    lam = parse_lambda(lam)
    generations = _int(generations, "generations", 0)
    t = np.arange(generations + 1, dtype=np.float64)
    k = _copies(lam)
    if scheme == "replace":
        if k is None:
            return t + 1.0
        if k == 0:
            return np.ones_like(t)
        a = k / (1.0 + k)
        return 1.0 + k * (1.0 - a ** (2 * t)) / (1.0 + 2 * k)
    if scheme == "accumulate":
        inv_sq = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, generations + 2) ** 2)])
        if k is None:
            return 1.0 + inv_sq[: generations + 1]
        if k == 1:
            return inv_sq[1 : generations + 2]
        raise ConfigError("the accumulate closed form is for lambda = 1 or inf; use linear_loop_excess_risk")
    raise ConfigError(f"closed forms exist for schemes 'replace' and 'accumulate', got {scheme!r}")


def gaussian_design_trace(n: int, d: int) -> float:
    """E[tr(Σ(XᵀX)⁻¹)] = d/(n − d − 1) for n i.i.d. rows N(0, Σ) (needs n > d + 1)."""
    n, d = _int(n, "n", 1), _int(d, "d", 1)
    if n <= d + 1:
        raise ConfigError(f"the Gaussian-design mean needs n > d + 1, got n={n}, d={d}")
    return d / (n - d - 1)


def ols_excess_risk(sigma2: float, n: int, d: int, generations: int, *, scheme: str = "replace", lam: float | str = "inf") -> np.ndarray:
    """E_t averaged over a Gaussian design: σ² d/(n−d−1) c_t (replace, λ = ∞: σ² d (t+1)/(n−d−1))."""
    return float(sigma2) * gaussian_design_trace(n, d) * ols_excess_factor(scheme, lam, generations)


def fresh_design_excess_risk(sigma2: float, n: int, d: int, generations: int) -> np.ndarray:
    """E_t = σ² d/(n−d−1) (1 + t n/(n−d−1)): replace, fully synthetic, fresh features N(0, S)."""
    base = gaussian_design_trace(n, d)
    t = np.arange(_int(generations, "generations", 0) + 1, dtype=np.float64)
    return float(sigma2) * base * (1.0 + t * n / (n - d - 1))


def linear_loop_excess_risk(
    X: np.ndarray,
    beta: np.ndarray,
    sigma2: float,
    generations: int,
    *,
    alpha: float = 0.0,
    lam: float | str = "inf",
    scheme: str = "replace",
    cov: np.ndarray | None = None,
) -> np.ndarray:
    """Exact E_t (t = 0 … generations) for OLS/ridge with a fixed design ``X`` (n, d), conditional on X.

    Each training set is made of blocks of the design: the real block (labels Xβ* + ε) unless
    λ = ∞, and synthetic blocks (labels Xβ̂_s + ε): k = λ of them from the latest model
    (``replace``), or all of them so far (``accumulate``). β̂_t = (b XᵀX + αI)⁻¹ Σ_blocks
    (XᵀX β̂_src + z_block) with b blocks, z = Xᵀε ~ N(0, σ² XᵀX); β̂_t = A_t β* + Σ_i B_{t,i} z_i
    is tracked exactly and E_t = ‖Σ^{1/2}(A_t − I)β*‖² + σ² Σ_i tr(Σ B_{t,i} XᵀX B_{t,i}ᵀ).
    """
    X = np.asarray(X, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    n, d = X.shape
    generations = _int(generations, "generations", 0)
    lam = parse_lambda(lam)
    k = 1 if math.isinf(lam) else _copies(lam)
    if scheme not in ("replace", "accumulate"):
        raise ConfigError(f"scheme must be 'replace' or 'accumulate', got {scheme!r}")
    cov = np.eye(d) if cov is None else np.asarray(cov, dtype=np.float64)
    G = X.T @ X
    eye = np.eye(d)
    real = not math.isinf(lam)

    def solve(blocks: int, rhs: np.ndarray) -> np.ndarray:
        return np.linalg.solve(blocks * G + alpha * eye, rhs)

    # an affine form: (A, {noise index: B}); noise index 0 is the real block's
    fits: list[tuple[np.ndarray, dict[int, np.ndarray]]] = [(solve(1, G), {0: solve(1, eye)})]
    synthetic: list[tuple[tuple[np.ndarray, dict[int, np.ndarray]], int]] = []  # (source fit, noise index)
    next_noise = 1

    def risk(fit: tuple[np.ndarray, dict[int, np.ndarray]]) -> float:
        A, Bs = fit
        bias = (A - eye) @ beta
        var = sum(np.trace(cov @ B @ G @ B.T) for B in Bs.values())
        return float(bias @ cov @ bias + sigma2 * var)

    out = [risk(fits[0])]
    for _ in range(generations):
        prev = fits[-1]
        new = [(prev, next_noise + j) for j in range(k)]
        next_noise += k
        synthetic = synthetic + new if scheme == "accumulate" else new
        blocks = list(synthetic)
        A = np.zeros((d, d))
        Bs: dict[int, np.ndarray] = {}
        if real:
            A = A + G  # real block: XᵀX β* + z_0
            Bs[0] = eye.copy()
        for (src_A, src_B), idx in blocks:
            A = A + G @ src_A
            for i, B in src_B.items():
                Bs[i] = Bs.get(i, np.zeros((d, d))) + G @ B
            Bs[idx] = Bs.get(idx, np.zeros((d, d))) + eye
        b = len(blocks) + (1 if real else 0)
        fit = (solve(b, A), {i: solve(b, B) for i, B in Bs.items()})
        fits.append(fit)
        out.append(risk(fit))
    return np.asarray(out)
