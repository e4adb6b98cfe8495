"""Gaussian collapse under fully synthetic retraining (Bertrand et al. 2024, Section 2.2).

Setting: generation t+1 refits a d-dimensional Gaussian (mean and covariance estimated) to
``n`` samples of generation t and nothing else (λ = ∞). With ``S`` the scatter matrix of the
``n`` samples around their own mean, ``S ~ Wishart_d(n-1, Σ_t)`` and the refitted covariance is
``Σ_{t+1} = S / c`` with ``c = n`` for the maximum-likelihood estimator (``"mle"``, divide by n)
and ``c = n - 1`` for the unbiased one (``"unbiased"``). Everything below follows from two
classical facts:

* ``E[S] = (n-1) Σ_t``, so ``E[Σ_t] = ((n-1)/c)^t Σ_0`` (``Σ_0`` is the generation-0 fit).
* Bartlett's decomposition: ``det S = det Σ_t · Π_{i=1}^{d} χ²_{n-i}`` with independent
  chi-squares, so ``log det Σ_t - log det Σ_0`` is a sum of ``t·d`` independent terms
  ``log(χ²_{n-i}/c)``: a random walk with negative drift (collapse, σ_t → 0 a.s.).

For d = 1 this is the paper's statement ``E[σ_t] = c4(n)^t σ_0`` (unbiased) and
``c4(n)^t ((n-1)/n)^{t/2} σ_0`` (MLE) with ``σ_t/σ_0 = exp(S_t/2)``.

The distribution of the random walk is computed without Monte Carlo: its characteristic
function is known in closed form (``E[(χ²_k)^{iu}] = 2^{iu} Γ(k/2+iu)/Γ(k/2)``), and the CDF is
obtained by the Gil-Pelaez inversion formula with a composite Gauss-Legendre rule (absolute
CDF error below about 1e-9, checked in the tests against the exact chi-square law at t = 1).
``method="normal"`` gives the central-limit approximation from the exact mean and variance
(digamma / trigamma), accurate when ``t·d`` is large or ``n`` is large.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

from genloop.errors import ConfigError

Estimator = Literal["mle", "unbiased"]
Method = Literal["exact", "normal"]

__all__ = [
    "c4",
    "expected_sigma_ratio",
    "expected_covariance_ratio",
    "generalized_variance_moment",
    "log_generalized_variance_moments",
    "log_generalized_variance_cdf",
    "log_generalized_variance_quantile",
    "log_sigma_moments",
    "sigma_ratio_cdf",
    "sigma_ratio_quantile",
    "sigma_ratio_band",
]


# ---- input checks -------------------------------------------------------------------------
def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _divisor(n: int, estimator: str) -> int:
    if estimator == "mle":
        return n
    if estimator == "unbiased":
        return n - 1
    raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")


def _check(n: object, t: object, d: object = 1) -> tuple[int, int, int]:
    d = _check_int(d, "d (dimension)", 1)
    n = _check_int(n, "n (samples per generation)", d + 1)
    t = _check_int(t, "t (generation)", 0)
    return n, t, d


# ---- the paper's c4 and the expected standard deviation ------------------------------------
def c4(n: int) -> float:
    """c4(n) = sqrt(2/(n-1)) Γ(n/2) / Γ((n-1)/2) = E[s]/σ for the unbiased sample sd.

    Paper, Section 2.2 (Gaussian collapse). The ratio of gammas is the Pochhammer symbol
    ``poch((n-1)/2, 1/2)``, which stays accurate to full precision for very large n
    (c4(n) = 1 - 1/(4n) - 7/(32 n^2) + O(n^-3)), where a difference of ``gammaln`` would lose
    about 8 digits at n = 10^7.
    """
    n = _check_int(n, "n", 2)
    return float(math.sqrt(2.0 / (n - 1)) * special.poch((n - 1) / 2, 0.5))


def expected_sigma_ratio(n: int, t: int, estimator: Estimator = "unbiased") -> float:
    """E[σ_t]/σ_0 in 1-D: ``c4(n)^t`` (unbiased) or ``c4(n)^t ((n-1)/n)^{t/2}`` (MLE).

    Paper, Section 2.2: σ_{t+1} = σ_t · sqrt(χ²_{n-1}/c) with independent factors and
    E[sqrt(χ²_{n-1}/(n-1))] = c4(n).
    """
    n, t, _ = _check(n, t)
    c = _divisor(n, estimator)
    log_factor = math.log(c4(n)) + 0.5 * math.log((n - 1) / c)
    return float(math.exp(t * log_factor))


def expected_covariance_ratio(n: int, t: int, estimator: Estimator = "mle") -> float:
    """The scalar r with E[Σ_t] = r Σ_0: ``((n-1)/n)^t`` (MLE) or 1 (unbiased), any d.

    Refines the paper's Section 2.2 to d dimensions with an estimated mean:
    E[Σ_{t+1} | Σ_t] = E[Wishart_d(n-1, Σ_t)]/c = ((n-1)/c) Σ_t.
    """
    n, t, _ = _check(n, t)
    c = _divisor(n, estimator)
    return float(((n - 1) / c) ** t)


def generalized_variance_moment(n: int, d: int, t: int, estimator: Estimator = "mle", r: float = 1.0) -> float:
    """E[(det Σ_t / det Σ_0)^r] = (Π_{i=1}^d (2/c)^r Γ((n-i)/2 + r)/Γ((n-i)/2))^t.

    From Bartlett's decomposition (det of a Wishart is a product of independent chi-squares)
    and E[(χ²_k)^r] = 2^r Γ(k/2+r)/Γ(k/2); r = 1 gives the generalised variance, r = 1/2 its
    square root (for d = 1, r = 1/2 is :func:`expected_sigma_ratio`). Requires (n-d)/2 + r > 0.
    """
    n, t, d = _check(n, t, d)
    c = _divisor(n, estimator)
    k = n - np.arange(1, d + 1)
    if np.any(k / 2 + r <= 0):
        raise ConfigError(f"E[det^r] is infinite for r={r} with n={n}, d={d}: need (n-d)/2 + r > 0")
    log_step = np.sum(r * math.log(2.0 / c) + np.log(special.poch(k / 2, r)))
    return float(np.exp(t * log_step))


# ---- the random walk of log det Σ_t ---------------------------------------------------------
def log_generalized_variance_moments(n: int, d: int, t: int, estimator: Estimator = "mle") -> tuple[float, float]:
    """Mean and variance of log(det Σ_t / det Σ_0) = Σ_{s<t} Σ_{i=1}^d log(χ²_{n-i}/c).

    E[log χ²_k] = ψ(k/2) + log 2 and Var[log χ²_k] = ψ'(k/2) (digamma, trigamma), so the drift
    per generation Σ_i ψ((n-i)/2) + log(2/c) is negative (Jensen): collapse (Section 2.2).
    """
    n, t, d = _check(n, t, d)
    c = _divisor(n, estimator)
    k = n - np.arange(1, d + 1)
    mean = t * float(np.sum(special.digamma(k / 2) + math.log(2.0 / c)))
    var = t * float(np.sum(special.polygamma(1, k / 2)))
    return mean, var


def log_sigma_moments(n: int, t: int, estimator: Estimator = "unbiased") -> tuple[float, float]:
    """Mean and variance of log(σ_t/σ_0) in 1-D (half the d = 1 log generalised variance)."""
    mean, var = log_generalized_variance_moments(n, 1, t, estimator)
    return 0.5 * mean, 0.25 * var


def _log_cf_step(u: np.ndarray, n: int, d: int, c: int) -> np.ndarray:
    """log of the characteristic function of one generation's increment at real u."""
    k = (n - np.arange(1, d + 1)).astype(np.float64)
    out = np.zeros(u.shape, dtype=np.complex128)
    for ki in k:
        out += 1j * u * math.log(2.0 / c) + special.loggamma(ki / 2 + 1j * u) - special.gammaln(ki / 2)
    return out


# Gauss-Legendre nodes on [0, 1], reused by every panel of the Gil-Pelaez integral.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)
_GL_X = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W


def _gil_pelaez_cdf(z: np.ndarray, n: int, d: int, t: int, c: int, mean: float, sd: float) -> np.ndarray:
    """P(Z <= z) for the standardised walk Z = (S_t - mean)/sd by Gil-Pelaez inversion:
    F(z) = 1/2 - (1/π) ∫_0^∞ Im[e^{-ivz} ψ(v)]/v dv, ψ the CF of Z."""

    def log_psi(v: np.ndarray) -> np.ndarray:
        return t * _log_cf_step(v / sd, n, d, c) - 1j * v * mean / sd

    # Integrate until |ψ| < e^-40 (it decays at least exponentially: |Γ(a+iu)| ~ e^{-π|u|/2}).
    vmax = 8.0
    while np.real(log_psi(np.array([vmax])))[0] > -40.0 and vmax < 1e6:
        vmax *= 1.5
    panels = max(64, int(math.ceil(vmax * (1.0 + float(np.max(np.abs(z)))) / 0.5)))
    edges = np.linspace(0.0, vmax, panels + 1)
    width = np.diff(edges)
    v = (edges[:-1, None] + width[:, None] * _GL_X[None, :]).ravel()
    w = (width[:, None] * _GL_W[None, :]).ravel()
    lp = log_psi(v)
    # Im[e^{-ivz + log ψ}] / v for every z (rows) and node (columns).
    integrand = np.imag(np.exp(lp[None, :] - 1j * np.outer(z, v))) / v[None, :]
    cdf = 0.5 - (integrand @ w) / math.pi
    return np.clip(cdf, 0.0, 1.0)


def log_generalized_variance_cdf(
    x: float | np.ndarray, n: int, d: int, t: int, estimator: Estimator = "mle", method: Method = "exact"
) -> np.ndarray:
    """P(log(det Σ_t/det Σ_0) <= x), exactly (Gil-Pelaez) or by the normal approximation.

    At t = 0 the ratio is 1 (a step at 0). Refines the paper's Section 2.2 collapse statement
    (σ_t → 0 a.s.) to the full law at every generation.
    """
    n, t, d = _check(n, t, d)
    c = _divisor(n, estimator)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if t == 0:
        return (x >= 0).astype(np.float64)
    mean, var = log_generalized_variance_moments(n, d, t, estimator)
    sd = math.sqrt(var)
    z = (x - mean) / sd
    if method == "normal":
        return stats.norm.cdf(z)
    if method != "exact":
        raise ConfigError(f"method must be 'exact' or 'normal', got {method!r}")
    out = np.empty_like(z)
    # Far tails of the standardised walk: clip (their probability is below about 1e-15).
    far_lo, far_hi = z < -60, z > 60
    out[far_lo], out[far_hi] = 0.0, 1.0
    mid = ~(far_lo | far_hi)
    if np.any(mid):
        out[mid] = _gil_pelaez_cdf(z[mid], n, d, t, c, mean, sd)
    return out


def log_generalized_variance_quantile(
    q: float, n: int, d: int, t: int, estimator: Estimator = "mle", method: Method = "exact"
) -> float:
    """The q-quantile of log(det Σ_t/det Σ_0) (root of :func:`log_generalized_variance_cdf`)."""
    if not (0.0 < q < 1.0):
        raise ConfigError(f"quantile level q must be in (0, 1), got {q!r}")
    n, t, d = _check(n, t, d)
    if t == 0:
        return 0.0
    mean, var = log_generalized_variance_moments(n, d, t, estimator)
    sd = math.sqrt(var)
    if method == "normal":
        return float(mean + sd * stats.norm.ppf(q))
    if method != "exact":
        raise ConfigError(f"method must be 'exact' or 'normal', got {method!r}")
    if t == 1 and d == 1:  # exact chi-square law
        c = _divisor(n, estimator)
        return float(math.log(stats.chi2.ppf(q, n - 1) / c))

    def f(x: float) -> float:
        return float(log_generalized_variance_cdf(x, n, d, t, estimator)[0]) - q

    lo, hi = mean - 8 * sd, mean + 8 * sd
    while f(lo) > 0:
        lo -= 8 * sd
    while f(hi) < 0:
        hi += 8 * sd
    return float(optimize.brentq(f, lo, hi, xtol=1e-12 * max(1.0, abs(mean)), rtol=1e-12))


def sigma_ratio_cdf(
    r: float | np.ndarray, n: int, t: int, estimator: Estimator = "unbiased", method: Method = "exact"
) -> np.ndarray:
    """P(σ_t/σ_0 <= r) in 1-D (σ_t/σ_0 = exp of half the d = 1 log generalised variance)."""
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    if np.any(r <= 0):
        raise ConfigError("sigma ratio r must be > 0")
    return log_generalized_variance_cdf(2.0 * np.log(r), n, 1, t, estimator, method)


def sigma_ratio_quantile(
    q: float, n: int, t: int, estimator: Estimator = "unbiased", method: Method = "exact"
) -> float:
    """The q-quantile of σ_t/σ_0 in 1-D (q = 0.5: the median, exp(t·E[log factor]) only
    approximately)."""
    return float(math.exp(0.5 * log_generalized_variance_quantile(q, n, 1, t, estimator, method)))


def sigma_ratio_band(
    n: int, t: int, estimator: Estimator = "unbiased", level: float = 0.9, method: Method = "exact"
) -> tuple[float, float, float]:
    """(lower, median, upper) of σ_t/σ_0: the central probability band of mass ``level``."""
    if not (0.0 < level < 1.0):
        raise ConfigError(f"band level must be in (0, 1), got {level!r}")
    a = (1.0 - level) / 2
    return (
        sigma_ratio_quantile(a, n, t, estimator, method),
        sigma_ratio_quantile(0.5, n, t, estimator, method),
        sigma_ratio_quantile(1.0 - a, n, t, estimator, method),
    )
