"""The retraining map of a *pooled-frequency* learner: every fit is an average over its training set.

Categorical frequencies, the transition rows of a bigram model, the mean of a Gaussian and OLS
with a fixed design (per copy of the design) all fit θ̂ = the average of a per-sample statistic
over the training set. Write δ_t = θ̂_t − θ for generation t's error, in units where the fit of
the n real samples has Var(δ_0) = 1 (e.g. Σ/N for N counts of a categorical row), and let
s = m/n (λ_eff; m = ⌊λn⌋ synthetic samples, s = 1 and no real data for λ = ∞). To first order
in 1/N (the synthetic noise of generation t has the covariance of the *true* law, not of θ̂_t:
the correction is O(1/N) relative) the schemes give

* ``replace`` (Bertrand et al. 2024): δ_t = (1−a) δ_real + a (δ_{t−1} + η_t), a = s/(1+s),
  Var η_t = 1/s; with w_t = Var(δ_t − δ_real): w_t = a² (w_{t−1} + 1/s), so
  c_t = Var(δ_t) = 1 + s (1 − a^{2t})/(1 + 2s) → 1 + s/(1+2s) (4/3 at λ = 1).
  λ = ∞: a = 1, c_t = t + 1 (a random walk).
* ``fresh`` (Alemohammad et al. 2023): new real data each generation,
  δ_t = (1−a) ε_t + a (δ_{t−1} + η_t), c_t = (1−a)² + a² (c_{t−1} + 1/s) → (1+s)/(1+2s).
* ``accumulate`` (Gerstgrasser et al. 2024): the pool keeps the real set (r = 1; r = 0 for
  λ = ∞) and every synthetic set, δ_t = [r δ_real + s Σ_{j≤t} (δ_{j−1} + η_j)]/(r + t s);
  at λ = 1 c_t = Σ_{k=1}^{t+1} 1/k² < π²/6, at λ = ∞ c_t = 1 + Σ_{k=1}^{t} 1/k² (the laws of
  :func:`genloop.theory.regression.ols_excess_factor`, which this generalises to any λ).

The one-step map of the error is δ ↦ a δ (+ noise) for replace and fresh: the learner contracts
at :func:`pooled_rate` = m/(n+m) per generation. Any quadratic loss of the error (squared
distance, the second-order expansion of a KL divergence) then scales by c_t.
"""

from __future__ import annotations

import math

import numpy as np

from genloop.errors import ConfigError

__all__ = ["POOLED_SCHEMES", "pooled_rate", "pooled_stationary_factor", "pooled_variance_factor"]

#: Schemes with a pooled-frequency law (``accumulate-subsample`` draws a random subset: no law here).
POOLED_SCHEMES: tuple[str, ...] = ("replace", "accumulate", "fresh")


def _check(n: int, m: int, generations: int, scheme: str) -> None:
    if scheme not in POOLED_SCHEMES:
        raise ConfigError(f"pooled-frequency laws exist for schemes {', '.join(POOLED_SCHEMES)}, got {scheme!r}")
    for name, value, low in (("n", n, 1), ("m", m, 0), ("generations", generations, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def pooled_rate(n: int, m: int, fully_synthetic: bool = False) -> float:
    """a = m/(n+m): the factor by which one generation shrinks an error of the previous model
    (1 for λ = ∞, 0 without synthetic data)."""
    if fully_synthetic:
        return 1.0
    return m / (n + m) if n + m > 0 else 0.0


def pooled_variance_factor(n: int, m: int, generations: int, *, scheme: str = "replace",
                           fully_synthetic: bool = False) -> np.ndarray:
    """c_t = Var(θ̂_t − θ)/Var(θ̂_0 − θ) for t = 0 … ``generations`` (module docstring).

    ``n`` real samples per generation, ``m`` synthetic ones (``fully_synthetic``: λ = ∞, the
    loop draws m = n and keeps no real data). First order in 1/N.
    """
    _check(n, m, generations, scheme)
    T = int(generations)
    if fully_synthetic:
        m = n
    s = m / n
    if m == 0:
        return np.ones(T + 1)
    a = pooled_rate(n, m, fully_synthetic)
    c = np.empty(T + 1)
    c[0] = 1.0
    if scheme == "replace":
        w = 0.0
        for t in range(1, T + 1):
            w = a * a * (w + 1.0 / s)
            c[t] = 1.0 + w
        return c
    if scheme == "fresh":
        for t in range(1, T + 1):
            c[t] = (1.0 - a) ** 2 + a * a * (c[t - 1] + 1.0 / s)
        return c
    # accumulate: δ_t = α_t δ_real + Σ_j β_{t,j} η_j, tracked exactly (independent sources)
    r = 0.0 if fully_synthetic else 1.0
    alpha, beta = 1.0, np.zeros(T + 1)  # δ_{t-1} = alpha δ_real + beta · η (η_j, j >= 1)
    sum_alpha, sum_beta = 0.0, np.zeros(T + 1)
    for t in range(1, T + 1):
        sum_alpha += alpha
        sum_beta += beta
        sum_beta[t] += 1.0
        denom = r + t * s
        alpha, beta = (r + s * sum_alpha) / denom, s * sum_beta / denom
        c[t] = alpha**2 + float(beta @ beta) / s
    return c


def pooled_stationary_factor(n: int, m: int, *, scheme: str = "replace", fully_synthetic: bool = False) -> float:
    """lim_t c_t: 1 + s/(1+2s) (replace), (1+s)/(1+2s) (fresh), inf at λ = ∞ (replace, fresh) —
    accumulate's limit is approached slowly and is computed at t = 2000 (finite for λ < ∞)."""
    _check(n, m, 0, scheme)
    if fully_synthetic and scheme in ("replace", "fresh"):
        return math.inf
    s = m / n
    if scheme == "replace":
        return 1.0 + s / (1.0 + 2.0 * s)
    if scheme == "fresh":
        return (1.0 + s) / (1.0 + 2.0 * s)
    return float(pooled_variance_factor(n, m, 2000, scheme=scheme, fully_synthetic=fully_synthetic)[-1])
