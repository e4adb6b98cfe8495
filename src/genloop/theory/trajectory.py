"""Predicted distances of the parameters to θ* per generation: the recursions behind the
report's predicted-vs-observed trajectories (:mod:`genloop.report.trajectory` reads the runs and
draws; the formulas live here, below the report).

θ* is the maximum-likelihood fit of the run's real training data; ``gaussian`` distances are
||μ_t − μ*||² (``"mu"``), ||Σ_t − Σ*||_F² (``"sigma"``) and their sum, θ* = (mean, divide-by-n
covariance); other families use ||θ_t − θ*||² in the adapter coordinates.

Predictions (replace scheme, n real + m = ⌊λn⌋ synthetic samples per generation):

* ``gaussian``, part ``"mu"`` — **exact** for every finite n, m, both estimators and any
  ``reg_covar``. With e_t = μ_t − μ*, u = ȳ_t − μ* (ȳ_t the mean of the m draws) and N = n+m,
  the fit of the mix is μ_{t+1} = μ* + (m/N) u and
  N Σ^{mle}_{t+1} = n Σ* + S_y + (nm/N) u uᵀ (pooled scatter, S_y ~ Wishart(m−1, Σ_t)).
  Taking expectations (E e_t = 0 since μ_0 = μ*) gives the linear recursion
  C_{t+1} = a²(C_t + V_t/m),  V_{t+1} = s[n Σ* + (m−1)V_t + (nm/N)(C_t + V_t/m)]/N + r I
  for C_t = Cov(μ_t − μ*), V_t = E[Σ_t], a = m/N, s = N/(N−1) (unbiased) or 1 (MLE),
  r = ``reg_covar``; E||μ_t − μ*||² = tr C_t. For the MLE it reproduces
  :func:`~genloop.theory.expfam.gaussian_mle_mean_covariance`.
  λ = ∞ (n draws of the previous model only): C_{t+1} = C_t + V_t/n, V_{t+1} = s(n−1)/n V_t + r I
  (:func:`~genloop.theory.expfam.fully_synthetic_mean_covariance`: the random walk).
* ``gaussian``, part ``"sigma"`` — exact at λ = 0 (deterministic) and λ = ∞ (Wishart
  moments: with S ~ W_d(k, Σ), E||S||_F² = (k²+k)||Σ||_F² + k(tr Σ)² and
  E(tr S)² = k²(tr Σ)² + 2k||Σ||_F², a closed linear recursion for E||Σ_t||_F², E(tr Σ_t)²).
  For finite λ > 0 it is the **first-order approximation** ||V_t − Σ*||_F² + g_t((tr Σ*)² +
  ||Σ*||_F²) with g_t = s²(a²/m)(1 − a^{2t})/(1 − a²): the mean-parameter recursion
  e_{t+1} = a(e_t + ξ_t) with Cov ξ_t ≈ Cov_{θ*}(T)/m, mapped to Σ = E[xxᵀ] − μμᵀ
  (E||zzᵀ − Σ||_F² = (tr Σ)² + ||Σ||_F² for z ~ N(0, Σ)); relative error O(1/n).
* ``gmm`` — **linearised** around θ* (:mod:`genloop.theory.jacobian`): θ_{t+1} − θ* ≈
  J(θ_t − θ*) + noise with J = λ'(A + λ'B)^{-1}B, λ' = m/n, noise covariance
  Q = λ'²(A+λ'B)^{-1}(B/m)(A+λ'B)^{-T}; so E||θ_t − θ*||² ≈ ||J^t e_0||² + tr P_t with
  P_{t+1} = J P_t Jᵀ + Q (P_t → :func:`~genloop.theory.jacobian.linearized_stationary_covariance`).
  The first term is the deterministic contraction (rate ρ = spectral radius of J) of the
  initial offset e_0 = θ_0 − θ* (scikit-learn's EM stops at ``tol``, so θ_0 ≠ θ*).
  λ = ∞: J = I and Q = B^{-1}/n (a random walk, valid only while the fit stays near θ*).
  When the run's checkpoints record EM iteration counts (scikit-learn stops at ``tol``), J and
  Q are those of the learner that ran: k warm-started EM iterations per generation (k = the
  run's median), :func:`genloop.theory.em.em_learner_map`, with ``reg_covar``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genloop.errors import ConfigError
from genloop.loop.schemes import parse_lambda, synthetic_count

__all__ = [
    "gaussian_moment_recursion",
    "gaussian_predicted_distances",
    "gaussian_theta_star",
    "linear_map_predicted_distances",
    "linearized_predicted_distances",
]


def _check_generations(generations: object) -> int:
    if isinstance(generations, bool) or not isinstance(generations, (int, np.integer)) or generations < 0:
        raise ConfigError(f"generations must be an integer >= 0, got {generations!r}")
    return int(generations)


def _as_2d(real: np.ndarray) -> np.ndarray:
    real = np.asarray(real, dtype=np.float64)
    if real.ndim == 1:
        real = real[:, None]
    if real.ndim != 2 or real.shape[0] < 2:
        raise ConfigError(f"real data must have shape (n, d) with n >= 2 for trajectories, got {real.shape}")
    return real


# ---- Gaussian: θ* and exact laws ---------------------------------------------------------------
def gaussian_theta_star(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ* = (μ*, Σ*): the maximum-likelihood Gaussian of ``real`` (mean, divide-by-n covariance)."""
    real = _as_2d(real)
    mu = real.mean(axis=0)
    diff = real - mu
    return mu, diff.T @ diff / real.shape[0]


def gaussian_moment_recursion(
    n: int, lam: float, cov_star: np.ndarray, generations: int, *, estimator: str = "mle", reg_covar: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(C_t, V_t) for t = 0..generations, each of shape (generations+1, d, d).

    C_t = Cov(μ_t − μ*) and V_t = E[Σ_t] of the registered ``gaussian`` model in the replace
    loop (exact; recursion in the module docstring). ``cov_star`` is Σ*, the divide-by-n
    covariance of the n real samples; λ = ∞ is the fully synthetic loop.
    """
    generations = _check_generations(generations)
    lam = parse_lambda(lam)
    if estimator not in ("mle", "unbiased"):
        raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n must be an integer >= 2, got {n!r}")
    n = int(n)
    cov_star = np.atleast_2d(np.asarray(cov_star, dtype=np.float64))
    d = cov_star.shape[0]
    R = float(reg_covar) * np.eye(d)
    s0 = n / (n - 1) if estimator == "unbiased" else 1.0
    C = np.zeros((generations + 1, d, d))
    V = np.zeros((generations + 1, d, d))
    V[0] = s0 * cov_star + R
    if math.isinf(lam):
        s = n / (n - 1) if estimator == "unbiased" else 1.0
        for t in range(generations):
            C[t + 1] = C[t] + V[t] / n
            V[t + 1] = s * (n - 1) / n * V[t] + R
        return C, V
    m = synthetic_count(lam, n)
    if m == 0:  # every generation refits the real data: deterministic
        V[:] = V[0]
        return C, V
    N = n + m
    a = m / N
    s = N / (N - 1) if estimator == "unbiased" else 1.0
    for t in range(generations):
        C[t + 1] = a * a * (C[t] + V[t] / m)
        V[t + 1] = s * (n * cov_star + (m - 1) * V[t] + (n * m / N) * (C[t] + V[t] / m)) / N + R
    return C, V


def _wishart_sigma_sq(n: int, cov_star: np.ndarray, V: np.ndarray, estimator: str, reg_covar: float) -> np.ndarray:
    """E||Σ_t − Σ*||_F² of the fully synthetic loop, exact (Wishart second moments)."""
    d = cov_star.shape[0]
    r = float(reg_covar)
    g = (1.0 / (n - 1)) if estimator == "unbiased" else 1.0 / n  # Σ_{t+1} = g S + r I, S ~ W(n-1, Σ_t)
    k = n - 1
    S0 = V[0]
    F, T = float(np.sum(S0 * S0)), float(np.trace(S0)) ** 2  # E||Σ_t||_F², E(tr Σ_t)²
    out = np.empty(V.shape[0])
    for t in range(V.shape[0]):
        out[t] = F - 2.0 * float(np.sum(cov_star * V[t])) + float(np.sum(cov_star * cov_star))
        trV = float(np.trace(V[t]))
        F, T = (
            g * g * ((k * k + k) * F + k * T) + 2.0 * r * g * k * trV + r * r * d,
            g * g * (k * k * T + 2.0 * k * F) + 2.0 * r * d * g * k * trV + (r * d) ** 2,
        )
    return out


def gaussian_predicted_distances(
    n: int, lam: float, cov_star: np.ndarray, generations: int, *, estimator: str = "mle", reg_covar: float = 0.0
) -> dict[str, Any]:
    """Expected squared distances to θ* of the registered ``gaussian`` model (replace loop).

    Returns ``{"mu", "sigma", "total"}`` arrays of shape (generations+1,) (see the module
    docstring for the formulas) and ``"exact"``: a dict part → bool (``"mu"`` is always exact;
    ``"sigma"`` at λ = 0 and λ = ∞ only).
    """
    lam = parse_lambda(lam)
    cov_star = np.atleast_2d(np.asarray(cov_star, dtype=np.float64))
    C, V = gaussian_moment_recursion(n, lam, cov_star, generations, estimator=estimator, reg_covar=reg_covar)
    mu = np.trace(C, axis1=1, axis2=2)
    bias = np.sum((V - cov_star) ** 2, axis=(1, 2))
    m = synthetic_count(lam, int(n))
    if math.isinf(lam):
        sigma = _wishart_sigma_sq(int(n), cov_star, V, estimator, reg_covar)
        exact_sigma = True
    elif m == 0:
        sigma, exact_sigma = bias, True
    else:
        a = m / (n + m)
        s2 = ((n + m) / (n + m - 1)) ** 2 if estimator == "unbiased" else 1.0
        t = np.arange(V.shape[0])
        g = s2 * (a * a / m) * (1.0 - a ** (2 * t)) / (1.0 - a * a)
        sigma = bias + g * (np.trace(cov_star) ** 2 + float(np.sum(cov_star * cov_star)))
        exact_sigma = False
    return {"mu": mu, "sigma": sigma, "total": mu + sigma,
            "exact": {"mu": True, "sigma": exact_sigma, "total": exact_sigma}}


# ---- linearised prediction (any ParametricDensity) ------------------------------------------------
def linearized_predicted_distances(
    A: np.ndarray, B: np.ndarray, e0: np.ndarray, n: int, lam: float, generations: int
) -> np.ndarray:
    """E||θ_t − θ*||² ≈ ||J^t e_0||² + tr P_t, t = 0..generations (module docstring).

    ``A`` = −E_data[∇²log p_θ*], ``B`` the Fisher information at θ*, ``e0`` = θ_0 − θ*.
    The noise covariance Q is that of :func:`genloop.theory.jacobian.linearized_stationary_covariance`
    (which P_t tends to); at λ = ∞, J = I and Q = B^{-1}/n.
    """
    from genloop.theory.jacobian import retraining_jacobian

    generations = _check_generations(generations)
    lam = parse_lambda(lam)
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    e = np.asarray(e0, dtype=np.float64).reshape(-1)
    p = A.shape[0]
    if math.isinf(lam):
        J = np.eye(p)
        Q = np.linalg.inv(B) / n
    else:
        m = synthetic_count(lam, int(n))
        if m == 0:
            J, Q = np.zeros((p, p)), np.zeros((p, p))
        else:
            lam_eff = m / n
            M = np.linalg.inv(A + lam_eff * B)
            J = retraining_jacobian(A, B, lam_eff)
            Q = lam_eff**2 * M @ (B / m) @ M.T
    P = np.zeros((p, p))
    out = np.empty(generations + 1)
    for t in range(generations + 1):
        out[t] = float(e @ e) + float(np.trace(P))
        e = J @ e
        P = J @ P @ J.T + Q
    return out


def linear_map_predicted_distances(J: np.ndarray, Q: np.ndarray, e0: np.ndarray, generations: int) -> np.ndarray:
    """E||θ_t − θ*||² ≈ ||Jᵗe_0||² + tr P_t with P_{t+1} = J P_t Jᵀ + Q, for any linearised learner
    map (J, Q) (e.g. :func:`genloop.theory.em.em_learner_map`), t = 0..generations."""
    generations = _check_generations(generations)
    e = np.asarray(e0, dtype=np.float64).reshape(-1)
    P = np.zeros_like(np.asarray(J, dtype=np.float64))
    out = np.empty(generations + 1)
    for t in range(generations + 1):
        out[t] = float(e @ e) + float(np.trace(P))
        e = J @ e
        P = J @ P @ J.T + Q
    return out
