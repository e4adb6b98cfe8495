"""Collapse laws of the categorical loop: Wright–Fisher drift, loss of support, the mixed loop.

The model is genloop's ``categorical`` family without smoothing: generation t fits the token
frequencies p̂_t of its training set. With n tokens per generation:

* **Fully synthetic** (λ = ∞): the count X_{t+1,k} of category k is Binomial(n, p̂_{t,k}) —
  the Wright–Fisher model of population genetics with n gene copies. Hence (exactly)

  - E[p̂_{t+1} | p̂_t] = p̂_t: every category's mass is a martingale;
  - Cov(p̂_t − p̂_0) = (1 − (1 − 1/n)^t) (diag p̂_0 − p̂_0 p̂_0ᵀ) — the exponential-family
    random walk of :func:`genloop.theory.expfam.fully_synthetic_mean_covariance` with the MLE
    (the categorical is an exponential family with T(x) = one-hot(x), Cov(T) = diag p − ppᵀ);
  - 0 is absorbing: a category lost is lost for ever, so the support shrinks to a single
    category. P(lost by t) is computed exactly from the Markov chain on counts
    (:func:`loss_probability`, method ``"exact"``) or, for large n, from Kimura's (1955)
    diffusion solution: with τ = t/n and q = 1 − p,

      P(X_τ = 0) = q + Σ_{i≥1} (2i+1) p q (−1)^i F(1−i, i+2; 2; q) e^{−i(i+1)τ/2},

    F the hypergeometric polynomial (= P_{i−1}^{(1,1)}(1−2q)/i with Jacobi polynomials).
  - E[support_t] = Σ_k (1 − P(category k lost by t)) (:func:`expected_support`).

  Generation 0 is fitted on n real tokens of the true law p, so X_0 ~ Binomial(n, p_k): the
  loop started from real data is the same chain one step earlier, started at p (``from_real``).

* **Mixed** (replace scheme, n real tokens kept, m = ⌊λn⌋ synthetic): p̂_t stays ≥
  n p̂_real/(n+m) on every category seen in the real data, so the support never shrinks, and
  p̂_t − p̂_real has mean 0 and the covariance of the MLE-Gaussian recursion of
  :func:`genloop.theory.expfam.gaussian_mle_mean_covariance` with Σ_real = diag p̂_real −
  p̂_real p̂_realᵀ (exact, because E[Cov_{p̂_t}(T)] = Σ_real − Cov(p̂_t) for the categorical as for
  the Gaussian's second moment): C_∞ = m Σ_real/(n(n+2m) + m).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import special, stats

from genloop.errors import ConfigError
from genloop.loop.schemes import parse_lambda, synthetic_count
from genloop.theory.expfam import fully_synthetic_mean_covariance, gaussian_mle_mean_covariance

__all__ = [
    "categorical_covariance",
    "wright_fisher_matrix",
    "loss_probability",
    "loss_probability_exact",
    "loss_probability_diffusion",
    "expected_support",
    "fully_synthetic_mass_covariance",
    "mixed_mass_covariance",
    "EXACT_MAX_N",
]

#: Largest n for which ``method="auto"`` uses the exact chain on counts (O(n²) per generation).
EXACT_MAX_N = 2000


def _int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _probs(p: object) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(p, dtype=np.float64))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ConfigError("probabilities must lie in [0, 1]")
    return arr


def categorical_covariance(p: np.ndarray) -> np.ndarray:
    """Cov(T) = diag p − p pᵀ of the one-hot statistic T(x) under the categorical law p."""
    p = np.asarray(p, dtype=np.float64)
    return np.diag(p) - np.outer(p, p)


@lru_cache(maxsize=8)
def _wf_matrix(n: int) -> np.ndarray:
    i = np.arange(n + 1)
    return stats.binom.pmf(i[None, :], n, i[:, None] / n)


def wright_fisher_matrix(n: int) -> np.ndarray:
    """The (n+1)×(n+1) transition matrix of counts: M_ij = P(Binomial(n, i/n) = j)."""
    return _wf_matrix(_int(n, "n", 1)).copy()


def _absorbed_by(n: int, generations: int) -> np.ndarray:
    """u[t, i] = P(X_t = 0 | X_0 = i) for t = 0 … generations (backward equation u_{t+1} = M u_t)."""
    M = _wf_matrix(n)
    u = np.zeros((generations + 1, n + 1))
    u[0, 0] = 1.0
    for t in range(generations):
        u[t + 1] = M @ u[t]
    return u


def loss_probability_exact(p0: object, n: int, t: int, *, from_real: bool = False) -> np.ndarray:
    """P(category lost by generation t), exactly, from the chain on counts.

    ``from_real=False``: the generation-0 model gives the category mass ``p0``, so X_0 = p0·n
    (must be an integer count). ``from_real=True``: ``p0`` is the true probability and X_0 ~
    Binomial(n, p0) (generation 0 fitted on n real tokens). Vectorised over ``p0``.
    """
    n, t = _int(n, "n", 1), _int(t, "t", 0)
    p0 = _probs(p0)
    u = _absorbed_by(n, t)[t]
    if from_real:
        start = stats.binom.pmf(np.arange(n + 1)[None, :], n, p0[:, None])
        return start @ u
    counts = p0 * n
    if np.any(np.abs(counts - np.round(counts)) > 1e-9):
        raise ConfigError("the exact chain needs p0·n to be an integer count; use from_real=True or method='diffusion'")
    return u[np.round(counts).astype(int)]


def loss_probability_diffusion(p0: object, n: int, t: int, *, from_real: bool = False, terms: int | None = None) -> np.ndarray:
    """Kimura's diffusion approximation of P(lost by generation t), τ = t/n (module docstring).

    ``from_real=True`` adds the generation-0 draw as one more step (τ = (t+1)/n from p0). The
    series is summed until its terms are negligible (``terms`` overrides); accurate to O(1/n).
    """
    n, t = _int(n, "n", 1), _int(t, "t", 0)
    p = _probs(p0)
    tau = (t + 1 if from_real else t) / n
    q = 1.0 - p
    if tau == 0:
        return (p == 0).astype(np.float64)
    if terms is None:  # e^{-i(i+1)τ/2} < 1e-18 beyond i_max
        terms = int(min(20000, math.ceil(math.sqrt(2 * 41.5 / tau)) + 2))
    i = np.arange(1, terms + 1, dtype=np.float64)
    jac = special.eval_jacobi((i - 1)[:, None], 1.0, 1.0, (1.0 - 2.0 * q)[None, :]) / i[:, None]
    weight = (2 * i + 1) * (-1.0) ** i * np.exp(-i * (i + 1) * tau / 2)
    series = (weight[:, None] * jac).sum(axis=0)
    return np.clip(q + p * q * series, 0.0, 1.0)


def loss_probability(p0: object, n: int, t: int, *, from_real: bool = False, method: str = "auto") -> np.ndarray:
    """P(a category is lost by generation t) in the fully synthetic categorical loop.

    ``method``: ``"exact"`` (chain on counts), ``"diffusion"`` (Kimura), or ``"auto"`` (exact for
    n <= :data:`EXACT_MAX_N`). See :func:`loss_probability_exact` for ``p0`` and ``from_real``.
    """
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_N else "diffusion"
    if method == "exact":
        return loss_probability_exact(p0, n, t, from_real=from_real)
    if method == "diffusion":
        return loss_probability_diffusion(p0, n, t, from_real=from_real)
    raise ConfigError(f"method must be 'auto', 'exact' or 'diffusion', got {method!r}")


def expected_support(probs: object, n: int, generations: int, *, from_real: bool = True, method: str = "auto") -> np.ndarray:
    """E[support_t] = Σ_k (1 − P(category k lost by t)) for t = 0 … generations (fully synthetic).

    ``probs``: the true law (``from_real=True``, generation 0 fitted on n real tokens) or the
    generation-0 model's law (``from_real=False``).
    """
    generations = _int(generations, "generations", 0)
    p = _probs(probs)
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_N else "diffusion"
    if method == "exact":
        n = _int(n, "n", 1)
        u = _absorbed_by(n, generations)
        if from_real:
            start = stats.binom.pmf(np.arange(n + 1)[None, :], n, p[:, None])
            lost = start @ u.T  # (K, T+1)
        else:
            counts = p * n
            if np.any(np.abs(counts - np.round(counts)) > 1e-9):
                raise ConfigError("the exact chain needs p·n to be integer counts; use from_real=True or method='diffusion'")
            lost = u[:, np.round(counts).astype(int)].T
        return (1.0 - lost).sum(axis=0)
    return np.array([(1.0 - loss_probability(p, n, t, from_real=from_real, method=method)).sum() for t in range(generations + 1)])


def fully_synthetic_mass_covariance(probs: object, n: int, t: int, *, from_real: bool = True) -> np.ndarray:
    """Cov(p̂_t − p), exact, in the fully synthetic loop (E[p̂_t] = p: a martingale).

    (1 − (1 − 1/n)^s) (diag p − ppᵀ) with s = t + 1 from the true law p (``from_real``, the real
    draw is the first Wright–Fisher step) or s = t from the generation-0 law; computed by
    :func:`genloop.theory.expfam.fully_synthetic_mean_covariance` (MLE), not re-derived here.
    """
    p = _probs(probs)
    steps = _int(t, "t", 0) + (1 if from_real else 0)
    return fully_synthetic_mean_covariance(_int(n, "n", 2), steps, categorical_covariance(p), estimator="mle")


def mixed_mass_covariance(p_real: object, n: int, lam: float | str, t: int | None = None) -> np.ndarray:
    """Cov(p̂_t − p̂_real) in the replace scheme with real data (exact; stationary when t is None).

    ``p_real``: the real tokens' frequencies (the generation-0 fit). Uses
    :func:`genloop.theory.expfam.gaussian_mle_mean_covariance` with Σ_real = diag p̂_real −
    p̂_real p̂_realᵀ and m = ⌊λn⌋. λ = ∞ has no stationary law: use
    :func:`fully_synthetic_mass_covariance`.
    """
    lam = parse_lambda(lam)
    if math.isinf(lam):
        raise ConfigError("the mixed loop needs a finite lambda; for lambda = inf use fully_synthetic_mass_covariance")
    n = _int(n, "n", 1)
    return gaussian_mle_mean_covariance(n, synthetic_count(lam, n), categorical_covariance(_probs(p_real)), t)
