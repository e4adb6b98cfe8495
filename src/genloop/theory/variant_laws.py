"""Per-λ laws of the loop variants on the registered ``gaussian`` model, at the loop's finite
m = ⌊λn⌋ (behind ``genloop theory`` for configs with ``loop.variant``; docs/theory.md §9).

Every variant changes only how generation t's k = ⌊λ_t n⌋ synthetic samples Y are drawn from
the previous fit(s); the fit is the registered Gaussian (mean, and covariance with the
config's estimator and ``reg_covar``) of the n real samples (mean x̄, divide-by-n covariance S)
pooled with Y (scheme ``replace``). Write, given the previous fits, m_Y = E[y_i] (the same for
every i), Q = Var(y_i) and W = E[V̂_Y] (V̂_Y the divide-by-k covariance of Y; W = (1 − 1/k) Q
for independent draws, less for the exchangeable top-k of a candidate pool). The pooled fit
μ' = (n x̄ + k ȳ)/N, Σ' = s(N)[(nS + kV̂_Y + (nk/N)(x̄ − ȳ)(x̄ − ȳ)ᵀ)/N] + R, N = n + k, s(N) =
N/(N − 1) for the unbiased estimator (1 for mle), R = ``reg_covar``·I, gives with
G = E[(m_Y − x̄)(m_Y − x̄)ᵀ] and Cov(ȳ | fits) = Q − W:

    E[μ' − x̄]                    = (k/N) E[m_Y − x̄]
    D' = E[(μ' − x̄)(μ' − x̄)ᵀ]     = (k/N)² (G + E[Q − W])                                     (1)
    V' = E[Σ']                    = s(N)[(nS + k E[W] + (nk/N)(G + E[Q − W]))/N] + R

(λ = ∞: no real term, N = k = n). Per variant (``m_Y``, Q, W as functions of the previous fit):

* ``biased`` (temperature T, log-density truncation keeping the top k of N_c = ⌈k/f⌉
  candidates): m_Y = μ, Q = T² g Σ, W = (1 − 1/k) T² g Σ with g = E[F_{d+2}(q)/F_d(q)],
  q = F_d⁻¹(U), U ~ Beta(k + 1, N_c − k) (F_d the χ²_d cdf: the kept draws are, given the
  (k+1)-th smallest Mahalanobis radius, i.i.d. Gaussians truncated to the ball inside it;
  g = 1 without truncation). Linear in (D, V): (1) is **exact** for every n, d and estimator.
* ``mixture`` (weights w_j over the window of past generations): the draws are i.i.d. from
  Σ_j w_j N(μ_j, Σ_j), so m_Y − x̄ = Σ_j w_j (μ_j − x̄), Q = Σ_j w_j (Σ_j + (μ_j − x̄)(μ_j − x̄)ᵀ)
  − (m_Y − x̄)(m_Y − x̄)ᵀ; with the cross-moments E[(μ_s − x̄)(μ_r − x̄)ᵀ] carried along,
  (1) is **exact**. The mean obeys e_t = (k/N) Σ_j w_j e_{t−1−j}: its rate is the spectral
  radius of that recursion's companion matrix.
* ``corrected`` (``ot-gaussian``, target (m*, Σ*) given or the real set's mean and unbiased
  covariance): y = μ_c + M(x − μ) with μ_c = (1 − γ)μ + γ m*, M = (1 − γ)I + γ A(Σ) (A the OT
  map's linear part): m_Y − x̄ = (1 − γ)(μ − x̄) + γ(m* − x̄) (exact: the mean deviation contracts
  by k(1 − γ)/N per generation), Q = M Σ Mᵀ evaluated at Σ = E[Σ_t] (exact at γ ∈ {0, 1};
  otherwise the covariance law neglects the Jensen term of Σ ↦ MΣMᵀ, O(γ(1 − γ)/N) relative).
* ``curated`` (1-D, quadratic reward r = −(a/2)(x − c)², ``select: softmax`` with K, τ or
  ``top`` with the fraction f of ⌈k/f⌉ candidates): m_Y, Q, W are the exact curated moments of
  N(μ, E Σ_t) (:func:`genloop.theory.variants.softmax_curated_moments`,
  :func:`~genloop.theory.variants.top_curated_moments_exact`) averaged over the sigma points
  μ = E μ_t ± sd(μ_t), whose secant slope carries the spread of μ_t into G: second order in the
  spread of μ_t, first order in that of Σ_t.

Everything else gets a row "no prediction" with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from genloop.loop.schemes import synthetic_count
from genloop.theory.laws import LawTheoryResult

__all__ = [
    "VARIANT_LEGEND", "VariantTheoryResult", "no_prediction_result", "truncation_factor",
    "variant_analysis", "variant_moments",
]

_BETA_NODES = 2000
#: iterations allowed to reach a fixed point (a rate of 0.995 converges to 1e-10 in ~4,600)
_MAX_ITER = 20_000


@dataclass
class VariantTheoryResult(LawTheoryResult):
    """A :class:`LawTheoryResult` with the variant's own legend and the data dimension."""

    d: int = 1
    legend: str = ""
    extra: tuple[tuple[str, str], ...] = ()


def truncation_factor(kept: int, candidates: int, d: int) -> float:
    """g = E[F_{d+2}(q)/F_d(q)], q = F_d⁻¹(U), U ~ Beta(k+1, N_c−k): the per-coordinate variance
    (in units of the sampled covariance) of one of the k draws of N(0, I_d) with the smallest
    radius among N_c (module docstring). 1 when nothing is cut (k = N_c)."""
    k, N = int(kept), int(candidates)
    if k >= N:
        return 1.0
    u = stats.beta.ppf((np.arange(_BETA_NODES) + 0.5) / _BETA_NODES, k + 1, N - k)
    q = stats.chi2.ppf(u, d)
    return float(np.mean(stats.chi2.cdf(q, d + 2) / u))


@dataclass
class _Synth:
    """The synthetic set's moments given the previous fit(s): m_Y − x̄ = B (μ − x̄) + b (or the
    mixture's weighted sum), Q and W (module docstring)."""

    B: np.ndarray
    b: np.ndarray
    Q: np.ndarray
    W: np.ndarray


# ---- the per-variant moment maps -----------------------------------------------------------------
SynthFn = Callable[[int, np.ndarray, np.ndarray, np.ndarray], _Synth]


def _biased_fn(variant: Any, d: int) -> SynthFn:
    T2 = float(variant.temperature) ** 2
    cache: dict[int, float] = {}

    def fn(k: int, e: np.ndarray, D: np.ndarray, V: np.ndarray) -> _Synth:
        if k not in cache:
            cache[k] = truncation_factor(k, math.ceil(k / variant.truncation), d)
        g = cache[k]
        return _Synth(np.eye(d), np.zeros(d), T2 * g * V, (1 - 1 / k) * T2 * g * V)
    return fn


def _corrected_fn(variant: Any, xbar: np.ndarray, target: tuple[np.ndarray, np.ndarray]) -> SynthFn:
    from genloop.loop.variants import gaussian_ot_map

    gamma = float(variant.gamma)
    m_star, S_star = target
    d = xbar.shape[0]

    def fn(k: int, e: np.ndarray, D: np.ndarray, V: np.ndarray) -> _Synth:
        A, _ = gaussian_ot_map(xbar + e, V, m_star, S_star)
        M = (1 - gamma) * np.eye(d) + gamma * A
        Q = M @ V @ M.T
        return _Synth((1 - gamma) * np.eye(d), gamma * (m_star - xbar), Q, (1 - 1 / k) * Q)
    return fn


def _curated_fn(variant: Any, xbar: np.ndarray) -> SynthFn:
    from genloop.theory.variants import (
        softmax_curated_moments,
        top_curated_moments_exact,
    )

    c = 0.0 if variant.reward.center is None else float(variant.reward.center[0])
    a = float(variant.reward.scale)

    def moments(k: int, mu: float, var: float) -> tuple[float, float, float]:
        sigma = math.sqrt(max(var, 1e-300))
        if variant.select == "softmax":
            m, v = softmax_curated_moments(mu, sigma, K=variant.K, tau=variant.tau, center=c, scale=a)
            return m, v, (1 - 1 / k) * v
        return top_curated_moments_exact(mu, sigma, kept=k, candidates=math.ceil(k / variant.fraction), center=c)

    def fn(k: int, e: np.ndarray, D: np.ndarray, V: np.ndarray) -> _Synth:
        mu, var = float(xbar[0] + e[0]), float(V[0, 0])
        spread = math.sqrt(max(float(D[0, 0] - e[0] ** 2), 0.0))  # sd of μ_t around E μ_t
        h = max(spread, 1e-4 * math.sqrt(max(var, 1e-300)))
        # sigma points μ̄ ± sd(μ_t): E[f(μ_t)] and the statistical-linearisation slope, exact to second order
        plus, minus = moments(k, mu + h, var), moments(k, mu - h, var)
        m, q, w = ((a + b) / 2 for a, b in zip(plus, minus))
        slope = (plus[0] - minus[0]) / (2 * h)
        # m_Y − x̄ ≈ E[m_Y] − x̄ + slope (μ − E μ): B = slope, b = E[m_Y] − x̄ − slope·e
        return _Synth(np.array([[slope]]), np.array([m - xbar[0] - slope * e[0]]), np.array([[q]]), np.array([[w]]))
    return fn


# ---- the recursion (1) ------------------------------------------------------------------------------
@dataclass
class _Law:
    """E[μ_t − x̄], D_t and V_t for t = 0 … T (arrays of shape (T+1, d) and (T+1, d, d))."""

    e: np.ndarray
    D: np.ndarray
    V: np.ndarray


def _pooled(k: int, n_real: int, S: np.ndarray, G: np.ndarray, EQ: np.ndarray, EW: np.ndarray, s: Callable[[int], float],
            R: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(D', V', k/N) of (1) from G, E[Q], E[W]."""
    N = n_real + k
    a = k / N
    noise = EQ - EW
    D = a * a * (G + noise)
    V = s(N) * (n_real * S + k * EW + (n_real * k / N) * (G + noise)) / N + R
    return D, V, a


def _single_law(fn: SynthFn, ks: Sequence[int], n_reals: Sequence[int], S: np.ndarray, V0: np.ndarray,
                s: Callable[[int], float], R: np.ndarray) -> _Law:
    """(1) for a variant drawing from the last fit only (biased, corrected, curated)."""
    d = S.shape[0]
    es, Ds, Vs = [np.zeros(d)], [np.zeros((d, d))], [V0]
    for k, n_real in zip(ks, n_reals):
        e, D, V = es[-1], Ds[-1], Vs[-1]
        if k == 0:
            es.append(np.zeros(d)), Ds.append(np.zeros((d, d))), Vs.append(V0)
            continue
        sy = fn(k, e, D, V)
        Em = sy.B @ e + sy.b
        G = sy.B @ D @ sy.B.T + np.outer(sy.B @ e, sy.b) + np.outer(sy.b, sy.B @ e) + np.outer(sy.b, sy.b)
        D1, V1, a = _pooled(k, n_real, S, G, sy.Q, sy.W, s, R)
        es.append(a * Em), Ds.append(D1), Vs.append(V1)
    return _Law(np.array(es), np.array(Ds), np.array(Vs))


def _mixture_law(variant: Any, ks: Sequence[int], n_reals: Sequence[int], S: np.ndarray, V0: np.ndarray,
                 s: Callable[[int], float], R: np.ndarray) -> _Law:
    """(1) for the mixture of past fits, exact, with the cross-moments K[s, r] = E[(μ_s − x̄)(μ_r − x̄)ᵀ]."""
    d = S.shape[0]
    T = len(ks)
    K = np.zeros((T + 1, T + 1, d, d))
    e = np.zeros((T + 1, d))
    V = np.zeros((T + 1, d, d))
    V[0] = V0
    for t in range(1, T + 1):
        k, n_real = ks[t - 1], n_reals[t - 1]
        if k == 0:
            V[t] = V0
            continue
        gens = variant.window(t)
        w = variant.mixture_weights(t)
        # m_Y − x̄ = Σ_j w_j (μ_j − x̄)
        G = np.einsum("i,j,ijab->ab", w, w, K[np.ix_(gens, gens)])
        EQ = np.einsum("j,jab->ab", w, V[gens] + K[gens, gens]) - G
        EW = (1 - 1 / k) * EQ
        D1, V1, a = _pooled(k, n_real, S, G, EQ, EW, s, R)
        e[t] = a * (w @ e[gens])
        K[t, t], V[t] = D1, V1
        # E[(μ_t − x̄)(μ_r − x̄)ᵀ] = a Σ_j w_j K[j, r], r < t (the draw's noise is independent of the past)
        K[t, :t] = a * np.einsum("j,jrab->rab", w, K[gens, :t])
        K[:t, t] = np.swapaxes(K[t, :t], -1, -2)
    return _Law(e, np.array([K[t, t] for t in range(T + 1)]), V)


def variant_moments(variant: Any, real: np.ndarray, lams: Sequence[float], *, estimator: str = "mle",
                    reg_covar: float = 0.0) -> _Law:
    """E[μ_t − x̄], E[(μ_t − x̄)(μ_t − x̄)ᵀ] and E[Σ_t], t = 0 … T = len(lams), for the registered
    gaussian model under ``variant`` with λ_t = ``lams[t-1]`` (scheme replace; module docstring)."""
    real = np.asarray(real, dtype=np.float64)
    n, d = real.shape
    xbar = real.mean(axis=0)
    diff = real - xbar
    S = diff.T @ diff / n
    R = float(reg_covar) * np.eye(d)

    def s(N: int) -> float:
        return N / (N - 1) if estimator == "unbiased" else 1.0

    V0 = s(n) * S + R
    ks = [synthetic_count(lam, n) for lam in lams]
    n_reals = [0 if math.isinf(float(lam)) else n for lam in lams]
    kind = variant.kind
    if kind == "mixture":
        return _mixture_law(variant, ks, n_reals, S, V0, s, R)
    fn = _synth_fn(variant, real)
    if kind == "plain":
        fn = _biased_fn(_PlainAsBiased(), d)
    return _single_law(fn, ks, n_reals, S, V0, s, R)


class _PlainAsBiased:
    temperature = 1.0
    truncation = 1.0


def _synth_fn(variant: Any, real: np.ndarray) -> SynthFn:
    d = real.shape[1]
    if variant.kind == "biased":
        return _biased_fn(variant, d)
    if variant.kind == "corrected":
        xbar = real.mean(axis=0)
        if variant.target_mean is not None:
            target = (np.asarray(variant.target_mean, dtype=np.float64), np.asarray(variant.target_cov, dtype=np.float64))
        else:
            target = (xbar, np.atleast_2d(np.cov(real, rowvar=False, ddof=1)))
        return _corrected_fn(variant, xbar, target)
    if variant.kind == "curated":
        return _curated_fn(variant, real.mean(axis=0))
    return _biased_fn(_PlainAsBiased(), d)


# ---- what is covered ------------------------------------------------------------------------------
def unsupported_reason(variant: Any, *, model: str, d: int, scheme: str) -> str:
    """'' when a law exists for this variant and run, else the reason there is none."""
    kind = variant.kind
    if model != "gaussian":
        return (f"loop variant {kind!r} on model {model!r}: the variant laws are derived for the registered gaussian "
                "model (a closed-form fit of the pooled moments)")
    if scheme != "replace":
        return f"loop variant {kind!r} with scheme {scheme!r}: the variant laws are derived for scheme replace"
    if kind == "biased" and variant.sampler:
        return f"loop variant 'biased' with sampler overrides {dict(variant.sampler)}: no closed-form law"
    if kind == "corrected" and variant.correction != "ot-gaussian":
        why = {"knn": "the mean of the k nearest real points is not a function of the model's moments",
               "denoiser": "a diffusion denoiser step"}.get(variant.correction, "a user correction")
        return f"correction {variant.correction!r} ({why}): no closed-form law; the law covers correction ot-gaussian"
    if kind == "curated":
        if variant.reward.name != "quadratic":
            return (f"reward {variant.reward.name!r}: the curated law is derived for the quadratic reward "
                    "r = −(a/2)‖x − c‖² on a Gaussian")
        if d != 1:
            return f"curation of {d}-dimensional data: the exact curated law is 1-D (d = 1)"
    return ""


# ---- the rows -------------------------------------------------------------------------------------
def _mean_rate(variant: Any, k: int, n_real: int, d: int) -> float | None:
    """The exact factor per generation of E[μ_t] − (its limit): k(1−γ)/N corrected, k/N biased,
    the companion spectral radius of (k/N)·w for a fixed mixture window (None: the window grows)."""
    N = n_real + k
    a = k / N if N else 0.0
    if variant.kind == "corrected":
        return a * (1 - variant.gamma)
    if variant.kind == "mixture":
        w = _eventual_weights(variant)
        if w is None:
            return None
        return _companion_radius(a * w)
    return a


def _eventual_weights(variant: Any) -> np.ndarray | None:
    """The mixture's weights over lags 1, 2, … once the window stops changing (None if it grows)."""
    L = variant.last_k
    if isinstance(variant.weights, tuple):
        L = len(variant.weights) if L is None else min(L, len(variant.weights))
    if L is None:
        return None
    return variant.mixture_weights(L + 10)[: L] / variant.mixture_weights(L + 10)[: L].sum()


def _companion_radius(coef: np.ndarray) -> float:
    """Spectral radius of x_t = Σ_j coef_j x_{t−1−j}."""
    L = len(coef)
    C = np.zeros((L, L))
    C[0] = coef
    C[1:, :-1] = np.eye(L - 1)
    return float(np.max(np.abs(np.linalg.eigvals(C))))


def _grows(variant: Any) -> bool:
    """A mixture whose window keeps growing: its law has no fixed finite state to converge to."""
    return variant.kind == "mixture" and _eventual_weights(variant) is None


def _horizon_cap(variant: Any) -> int:
    """The longest horizon iterated for a limit (the mixture's exact law costs O(horizon²))."""
    return 1024 if variant.kind == "mixture" else 256 if variant.kind == "curated" else _MAX_ITER


def _fixed_point(step: Callable[[int], _Law], T: int, tol: float = 1e-11, cap: int = _MAX_ITER) -> _Law | None:
    """The law at a generation far enough for it to stop changing (None if it does not converge
    within ``cap`` generations)."""
    horizon = max(2 * T, 32)
    while horizon <= cap:
        law = step(horizon)
        a, b = law.V[-1], law.V[-2]
        if np.all(np.isfinite(a)) and np.max(np.abs(a - b)) <= tol * max(1.0, float(np.max(np.abs(a)))) \
                and np.max(np.abs(law.e[-1] - law.e[-2])) <= tol * max(1.0, float(np.max(np.abs(law.e[-1])))):
            return law
        if not np.all(np.isfinite(a)) or float(np.trace(a)) > 1e12:
            return None
        horizon *= 2
    return None


VARIANT_LEGEND = """\
m             ⌊λn⌋ synthetic samples per generation next to the n real ones (n and no real data for λ = ∞).
rate          factor per generation by which E[μ_t] and E[Σ_t] approach their fixed point (the larger of the
              mean's and the covariance's factor; corrected: k(1−γ)/(n+k) for the mean, exact; mixture: the
              spectral radius of the window's companion matrix; "-": no single factor, see the verdict).
sd at T       RMS distance of the fitted mean to the real mean x̄ at the last generation T (from the law).
stationary sd its limit as T → ∞ ("-": the law has no limit or a schedule changes λ).
E[tr Σ_T]/tr S  expected trace of the fitted covariance at T over the real set's (divide-by-n) trace S;
              "limit": as T → ∞ (the fixed point of the law).
E[μ_T], μ limit  expected fitted mean at T and its fixed point (1-D; printed when the variant moves the mean).
E[r_T], r limit  curation: expected reward of the fit at T, E[E_{N(μ,Σ)} r] = −(a/2)(E[(μ − c)²] + E[Σ]), and its limit.
Verdicts: "stable" contracts at the rate to the limit, "drifts" has no pull back on the mean (λ = ∞),
"collapses" loses its variance; "no prediction" names the reason. Exact or first order: see "law"."""


def _reward(law: _Law, xbar: float, variant: Any) -> float:
    """E[r] of the last fit in ``law``: −(a/2)(E[(μ − c)²] + E[Σ]), E[(μ − c)²] = (E μ − c)² + Var(μ)."""
    c = 0.0 if variant.reward.center is None else float(variant.reward.center[0])
    e, D = float(law.e[-1][0]), float(law.D[-1][0, 0])
    return -0.5 * float(variant.reward.scale) * ((xbar + e - c) ** 2 + max(D - e * e, 0.0) + float(law.V[-1][0, 0]))


def variant_analysis(variant: Any, real: np.ndarray, lambdas: Sequence[float], generations: int, *,
                     estimator: str = "mle", reg_covar: float = 0.0, scheme: str = "replace",
                     model_name: str = "gaussian") -> VariantTheoryResult:
    """The rows ``genloop theory`` prints for a loop variant (module docstring), one per λ."""
    from genloop.loop.schemes import parse_lambda

    start = time.perf_counter()
    real = np.asarray(real, dtype=np.float64)
    n, d = real.shape
    T = int(generations)
    xbar = real.mean(axis=0)
    trS = float(np.trace((real - xbar).T @ (real - xbar) / n))
    reason = unsupported_reason(variant, model=model_name, d=d, scheme=scheme)
    lams = [parse_lambda(v) for v in lambdas]
    if reason:
        res = no_prediction_result(model_name, n, lams, reason, scheme=scheme, generations=T)
        res.seconds = time.perf_counter() - start
        return res
    scheduled = variant.lam_schedule is not None
    moves_mean = d == 1 and (variant.kind == "curated" or (variant.kind == "corrected" and variant.target_mean is not None))
    rows = []
    for lam in lams:
        lam_ts = [variant.lam_at(t, lam, T) for t in range(1, T + 1)]

        def law_to(horizon: int, lam_ts: list = lam_ts, lam: float = lam) -> _Law:
            seq = lam_ts + [lam_ts[-1]] * max(0, horizon - len(lam_ts)) if horizon > len(lam_ts) else lam_ts[:horizon]
            return variant_moments(variant, real, seq, estimator=estimator, reg_covar=reg_covar)

        law = law_to(T)
        ms = [synthetic_count(v, n) for v in lam_ts]
        k_last, n_last = ms[-1], 0 if math.isinf(float(lam_ts[-1])) else n
        row: dict[str, Any] = {"model": model_name, "lam": lam, "m": ms[0] if min(ms) == max(ms) else f"{min(ms)}–{max(ms)}",
                               "rate": None, "sd_T": math.sqrt(max(float(np.trace(law.D[-1])), 0.0)),
                               "stationary_sd": None, "law_T": float(np.trace(law.V[-1])) / trS, "law_inf": None}
        if moves_mean:
            row["mean_T"] = float(xbar[0] + law.e[-1][0])
        if variant.kind == "curated":
            row["reward_T"] = _reward(law, float(xbar[0]), variant)
        if max(ms) == 0:
            row["verdict"] = "no synthetic data: every generation refits the real data"
            row["rate"] = 0.0
            rows.append(row)
            continue
        drifting = math.isinf(lam_ts[-1]) and (variant.kind == "curated" or (_mean_rate(variant, k_last, n_last, d) or 0) >= 1 - 1e-12)
        limit = None if scheduled or drifting or _grows(variant) else _fixed_point(law_to, T, cap=_horizon_cap(variant))
        if limit is not None:
            row["stationary_sd"] = math.sqrt(max(float(np.trace(limit.D[-1])), 0.0))
            row["law_inf"] = float(np.trace(limit.V[-1])) / trS
            if moves_mean:
                row["mean_inf"] = float(xbar[0] + limit.e[-1][0])
            if variant.kind == "curated":
                row["reward_inf"] = _reward(limit, float(xbar[0]), variant)
        row["rate"], row["verdict"] = _rate_and_verdict(variant, law, limit, law_to, k_last, n_last, d, scheduled, T, ms,
                                                      [0 if math.isinf(float(v)) else n for v in lam_ts])
        rows.append(row)
    extra = [("law_T", "E[tr Σ_T]/tr S"), ("law_inf", "limit")]
    if moves_mean:
        extra += [("mean_T", "E[μ_T]"), ("mean_inf", "μ limit")]
    if variant.kind == "curated":
        extra += [("reward_T", "E[r_T]"), ("reward_inf", "r limit")]
    notes = []
    if scheduled:
        notes.append("λ schedule: m per generation from the schedule; rate = geometric mean of the per-generation "
                     "factors; no limit is printed")
    return VariantTheoryResult(
        model_name=model_name, n=n, scheme=scheme, generations=T,
        learner=(f"the registered closed-form fit (estimator {estimator}) on n real + m = ⌊λn⌋ synthetic samples "
                 f"drawn by {_describe(variant)}"),
        law=_law_text(variant), law_title="E[tr Σ_T]/tr S", limit_title="limit", rows=rows, notes=notes,
        seconds=time.perf_counter() - start, d=d, legend=VARIANT_LEGEND, extra=tuple(extra))


def _rate_and_verdict(variant: Any, law: _Law, limit: _Law | None, law_to: Callable[[int], _Law], k: int, n_real: int,
                      d: int, scheduled: bool, T: int, ms: Sequence[int], n_reals: Sequence[int]
                      ) -> tuple[float | None, str]:
    fully = n_real == 0
    if scheduled:
        factors = [_mean_rate(variant, m, nr, d) for m, nr in zip(ms, n_reals)]
        if any(f is None for f in factors):
            return None, "no single rate: the mixture's window grows; see the law columns"
        rate = float(np.exp(np.mean(np.log(np.maximum(factors, 1e-300))))) if all(f > 0 for f in factors) else 0.0
        if rate >= 1 - 1e-12:
            return rate, "drifts: the schedule is fully synthetic (no real data pulls the mean back)"
        return rate, (f"schedule: E[μ] contracts at {rate:.3g}/generation on average (the geometric mean of the "
                      "per-generation factors)")
    mean_rate = _mean_rate(variant, k, n_real, d)
    if variant.kind == "curated" and fully:
        v0, vT = float(law.V[0][0, 0]), float(law.V[-1][0, 0])
        return None, (f"collapses onto the reward's maximiser: E[Σ] falls from {v0:.3g} to {vT:.3g} in {T} "
                      "generations and keeps falling (no real data)")
    if variant.kind == "mixture" and _grows(variant):
        a = k / (n_real + k)
        if fully:
            return None, ("drifts: no real data pulls the mean back (a growing window of past fits averages an "
                          "offset but never removes it)")
        if variant.weights == "geometric":
            rate = variant.decay + a * (1 - variant.decay)
            return rate, (f"stable: an offset decays at β + a(1 − β) = {rate:.3g}/generation asymptotically "
                          f"(β = decay, a = m/(n+m)); the window grows, so no limit is printed")
        return None, (f"stable: the window grows, so an offset decays like a power law t^−{1 - a:.3g} "
                      f"(a = m/(n+m) = {a:.3g}), not geometrically")
    if mean_rate is not None and mean_rate >= 1 - 1e-12:
        v0, vT = float(np.trace(law.V[0])), float(np.trace(law.V[-1]))
        trend = "collapse" if vT < v0 else "growth"
        return mean_rate, (f"drifts: no real data pulls the mean back (random walk); E[tr Σ] goes from {v0:.3g} to "
                           f"{vT:.3g} in {T} generations ({trend})")
    var_rate = _variance_rate(law_to, T, limit)
    if limit is None:
        return mean_rate, "diverges: the law has no fixed point (the variance grows without bound)"
    rate = max(r for r in (mean_rate, var_rate) if r is not None) if variant.kind != "curated" else var_rate
    tail = " (first order in the spread of Σ_t)" if variant.kind == "curated" else ""
    return rate, f"stable: contracts at {rate:.3g}/generation to the limit{tail}"


def _variance_rate(law_to: Callable[[int], _Law], T: int, limit: _Law | None) -> float | None:
    """The factor of the slowest mode of E[Σ_t] near its limit, read off the law itself: the ratio
    of successive distances to the limit once the faster modes have died out."""
    if limit is None:
        return None
    Vinf = limit.V[-1]
    dist = np.array([np.max(np.abs(V - Vinf)) for V in limit.V])
    em = np.array([np.max(np.abs(e - limit.e[-1])) for e in limit.e])
    dist = np.maximum(dist, em)
    scale = max(1.0, float(np.max(np.abs(Vinf))))
    ok = np.nonzero(dist > 1e-9 * scale)[0]
    if len(ok) < 3:
        return 0.0
    t = ok[-2]  # the last ratio well above round-off
    return float(dist[t + 1] / dist[t]) if dist[t] > 0 else 0.0


def _describe(variant: Any) -> str:
    kind = variant.kind
    if kind == "corrected":
        return f"self-correction x ← x + γ(c(x) − x), γ = {variant.gamma:g}, c the OT map to the real Gaussian" + (
            " (given target)" if variant.target_mean is not None else "")
    if kind == "biased":
        return f"biased sampling (temperature T = {variant.temperature:g}, truncation f = {variant.truncation:g})"
    if kind == "curated":
        rule = (f"softmax choice of 1 in K = {variant.K} (τ = {variant.tau:g})" if variant.select == "softmax"
                else f"the top fraction f = {variant.fraction:g} of ⌈m/f⌉ candidates")
        return f"curation by {rule}, reward r = −(a/2)(x − c)²"
    if kind == "mixture":
        return f"a mixture of past fits (weights {variant.weights!r}, window {variant.last_k or 'all'})"
    return "the previous fit"


def _law_text(variant: Any) -> str:
    kind = variant.kind
    if kind in ("biased", "mixture", "plain"):
        return "exact recursion of E[μ_t], E[(μ_t − x̄)²] and E[Σ_t] at the loop's m (docs/theory.md §9)"
    if kind == "corrected":
        return ("mean exact (contracts by m(1−γ)/(n+m)); covariance exact at γ ∈ {0, 1}, otherwise the Jensen term "
                "of Σ ↦ MΣMᵀ is neglected (O(γ(1−γ)/N) relative) (docs/theory.md §9)")
    return ("exact curated moments of N(μ, E Σ_t) (finite K / exact finite-N top fraction) at the sigma points "
            "μ = E μ_t ± sd(μ_t); first order in the spread of Σ_t (docs/theory.md §9)")


def no_prediction_result(model_name: str, n: int, lambdas: Sequence[float], reason: str, *, scheme: str,
                         generations: int, command: str = "") -> VariantTheoryResult:
    """One row per λ saying "no prediction" and why (and, when given, the command that measures it)."""
    how = f"; measure it: {command}" if command else ""
    rows = [{"model": model_name, "lam": lam, "m": synthetic_count(lam, n), "rate": None, "sd_T": None,
             "stationary_sd": None, "law_T": None, "law_inf": None, "verdict": f"no prediction: {reason}{how}"}
            for lam in lambdas]
    return VariantTheoryResult(model_name=model_name, n=n, scheme=scheme, generations=int(generations),
                               learner="no closed-form law for this loop", law=f"none ({reason})", law_title="law at T",
                               limit_title="limit", rows=rows,
                               legend=NO_PREDICTION_LEGEND if command else NO_PREDICTION_LEGEND_IMAGES)


NO_PREDICTION_LEGEND = """\
m             ⌊λn⌋ synthetic samples per generation next to the n real ones (n and no real data for λ = ∞).
verdict       "no prediction" with the reason; `genloop probe CONFIG` measures the loop's contraction rate per λ
              from a few generations of paired runs (docs/theory.md §8)."""
NO_PREDICTION_LEGEND_IMAGES = """\
m             ⌊λn⌋ synthetic samples per generation next to the n real ones (n and no real data for λ = ∞).
verdict       "no prediction" with the reason; the stability probe (genloop probe) needs vector data, so for images
              the observed verdicts over seeds (genloop show) are the only answer."""
