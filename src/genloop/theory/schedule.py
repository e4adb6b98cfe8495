"""λ schedules: the Gaussian loop with a different λ_t every generation, as the product of the
per-generation maps (docs/variants.md).

With a schedule (``loop.variant.lam_schedule``) generation t draws m_t = ⌊λ_t n⌋ synthetic
samples. The registered ``gaussian`` model's exact recursion of (C_t, V_t) = (Cov(μ_t − μ_ref),
E[Σ_t]) (:func:`genloop.theory.expfam.gaussian_scheme_moments`, schemes ``replace`` and
``fresh``) holds generation by generation with m replaced by m_t, because each step only
conditions on the previous one; the mean deviation is multiplied by a_t = m_t/(n + m_t), so an
offset of generation 0 shrinks by Π_{s≤t} a_s and the schedule's average rate over T
generations is (Π_{s≤T} a_s)^{1/T} (1 per generation where λ_t = ∞).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from genloop.errors import ConfigError
from genloop.loop.schemes import synthetic_count

__all__ = ["gaussian_schedule_analysis", "gaussian_schedule_moments", "schedule_rates"]


def schedule_rates(n: int, lams: Sequence[float]) -> np.ndarray:
    """a_t = m_t/(n + m_t) per generation t = 1 … T (1 for λ_t = ∞, 0 for λ_t = 0)."""
    return np.array([1.0 if math.isinf(lam) else synthetic_count(lam, n) / (n + synthetic_count(lam, n))
                     for lam in lams])


def gaussian_schedule_moments(n: int, lams: Sequence[float], cov: np.ndarray, *, scheme: str = "replace",
                              estimator: str = "mle", reg_covar: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(C_t, V_t), t = 0 … T = len(lams), exact, for λ_t = ``lams[t-1]`` (module docstring).

    ``cov``: the fixed real set's divide-by-n covariance (replace) or the data law's (fresh).
    """
    if scheme not in ("replace", "fresh"):
        raise ConfigError(f"the scheduled Gaussian law covers schemes replace and fresh, got {scheme!r}")
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    d = cov.shape[0]
    R = float(reg_covar) * np.eye(d)

    def s(N: int) -> float:
        return N / (N - 1) if estimator == "unbiased" else 1.0

    T = len(lams)
    C = np.zeros((T + 1, d, d))
    V = np.zeros((T + 1, d, d))
    if scheme == "fresh":
        C[0] = cov / n
        V[0] = s(n) * (n - 1) / n * cov + R
    else:
        V[0] = s(n) * cov + R
    for t, lam in enumerate(lams):
        n_real = 0 if math.isinf(lam) else n
        m = synthetic_count(lam, n)
        if m == 0:
            C[t + 1], V[t + 1] = C[0], V[0]
            continue
        N = n_real + m
        if scheme == "fresh" and n_real > 0:
            C[t + 1] = (n_real * cov + m * m * C[t] + m * V[t]) / N**2
        else:
            C[t + 1] = (m / N) ** 2 * (C[t] + V[t] / m)
        V[t + 1] = s(N) * ((n_real * cov + m * (V[t] + C[t])) / N - C[t + 1]) + R
    return C, V


def gaussian_schedule_analysis(real: np.ndarray, lambdas: Sequence[float], generations: int,
                               lam_at: Callable[[int, float, int], float], *, scheme: str = "replace",
                               estimator: str = "mle", reg_covar: float = 0.0, data_cov: np.ndarray | None = None):
    """The rows ``genloop theory`` prints for the registered ``gaussian`` model with a λ schedule:
    per configured λ, the schedule's average rate (Π a_t)^{1/T}, the exact spread of the mean at T
    and E[tr Σ_T]/tr Σ_ref (the variance kept), from :func:`gaussian_schedule_moments`.
    Returns a :class:`genloop.theory.laws.LawTheoryResult`."""
    import time

    from genloop.loop.schemes import parse_lambda
    from genloop.theory.laws import LawTheoryResult

    start = time.perf_counter()
    real = np.asarray(real, dtype=np.float64)
    n = real.shape[0]
    T = int(generations)
    diff = real - real.mean(axis=0)
    cov = diff.T @ diff / n if scheme == "replace" or data_cov is None else np.atleast_2d(data_cov)
    rows = []
    for lam in (parse_lambda(v) for v in lambdas):
        lams = [lam_at(t, lam, T) for t in range(1, T + 1)]
        a = schedule_rates(n, lams)
        C, V = gaussian_schedule_moments(n, lams, cov, scheme=scheme, estimator=estimator, reg_covar=reg_covar)
        ms = [synthetic_count(v, n) for v in lams]
        rate = float(np.exp(np.mean(np.log(a)))) if np.all(a > 0) else 0.0
        drifting = any(math.isinf(v) for v in lams[-max(1, T // 4):])
        verdict = ("drifts: the schedule ends fully synthetic (no real data pulls it back)" if drifting
                   else f"stable: the product of the per-generation maps contracts at {rate:.3g}/generation on average")
        rows.append({"model": "gaussian", "lam": lam, "m": f"{min(ms)}–{max(ms)}" if min(ms) != max(ms) else ms[0],
                     "rate": rate, "norm2": None, "transient": None,
                     "sd_T": math.sqrt(max(float(np.trace(C[-1])), 0.0)), "stationary_sd": None,
                     "law_T": float(np.trace(V[-1]) / np.trace(cov)), "law_inf": None, "verdict": verdict})
    return LawTheoryResult(
        model_name="gaussian", n=n, scheme=scheme, generations=T,
        learner=f"the registered closed-form fit (estimator {estimator}) with λ_t from the schedule, m_t = ⌊λ_t n⌋",
        law=("exact Gaussian recursion generation by generation with m_t (the product of the per-generation "
             "maps; rate = (Π m_t/(n+m_t))^{1/T}); sd at T: the mean's RMS distance to the reference"),
        law_title="E[tr Σ_T]/tr Σ_ref", limit_title="limit", rows=rows,
        notes=["λ schedule: the rate column is the geometric mean of the per-generation factors m_t/(n+m_t)"],
        seconds=time.perf_counter() - start)
