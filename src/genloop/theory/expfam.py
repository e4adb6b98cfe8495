"""Mixed retraining of exponential families (DESIGN.md §2.2, refining the paper's Theorems 1-2).

For an exponential family p_η(x) ∝ h(x) exp(<θ(η), T(x)>) fitted by maximum likelihood, the
fit is moment matching in the *mean parameters* η = E_p[T(x)]: the fitted η is the (weighted)
average of T over the training set. In the paper's replace scheme (Algorithm 1: n real samples
kept, m = ⌊λn⌋ fresh synthetic samples from the previous model each generation)

    η_{t+1} = (n T̄_real + m T̄_synth,t) / (n + m),     T̄_synth,t = mean of T over m draws of p_{η_t}.

Infinite samples (m/n = λ exactly): η_{t+1} = (η_data + λ η_t)/(1+λ), a contraction with rate
exactly λ/(1+λ) < 1 for every finite λ, fixed point η_data (moment matching of the real data).
This is the exponential-family case A = B of the exact Jacobian J = λ(A + λB)^{-1}B (see
:mod:`genloop.theory.jacobian`), and it shows the paper's Theorem 1 condition λ(1+Lε/α) < 1/2
(here ε = 0 for a well-specified family) is sufficient but not necessary.

Finite samples. Write e_t = η_t - η_real with η_real = T̄_real (the generation-0 fit) and
a = m/(n+m). Then e_{t+1} = a (e_t + ξ_t) with E[ξ_t | η_t] = 0 (an unbiased mean of T) and
Cov[ξ_t | η_t] = Cov_{η_t}(T)/m. Hence, *exactly*, E[e_t] = a^t e_0 and

    Cov(e_{t+1}) = a² Cov(e_t) + (a²/m) E[Cov_{η_t}(T)].

* Constant Cov(T) (a Gaussian mean with known covariance s²): the stationary covariance is
  a² s²/(m(1-a²)) = m s² / (n(n+2m)), and from e_0 = 0, Cov(e_t) = (1 - a^{2t}) of it.
  With m = λn this is λ/(n(1+2λ)) s², the formula of DESIGN.md §2.2.
* Gaussian with mean and covariance fitted by MLE (genloop's ``gaussian`` model, estimator
  ``"mle"``): E[Σ_t] = Σ_real - Cov(μ_t) exactly (the second moment is a mean parameter too),
  so C_{t+1} = b C_t + (a²/m) Σ_real with b = a²(1 - 1/m): C_∞ = m Σ_real/(n(n+2m) + m) and
  C_t = (1 - b^t) C_∞ from C_0 = 0 — exact for every finite n and m.
* General family: Cov_{η_t}(T) ≈ Cov_{η_real}(T) to first order, giving
  ≈ m/(n(n+2m)) Cov(T) ≈ λ/(n(1+2λ)) Cov(T). It stays bounded (≤ Cov(T)/(2n)) as λ grows.

Fully synthetic (λ = ∞, n draws of the previous model, no real data): e_t is a martingale,
Cov(μ_t - μ_0) = Σ_{s<t} E[Σ_s]/n: ``t s²/n`` with known variance (a random walk, variance
growing without bound), ``Σ_0 t/n`` for the unbiased Gaussian and
``Σ_0 (1 - ((n-1)/n)^t)`` for the MLE Gaussian (whose covariance itself collapses).
"""

from __future__ import annotations

import math

import numpy as np

from genloop.errors import ConfigError
from genloop.loop.schemes import parse_lambda as _check_lam
from genloop.loop.schemes import synthetic_count
from genloop.theory.gaussian import Estimator, expected_covariance_ratio

__all__ = [
    "expfam_rate",
    "expfam_mean_trajectory",
    "synthetic_count",
    "replace_contraction",
    "known_variance_mean_variance",
    "gaussian_mle_mean_covariance",
    "stationary_covariance_approx",
    "fully_synthetic_mean_covariance",
]


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def expfam_rate(lam: float) -> float:
    """Contraction rate λ/(1+λ) of the infinite-sample mean-parameter recursion (1 at λ = ∞)."""
    lam = _check_lam(lam)
    return 1.0 if math.isinf(lam) else lam / (1.0 + lam)


def expfam_mean_trajectory(eta_data: np.ndarray, eta_0: np.ndarray, lam: float, generations: int) -> np.ndarray:
    """η_t = η_data + (λ/(1+λ))^t (η_0 - η_data) for t = 0..generations, shape (generations+1, p).

    The solution of η_{t+1} = (η_data + λ η_t)/(1+λ) (infinite samples). With finite samples it
    is also exactly E[η_t] when the ratio m/n equals λ (see :func:`replace_contraction`).
    """
    generations = _check_count(generations, "generations", 0)
    eta_data = np.atleast_1d(np.asarray(eta_data, dtype=np.float64))
    eta_0 = np.atleast_1d(np.asarray(eta_0, dtype=np.float64))
    rate = expfam_rate(lam)
    powers = rate ** np.arange(generations + 1)
    return eta_data[None, :] + powers[:, None] * (eta_0 - eta_data)[None, :]


def replace_contraction(n: int, lam: float) -> float:
    """a = m/(n+m) with m = ⌊λn⌋: the exact per-generation factor of E[η_t - η_real].

    Equals λ/(1+λ) when λn is an integer; 1 when λ = ∞ (no real data, no pull back).
    """
    lam = _check_lam(lam)
    if math.isinf(lam):
        return 1.0
    m = synthetic_count(lam, n)
    return m / (n + m)


def known_variance_mean_variance(n: int, m: int, s2: float, t: int | None = None) -> float:
    """Var(μ_t - μ_real) for a Gaussian mean fitted with known variance ``s2`` (replace scheme).

    Exact: stationary value m s²/(n(n+2m)) (t = None), or (1 - a^{2t}) times it from μ_0 = μ_real
    with a = m/(n+m). With m = λn: λ s²/(n(1+2λ)).
    """
    n = _check_count(n, "n", 1)
    m = _check_count(m, "m", 0)
    stationary = m * s2 / (n * (n + 2 * m))
    if t is None:
        return float(stationary)
    t = _check_count(t, "t", 0)
    a = m / (n + m)
    return float(stationary * (1.0 - a ** (2 * t)))


def gaussian_mle_mean_covariance(n: int, m: int, cov_real: np.ndarray, t: int | None = None) -> np.ndarray:
    """Cov(μ_t - μ_real) for the MLE Gaussian (mean and covariance fitted), replace scheme.

    Exact for finite n, m: C_∞ = m Σ_real/(n(n+2m) + m) (t = None) and C_t = (1 - b^t) C_∞ with
    b = (m/(n+m))² (1 - 1/m), from generation 0 fitted on the n real samples. ``cov_real`` is
    the MLE covariance of the real data (divide by n).
    """
    n = _check_count(n, "n", 1)
    m = _check_count(m, "m", 0)
    cov_real = np.atleast_2d(np.asarray(cov_real, dtype=np.float64))
    if m == 0:
        return np.zeros_like(cov_real)
    stationary = m * cov_real / (n * (n + 2 * m) + m)
    if t is None:
        return stationary
    t = _check_count(t, "t", 0)
    b = (m / (n + m)) ** 2 * (1.0 - 1.0 / m)
    return stationary * (1.0 - b**t)


def stationary_covariance_approx(lam: float, n: int, cov_T: np.ndarray) -> np.ndarray:
    """λ/(n(1+2λ)) Cov(T(x)): first-order stationary covariance of the fitted mean parameter
    around the real-data fit (replace scheme, m = λn). Infinite at λ = ∞ (no stationary law)."""
    lam = _check_lam(lam)
    n = _check_count(n, "n", 1)
    cov_T = np.atleast_2d(np.asarray(cov_T, dtype=np.float64))
    if math.isinf(lam):
        return np.full_like(cov_T, np.inf)
    return lam / (n * (1.0 + 2.0 * lam)) * cov_T


def fully_synthetic_mean_covariance(
    n: int, t: int, cov_0: np.ndarray, estimator: Estimator | None = None
) -> np.ndarray:
    """Cov(μ_t - μ_0) when refitting on n own samples only (λ = ∞), exact.

    ``estimator=None``: known covariance, t Σ_0/n (a random walk). ``"unbiased"``: also t Σ_0/n
    (E[Σ_s] = Σ_0). ``"mle"``: Σ_0 (1 - ((n-1)/n)^t) since E[Σ_s] = ((n-1)/n)^s Σ_0.
    """
    n = _check_count(n, "n", 2)
    t = _check_count(t, "t", 0)
    cov_0 = np.atleast_2d(np.asarray(cov_0, dtype=np.float64))
    if estimator is None:
        total = float(t)
    else:
        r = expected_covariance_ratio(n, 1, estimator)
        total = float(t) if r == 1.0 else (1.0 - r**t) / (1.0 - r)
    return total * cov_0 / n
