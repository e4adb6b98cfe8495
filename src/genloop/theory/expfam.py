"""Mixed retraining of exponential families (docs/theory.md; refining the paper's Theorems 1-2).

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
  With m = λn this is λ/(n(1+2λ)) s², the first-order formula (docs/theory.md).
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
    "GAUSSIAN_SCHEMES",
    "gaussian_scheme_moments",
    "gaussian_variance_ratio_draws",
    "mean_offset_factor",
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


# ---- every scheme and estimator of the registered Gaussian (exact moment recursions) --------------
GAUSSIAN_SCHEMES: tuple[str, ...] = ("replace", "accumulate", "fresh")


def gaussian_scheme_moments(
    n: int,
    lam: float,
    cov: np.ndarray,
    generations: int,
    *,
    scheme: str = "replace",
    estimator: Estimator = "mle",
    reg_covar: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(C_t, V_t), t = 0..generations, for genloop's ``gaussian`` model in any of
    :data:`GAUSSIAN_SCHEMES`: C_t = E[(μ_t − μ_ref)(μ_t − μ_ref)ᵀ], V_t = E[Σ_t]. Exact.

    ``cov`` is Σ_ref: the divide-by-n covariance of the fixed real set (``replace``,
    ``accumulate``; μ_ref = its mean) or the population covariance of the data source
    (``fresh``; μ_ref = the population mean, and generation 0 is a fit of n fresh draws).
    Only second moments enter, so the laws hold for any data distribution. With N_t the
    training size, s_t = N_t/(N_t − 1) (unbiased) or 1 (MLE), R = ``reg_covar``·I, working
    relative to μ_ref (docs/theory.md §2):

    * ``replace`` (n real + m = ⌊λn⌋ fresh synthetic): μ_{t+1} = (m/N)(μ_t + ξ_t),
      Cov ξ_t = V_t/m, so C_{t+1} = (m/N)²(C_t + V_t/m) and, from the second moments,
      V_{t+1} = s[(nΣ + m(V_t + C_t))/N − C_{t+1}] + R.
    * ``accumulate`` (n real + all t synthetic sets, N_t = n + tm): with S_t the sum of the set
      means, S_t = (1 + m/N_{t−1}) S_{t−1} + ξ_t, so K_t = Cov S_t obeys
      K_t = (1 + m/N_{t−1})² K_{t−1} + V_{t−1}/m, C_t = (m/N_t)² K_t and
      V_t = s_t[(nΣ + mΣ_{j<t}(V_j + C_j))/N_t − C_t] + R.
    * ``fresh`` (n new real draws + m synthetic): C_{t+1} = (nΣ + m²C_t + mV_t)/N²,
      V_{t+1} = s[(nΣ + m(V_t + C_t))/N − C_{t+1}] + R, from C_0 = Σ/n.

    λ = ∞ (no real data, n synthetic samples per set) is the same with no real term. The
    ``accumulate-subsample`` scheme has no closed law here (``ConfigError``).
    """
    from genloop.theory.gaussian import _check_int

    generations = _check_int(generations, "generations", 0)
    n = _check_count(n, "n", 2)
    lam = _check_lam(lam)
    if scheme not in GAUSSIAN_SCHEMES:
        raise ConfigError(f"no exact Gaussian law for scheme {scheme!r}; known: {', '.join(GAUSSIAN_SCHEMES)}")
    if estimator not in ("mle", "unbiased"):
        raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    d = cov.shape[0]
    R = float(reg_covar) * np.eye(d)

    def s(N: int) -> float:
        return N / (N - 1) if estimator == "unbiased" else 1.0

    n_real = 0 if math.isinf(lam) else n
    m = synthetic_count(lam, n)
    C = np.zeros((generations + 1, d, d))
    V = np.zeros((generations + 1, d, d))
    if scheme == "fresh":
        C[0] = cov / n
        V[0] = s(n) * (n - 1) / n * cov + R
    else:
        V[0] = s(n) * cov + R
    if m == 0:  # no synthetic data: every generation is generation 0 again (fresh: new draws)
        C[:] = C[0]
        V[:] = V[0]
        return C, V
    if scheme in ("replace", "fresh"):
        N = n_real + m
        fresh = scheme == "fresh" and n_real > 0
        for t in range(generations):
            if fresh:
                C[t + 1] = (n_real * cov + m * m * C[t] + m * V[t]) / N**2
            else:
                C[t + 1] = (m / N) ** 2 * (C[t] + V[t] / m)
            second = (n_real * cov + m * (V[t] + C[t])) / N
            V[t + 1] = s(N) * (second - C[t + 1]) + R
        return C, V
    K = np.zeros((d, d))
    pool = np.zeros((d, d))  # Σ_{j<t} (V_j + C_j)
    for t in range(1, generations + 1):
        N_prev, N_t = n_real + (t - 1) * m, n_real + t * m
        grow = (1.0 + m / N_prev) if N_prev > 0 else 0.0
        K = grow**2 * K + V[t - 1] / m
        C[t] = (m / N_t) ** 2 * K
        pool = pool + V[t - 1] + C[t - 1]
        V[t] = s(N_t) * ((n_real * cov + m * pool) / N_t - C[t]) + R
    return C, V


def mean_offset_factor(n: int, lam: float, generations: int, *, scheme: str = "replace") -> np.ndarray:
    """E[η_t − η_ref]/(η_0 − η_ref), t = 0..generations, for an exponential family's mean
    parameters when generation 0 starts off the fixed point (exact, any finite n).

    ``replace``/``fresh``: (m/(n+m))^t. ``accumulate``: m/(n+m) after the first generation,
    then constant (the pool keeps every earlier set: an offset is never pulled back further).
    ``accumulate-subsample``: f_t = (m/(n+m))·(1/t)Σ_{j<t} f_j (the subsample's expected mean
    is the average of the pool's set means). λ = ∞: 1 for every scheme.
    """
    from genloop.loop.schemes import SCHEMES

    lam = _check_lam(lam)
    generations = _check_count(generations, "generations", 0)
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    f = np.ones(generations + 1)
    if math.isinf(lam):
        return f
    a = replace_contraction(n, lam)
    for t in range(1, generations + 1):
        if scheme in ("replace", "fresh"):
            f[t] = a * f[t - 1]
        elif scheme == "accumulate":
            f[t] = a if t == 1 else f[t - 1]
        else:
            f[t] = a * f[:t].mean()
    return f


def gaussian_variance_ratio_draws(
    n: int,
    lam: float,
    generations: int,
    size: int,
    rng: np.random.Generator,
    *,
    scheme: str = "replace",
    estimator: Estimator = "mle",
    n_eval: int | None = None,
) -> np.ndarray:
    """``size`` independent draws of σ_T²/σ_0² for genloop's 1-D ``gaussian`` loop, exactly
    (times s²_T/s²_0 of ``n_eval`` evaluation draws from each fit, when given).

    The loop is simulated on its sufficient statistics (sample mean, sum of squares): a set of
    m draws of N(μ, σ²) has mean μ + σz/√m and sum of squares σ²χ²_{m−1}, and pooled sets add
    their sums of squares plus n₁n₂/(n₁+n₂)·(difference of means)². The ratio is invariant to
    the real set's location and scale, so its law is the same for every real set: generation 0
    fits a real set with mean 0 and sum of squares n, σ_0² = n/c (c = N for the MLE, N − 1
    unbiased, N the training size). Schemes ``replace`` (n real + m = ⌊λn⌋ synthetic; λ = ∞:
    n synthetic) and ``accumulate`` (the real set and every synthetic set so far). The mean of
    the draws is :func:`gaussian_scheme_moments`'s V_T/V_0 (a test checks it)."""
    from genloop.theory.gaussian import _check_int

    T = _check_int(generations, "generations", 0)
    n = _check_count(n, "n", 2)
    lam = _check_lam(lam)
    if scheme not in ("replace", "accumulate") or (scheme == "accumulate" and math.isinf(lam)):
        raise ConfigError(f"no exact draws of the variance ratio for scheme {scheme!r} at λ = {lam}")
    if estimator not in ("mle", "unbiased"):
        raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")
    size = _check_count(size, "size", 1)

    def divisor(N: int) -> int:
        return N if estimator == "mle" else N - 1

    m = n if math.isinf(lam) else synthetic_count(lam, n)
    real = 0 if math.isinf(lam) else n  # real points in each training set
    var0 = n / divisor(n)
    mu, var = np.zeros(size), np.full(size, var0)
    pool_n, pool_mu, pool_ss = real, np.zeros(size), np.full(size, float(real))  # accumulate's pool
    for _ in range(T if m > 0 else 0):
        ybar = mu + np.sqrt(var / m) * rng.standard_normal(size)
        ss_new = var * (rng.chisquare(m - 1, size) if m > 1 else 0.0)
        if scheme == "accumulate":
            N = pool_n + m
            ss = pool_ss + ss_new + pool_n * m / N * (pool_mu - ybar) ** 2
            pool_mu = (pool_n * pool_mu + m * ybar) / N
            pool_n, pool_ss = N, ss
            mu, var = pool_mu, ss / divisor(N)
        else:
            N = real + m
            mu = m * ybar / N  # the real set's mean is 0
            var = (float(real) + ss_new + real * m / N * ybar**2) / divisor(N)
    ratio = var / var0
    if n_eval is not None:
        k = _check_count(n_eval, "n_eval", 2) - 1
        ratio = ratio * rng.chisquare(k, size) / rng.chisquare(k, size)
    return ratio
