"""Closed forms of the loop variants on a Gaussian (docs/variants.md).

Curated retraining (Ferbach et al., NeurIPS 2024) with the quadratic reward
r(x) = −(a/2)‖x − c‖²:

* K → ∞ softmax curation (and the τ-tilted law it converges to): q ∝ p·exp(r/τ). For
  p = N(m, Σ) this exponential tilting is Gaussian, N(m', Σ') with
  Σ'^{-1} = Σ^{-1} + (a/τ) I and m' = Σ'(Σ^{-1} m + (a/τ) c)  (:func:`tilted_gaussian`).
* finite K (exact, 1-D): the kept sample of a group of K has the law
  E[f(X_sel)] = K·E[f(X_1) w_1 / (w_1 + … + w_K)], w = exp(r/τ). Writing 1/W = ∫_0^∞ e^{−sW} ds,
  E[f(X_sel)] = K ∫_0^∞ E[f(X) w(X) e^{−s w(X)}] φ(s)^{K−1} ds, φ(s) = E[e^{−s w(X)}]: a 1-D
  integral of Gauss–Hermite expectations (:func:`softmax_curated_moments`); τ = 0 (keep the
  best of K) uses the law of the minimiser of |X − c| among K draws.
* top fraction f of N candidates, N → ∞: p truncated to the interval |x − c| ≤ h with
  P_p(|X − c| ≤ h) = f (:func:`top_curated_moments`). Exact only in that limit; with N finite
  the kept set's moments differ by O(1/N): :func:`top_curated_moments_exact` gives the exact
  law of the top k of N draws (the loop's N = ⌈k/f⌉) through the (k+1)-th order statistic.

Because a Gaussian MLE fit matches the first two moments and E[r] depends only on them, the
loop's next model has (in expectation, exactly, with the MLE estimator) the reward E_q[r] ≥
E_p[r]: the reward is a submartingale, which is Ferbach et al.'s Theorem on this family. With
real data mixed in (ratio λ), the population map is the moment map of the mixture
(D_real + λ·q)/(1 + λ) (:func:`curated_gaussian_map`), iterated to its fixed point.

Self-correction (Gillman et al., ICML 2024) with c = the exact OT map from the model N(m, Σ)
to the real Gaussian N(m_d, Σ_d): x ← x + γ(c(x) − x) gives N((1−γ)m + γ m_d, MΣMᵀ),
M = (1−γ)I + γA (A the OT map's linear part); after mixing with the real data the mean
deviation contracts exactly by ρ = k(1 − γ)/(n + k) per generation with k = ⌊λn⌋ (1 − γ
fully synthetic; λ(1 − γ)/(1 + λ) as n → ∞), and so does the covariance to first order (:func:`corrected_rate`,
:func:`corrected_gaussian_map`). This derivation is ours for this Gaussian case; it shows the
paper's statement that the contraction strengthens with γ.

Sampling bias with temperature T (covariance T²Σ) on a Gaussian keeping real data: the
variance map v' = (v_d + λT²v)/(1 + λ) has the fixed point v_d / (1 + λ(1 − T²))
(:func:`tempered_variance_fixed_point`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from genloop.errors import ConfigError
from genloop.loop.variants import gaussian_ot_map

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(201)
_GH_W = _GH_W / _GH_W.sum()  # probabilists' Hermite: E[f(Z)], Z ~ N(0, 1)


def quadratic_reward_expectation(mean: np.ndarray, cov: np.ndarray, center: np.ndarray, scale: float) -> float:
    """E_{N(m, Σ)}[r] = −(a/2)(‖m − c‖² + tr Σ) for r(x) = −(a/2)‖x − c‖²."""
    mean, center = np.atleast_1d(mean), np.atleast_1d(center)
    return -0.5 * scale * (float(np.sum((mean - center) ** 2)) + float(np.trace(np.atleast_2d(cov))))


def tilted_gaussian(mean: np.ndarray, cov: np.ndarray, center: np.ndarray, scale: float, tau: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """N(m, Σ)·exp(r/τ) normalised, r = −(a/2)‖x − c‖²: the K → ∞ softmax-curated law (Gaussian)."""
    if tau <= 0:
        raise ConfigError("the tilted law needs τ > 0 (τ = 0 concentrates on the reward's maximiser)")
    mean, center = np.atleast_1d(np.asarray(mean, dtype=np.float64)), np.atleast_1d(np.asarray(center, dtype=np.float64))
    P = np.linalg.inv(np.atleast_2d(cov))
    d = mean.shape[0]
    cov_t = np.linalg.inv(P + (scale / tau) * np.eye(d))
    return cov_t @ (P @ mean + (scale / tau) * center), cov_t


def softmax_curated_moments(mu: float, sigma: float, *, K: int, tau: float, center: float = 0.0,
                            scale: float = 1.0) -> tuple[float, float]:
    """Exact mean and variance of the sample kept from K draws of N(μ, σ²) by softmax(r/τ)
    (1-D, quadratic reward; module docstring). τ = 0: the draw closest to the center."""
    x = mu + sigma * _GH_X
    if K == 1:
        return float(mu), float(sigma**2)
    if tau == 0:
        return _best_of_k_moments(mu, sigma, K=K, center=center)
    logw = -0.5 * scale * (x - center) ** 2 / tau
    w = np.exp(logw)
    u = np.linspace(-30.0, 30.0, 1201)  # s = e^u: the integrand spans many decades (error ~1e-8)
    s = np.exp(u)
    E = np.exp(-np.outer(s, w))  # (S, nodes)
    phi = E @ _GH_W
    base = (phi ** (K - 1)) * s  # φ(s)^{K−1} ds/du
    psi = E * (w * _GH_W)  # the integrand E[f w e^{−s w}] per node
    moments = []
    for f in (np.ones_like(x), x, x * x):
        moments.append(K * np.trapezoid(base * (psi @ f), u))
    m0, m1, m2 = moments
    if abs(m0 - 1) > 1e-6:
        raise RuntimeError(f"curated law integrates to {m0}, not 1 (quadrature)")  # pragma: no cover
    return float(m1), float(m2 - m1 * m1)


def _best_of_k_moments(mu: float, sigma: float, *, K: int, center: float) -> tuple[float, float]:
    """Mean and variance of the draw with the smallest |X − c| among K draws of N(μ, σ²):
    density K p(x) S(|x − c|)^{K−1}, S(h) = P(|X − c| > h)."""
    x = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 40001)
    h = np.abs(x - center)
    surv = stats.norm.sf((center + h - mu) / sigma) + stats.norm.cdf((center - h - mu) / sigma)
    dens = K * stats.norm.pdf(x, mu, sigma) * surv ** (K - 1)
    m0 = np.trapezoid(dens, x)
    m1 = np.trapezoid(dens * x, x) / m0
    return float(m1), float(np.trapezoid(dens * x * x, x) / m0 - m1 * m1)


def top_curated_moments(mu: float, sigma: float, *, fraction: float, center: float = 0.0) -> tuple[float, float]:
    """Mean and variance of N(μ, σ²) truncated to |x − c| ≤ h, P(|X − c| ≤ h) = fraction: the law
    of the top ``fraction`` by a quadratic reward centred at c, in the N → ∞ limit."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return float(mu), float(sigma**2)

    def mass(hh: float) -> float:
        return float(stats.norm.cdf((center + hh - mu) / sigma) - stats.norm.cdf((center - hh - mu) / sigma))

    from scipy.optimize import brentq

    h = brentq(lambda hh: mass(hh) - fraction, 0.0, abs(center - mu) + 40 * sigma)
    a, b = (center - h - mu) / sigma, (center + h - mu) / sigma
    m, v = stats.truncnorm.stats(a, b, loc=mu, scale=sigma, moments="mv")
    return float(m), float(v)


def _truncated_normal_moments(mu: float, sigma: float, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of N(μ, σ²) truncated to [μ + aσ, μ + bσ] (vectorised closed form:
    Z = Φ(b) − Φ(a), mean = μ + σ(φ(a) − φ(b))/Z, var = σ²[1 + (aφ(a) − bφ(b))/Z − ((φ(a) − φ(b))/Z)²];
    scipy's truncnorm for intervals with Z < 1e-6, where the closed form cancels)."""
    Z = stats.norm.cdf(b) - stats.norm.cdf(a)
    pa, pb = stats.norm.pdf(a), stats.norm.pdf(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (pa - pb) / Z
        m = mu + sigma * r
        v = sigma**2 * (1.0 + (a * pa - b * pb) / Z - r * r)
    small = Z < 1e-6
    if np.any(small):
        ms, vs = stats.truncnorm.stats(a[small], b[small], loc=mu, scale=sigma, moments="mv")
        m[small], v[small] = ms, vs
    return m, v


def top_curated_moments_exact(mu: float, sigma: float, *, kept: int, candidates: int,
                               center: float = 0.0) -> tuple[float, float, float]:
    """Exact finite-N law of the top ``kept`` of ``candidates`` draws of N(μ, σ²) ranked by a
    quadratic reward centred at c (the loop's ``select: top``, N = ⌈k/fraction⌉ candidates).

    Let D = |X − c| with cdf F and h = D_(k+1) the (k+1)-th smallest of the N distances. Given
    h, the k kept draws are i.i.d. N(μ, σ²) truncated to |x − c| < h, and U = F(h) ~ Beta(k+1,
    N−k) (order statistics of uniforms). So a kept draw has mean E_h[m(h)] and second moment
    E_h[v(h) + m(h)²] (m, v: the truncated normal's moments), and the MLE variance of the kept
    set has expectation (1 − 1/k)·E_h[v(h)]. Returns (mean, variance of a kept draw,
    E[MLE variance of the kept set]); k = N is the plain law. The expectation over U is taken
    on 2,000 equal-probability nodes of the Beta law (error ~1e-5 relative here).
    """
    k, N = int(kept), int(candidates)
    if not 1 <= k <= N:
        raise ConfigError(f"need 1 <= kept <= candidates, got kept={kept}, candidates={candidates}")
    if k == N:
        return float(mu), float(sigma**2), float(sigma**2) * (1 - 1 / k)
    nodes = 2000
    u = stats.beta.ppf((np.arange(nodes) + 0.5) / nodes, k + 1, N - k)
    # h = F^{-1}(u), F(h) = Φ((c + h − μ)/σ) − Φ((c − h − μ)/σ): invert on a fine monotone grid
    grid = np.linspace(0.0, abs(center - mu) + 12 * sigma, 20_001)
    F = stats.norm.cdf((center + grid - mu) / sigma) - stats.norm.cdf((center - grid - mu) / sigma)
    h = np.interp(u, F, grid)
    m, v = _truncated_normal_moments(mu, sigma, (center - h - mu) / sigma, (center + h - mu) / sigma)
    mean = float(m.mean())
    second = float(np.mean(v + m * m))
    return mean, second - mean * mean, float((1 - 1 / k) * v.mean())


def curated_gaussian_map(mu: float, var: float, *, lam: float, data_mean: float, data_var: float, K: int = 4,
                         tau: float = 1.0, center: float = 0.0, scale: float = 1.0, select: str = "softmax",
                         fraction: float = 0.25) -> tuple[float, float]:
    """One generation of the curated loop on a 1-D Gaussian in the population limit: the moments
    of (D_real + λ q)/(1 + λ) with q the curated law of N(μ, var) (λ = ∞: q alone)."""
    sigma = math.sqrt(var)
    if select == "softmax":
        mq, vq = softmax_curated_moments(mu, sigma, K=K, tau=tau, center=center, scale=scale)
    elif select == "tilt":
        m_t, v_t = tilted_gaussian(np.array([mu]), np.array([[var]]), np.array([center]), scale, tau)
        mq, vq = float(m_t[0]), float(v_t[0, 0])
    else:
        mq, vq = top_curated_moments(mu, sigma, fraction=fraction, center=center)
    if math.isinf(lam):
        return mq, vq
    m = (data_mean + lam * mq) / (1 + lam)
    second = (data_var + data_mean**2 + lam * (vq + mq**2)) / (1 + lam)
    return m, second - m * m


def curated_trajectory(mu0: float, var0: float, generations: int, **kwargs: float | int | str) -> np.ndarray:
    """(generations + 1, 2) array of (mean, variance) under :func:`curated_gaussian_map`."""
    out = [(mu0, var0)]
    for _ in range(generations):
        out.append(curated_gaussian_map(*out[-1], **kwargs))  # type: ignore[arg-type]
    return np.asarray(out)


def corrected_rate(lam: float, gamma: float, n: int | None = None) -> float:
    """Exact per-generation contraction of the mean deviation with exact OT self-correction.

    The loop mixes n real samples with k = ⌊λn⌋ corrected synthetic ones, so the fitted mean is
    (n x̄ + k m_c)/(n + k) and the deviation contracts by ρ = k(1 − γ)/(n + k) (1 − γ when
    λ = ∞). With ``n`` given this is the loop's exact rate (k from
    :func:`genloop.loop.schemes.synthetic_count`); without it, the n → ∞ limit λ(1 − γ)/(1 + λ),
    which overstates the rate when λn is not an integer (n = 7, λ = 0.5: 0.150 against the
    loop's 3(1 − γ)/10).
    """
    if not 0 <= gamma <= 1:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")
    if math.isinf(lam):
        return 1 - gamma
    if n is None:
        return lam * (1 - gamma) / (1 + lam)
    from genloop.loop.schemes import synthetic_count

    k = synthetic_count(lam, int(n))
    return k * (1 - gamma) / (int(n) + k)


def corrected_gaussian_map(mean: np.ndarray, cov: np.ndarray, *, lam: float, gamma: float,
                           data_mean: np.ndarray, data_cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One generation of the self-corrected loop with c = the OT map to N(m_d, Σ_d), in the
    population limit: correct N(m, Σ) to N((1−γ)m + γ m_d, MΣMᵀ), then mix with the real law."""
    mean, data_mean = np.atleast_1d(mean).astype(float), np.atleast_1d(data_mean).astype(float)
    cov, data_cov = np.atleast_2d(cov).astype(float), np.atleast_2d(data_cov).astype(float)
    A, _ = gaussian_ot_map(mean, cov, data_mean, data_cov)
    M = (1 - gamma) * np.eye(len(mean)) + gamma * A
    m_c, S_c = (1 - gamma) * mean + gamma * data_mean, M @ cov @ M.T
    if math.isinf(lam):
        return m_c, S_c
    m = (data_mean + lam * m_c) / (1 + lam)
    diff = (m_c - data_mean)[:, None]
    return m, (data_cov + lam * S_c) / (1 + lam) + lam / (1 + lam) ** 2 * (diff @ diff.T)


def tempered_variance_fixed_point(data_var: float, *, lam: float, temperature: float) -> float:
    """Fixed point of v' = (v_d + λT²v)/(1 + λ): v_d/(1 + λ(1 − T²)) (∞ when λ(T² − 1) ≥ 1)."""
    denom = 1 + lam * (1 - temperature**2)
    return math.inf if denom <= 0 else data_var / denom


__all__ = [
    "corrected_gaussian_map", "corrected_rate", "curated_gaussian_map", "curated_trajectory",
    "quadratic_reward_expectation", "softmax_curated_moments", "tempered_variance_fixed_point",
    "tilted_gaussian", "top_curated_moments", "top_curated_moments_exact",
]

