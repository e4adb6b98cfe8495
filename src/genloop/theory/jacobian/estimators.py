"""The exact Jacobian J(λ) = λ(A + λB)⁻¹B, the paper's Theorem 1/2 quantities and their estimators
(see :mod:`genloop.theory.jacobian`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import ot
from scipy import linalg

from genloop.errors import ConfigError
from genloop.loop.schemes import parse_lambda as _check_lam
from genloop.models._parametric import (
    ParametricDensity,
    Tensor,
    _check_weights,
    _check_x,
    _t,
    expected_neg_hessian,
    per_sample_hessians,
)

log = logging.getLogger(__name__)

__all__ = [
    "StabilityAnalysis",
    "analyze",
    "bootstrap_constants",
    "estimate_free_condition",
    "estimate_lipschitz",
    "estimate_w1",
    "generalized_eigenvalues",
    "jacobian_eigenvalues",
    "linearized_stationary_covariance",
    "paper_condition",
    "paper_rate",
    "retraining_jacobian",
    "retraining_map",
    "spectral_radius",
    "theorem2_radius",
    "transient_amplification",
]


# ---- the exact Jacobian ---------------------------------------------------------------------------
def _check_AB(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    if A.shape != B.shape or A.shape[0] != A.shape[1]:
        raise ConfigError(f"A and B must be square matrices of one shape, got {A.shape} and {B.shape}")
    return 0.5 * (A + A.T), 0.5 * (B + B.T)


def retraining_jacobian(A: np.ndarray, B: np.ndarray, lam: float) -> np.ndarray:
    """J(λ) = λ (A + λB)^{-1} B, the Jacobian of G_λ at θ* (identity at λ = ∞).

    Implicit function theorem applied to the paper's fixed-point map (Section 3, refining
    Theorem 1): exact to first order around θ*, for any λ.
    """
    A, B = _check_AB(A, B)
    lam = _check_lam(lam)
    if math.isinf(lam):
        return np.eye(A.shape[0])
    return lam * np.linalg.solve(A + lam * B, B)


def generalized_eigenvalues(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """κ with B v = κ A v, descending (``scipy.linalg.eigh(B, A)``; needs A ≻ 0).

    κ = 1 for all directions when A = B (exponential families at their moment-matching fit).
    """
    A, B = _check_AB(A, B)
    try:
        kappa = linalg.eigh(B, A, eigvals_only=True)
    except linalg.LinAlgError:
        raise ConfigError(
            "A = -E_data[Hessian] is not positive definite: θ* is not a strict local maximum "
            "(the paper's α-strong concavity fails)"
        ) from None
    return np.sort(kappa)[::-1]


def jacobian_eigenvalues(A: np.ndarray, B: np.ndarray, lam: float) -> np.ndarray:
    """Eigenvalues λκ/(1+λκ) of J(λ), descending (1 at λ = ∞)."""
    lam = _check_lam(lam)
    kappa = generalized_eigenvalues(A, B)
    if math.isinf(lam):
        return np.ones_like(kappa)
    return lam * kappa / (1.0 + lam * kappa)


def spectral_radius(A: np.ndarray, B: np.ndarray, lam: float) -> float:
    """Exact local contraction rate max|λκ/(1+λκ)| of retraining around θ* (< 1 for λ < ∞)."""
    return float(np.max(np.abs(jacobian_eigenvalues(A, B, lam))))


# ---- the paper's Theorem 1 and 2 ------------------------------------------------------------------
def paper_condition(lam: float, alpha: float, L: float, eps: float) -> bool:
    """The paper's Theorem 1 sufficient condition λ(1 + Lε/α) < 1/2."""
    lam = _check_lam(lam)
    if alpha <= 0:
        return False
    return bool(lam * (1.0 + L * eps / alpha) < 0.5)


def paper_rate(lam: float, alpha: float, L: float, eps: float) -> float:
    """The paper's Theorem 1 rate ρ(λ) = λ(α+εL)/(α - λ(α+εL)).

    ``inf`` when the denominator is ≤ 0 (the bound says nothing there); ρ < 1 exactly when
    :func:`paper_condition` holds.
    """
    lam = _check_lam(lam)
    if math.isinf(lam) or alpha <= 0:
        return math.inf
    num = lam * (alpha + eps * L)
    den = alpha - num
    return math.inf if den <= 0 else num / den


def linearized_stationary_covariance(A: np.ndarray, B: np.ndarray, n: int, m: int) -> np.ndarray:
    """Stationary covariance of θ_t around the real-data fit, n real + m synthetic per generation.

    Linearising the finite-sample replace loop (λ_eff = m/n): θ_{t+1} - θ̂ ≈ J(θ_t - θ̂) +
    λ_eff (A + λ_eff B)^{-1} ḡ_t with ḡ_t the mean score of m draws of p_θ* (Cov B/m); the
    stationary covariance solves Σ = JΣJᵀ + Q (discrete Lyapunov). For A = B it is exactly
    m/(n(n+2m)) B^{-1} ≈ λ/(n(1+2λ)) B^{-1} (docs/theory.md). Refines the paper's Theorem 2.
    """
    A, B = _check_AB(A, B)
    if m == 0:
        return np.zeros_like(A)
    lam = m / n
    M = np.linalg.inv(A + lam * B)
    J = lam * M @ B
    Q = lam**2 * M @ (B / m) @ M.T
    S = linalg.solve_discrete_lyapunov(J, Q)
    return 0.5 * (S + S.T)


def estimate_lipschitz(
    model: ParametricDensity,
    theta: Tensor,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    n_points: int = 256,
    weights: np.ndarray | None = None,
) -> float:
    """An *estimate* of L, the Lipschitz constant in x of ∇²_θ log p_θ(x) (paper, Theorem 1).

    max over pairs of ``n_points`` points (half drawn from ``x``, half from p_θ) of
    ||H(x_i) - H(x_j)||_2 / ||x_i - x_j||. It is a lower bound of the true constant over the
    sampled region; for Gaussians the Hessian is quadratic in x and no global L exists, so the
    value depends on how far the points reach.
    """
    x = _check_x(x, model.d)
    w = _check_weights(weights, x.shape[0])
    k = max(2, n_points // 2)
    pts = np.concatenate([x[rng.choice(x.shape[0], size=k, replace=True, p=w)], model.sample(theta, k, rng)])
    H = per_sample_hessians(model, theta, pts)
    best = 0.0
    for i in range(pts.shape[0] - 1):
        dx = np.linalg.norm(pts[i + 1 :] - pts[i], axis=1)
        ok = dx > 1e-12
        if not np.any(ok):
            continue
        dH = np.linalg.norm(H[i + 1 :][ok] - H[i], ord=2, axis=(1, 2))
        best = max(best, float(np.max(dH / dx[ok])))
    return best


def estimate_w1(
    model: ParametricDensity,
    theta: Tensor,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    n_samples: int = 2000,
    weights: np.ndarray | None = None,
) -> float:
    """ε ≈ W₁(p_θ, p_data) (paper, Theorem 1) between samples, Euclidean cost (POT).

    In 1-D the exact ``ot.wasserstein_1d`` between the (weighted) data and ``max(n_samples,
    len(x))`` model draws; otherwise ``ot.emd2`` on at most ``n_samples`` points of each. The
    sample estimate is biased upwards by sampling noise (of order n^{-1/d}).
    """
    x = _check_x(x, model.d)
    w = _check_weights(weights, x.shape[0])
    if model.d == 1:
        y = model.sample(theta, max(n_samples, x.shape[0]), rng)
        return float(ot.wasserstein_1d(x[:, 0], y[:, 0], w, None, p=1))
    if x.shape[0] > n_samples:
        idx = rng.choice(x.shape[0], size=n_samples, replace=False, p=w)
        x, w = x[idx], np.full(n_samples, 1.0 / n_samples)
    y = model.sample(theta, n_samples, rng)
    M = ot.dist(x, y, metric="euclidean")
    return float(ot.emd2(w, np.full(n_samples, 1.0 / n_samples), M))


def bootstrap_constants(
    model: ParametricDensity,
    real: np.ndarray,
    *,
    rng: np.random.Generator,
    n_boot: int = 200,
    deltas: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02),
) -> tuple[float, float]:
    """Estimates of (a, b) in the paper's generalisation assumption (Theorem 2).

    The assumption reads ||θ̂_n - θ*|| ≤ a sqrt(log(b/δ))/sqrt(n) with probability 1-δ. We
    bootstrap the real-data fit (``n_boot`` resamples with replacement, each fit warm-started
    from θ̂), take the (1-δ)-quantiles
    q_δ of sqrt(n)||θ̂^boot - θ̂||, and fit q_δ² = a² log b + a² log(1/δ) by least squares over
    ``deltas`` (b clipped to ≥ 1). This is an estimate of the sampling law of the fit, not a
    guaranteed bound.
    """
    real = _check_x(real, model.d, "real")
    n = real.shape[0]
    theta_hat = model.fit(real).numpy()
    devs = np.empty(n_boot)
    for i in range(n_boot):
        boot = real[rng.integers(0, n, size=n)]
        # warm start from θ̂ keeps the labelling of symmetric models (e.g. mixtures) aligned
        fit = model.fit(boot, init=_t(theta_hat)).numpy()
        devs[i] = math.sqrt(n) * float(np.linalg.norm(fit - theta_hat))
    ds = np.asarray(deltas, dtype=np.float64)
    q2 = np.quantile(devs, 1.0 - ds) ** 2
    slope, intercept = np.polyfit(np.log(1.0 / ds), q2, 1)
    if slope <= 0:  # degenerate spread: fall back to b = 1 and the largest quantile
        a = float(np.sqrt(np.max(q2) / np.log(1.0 / ds.min())))
        return a, 1.0
    a = float(np.sqrt(slope))
    b = float(max(1.0, np.exp(intercept / slope)))
    return a, b


def theorem2_radius(a: float, b: float, n: int, delta: float, rho: float) -> float:
    """(a/sqrt(n)) sqrt(log(b/δ)) / (1 - ρ): the paper's Theorem 2 radius (inf when ρ ≥ 1)."""
    if not (0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    if not math.isfinite(rho) or rho >= 1:
        return math.inf
    return a / math.sqrt(n) * math.sqrt(max(math.log(b / delta), 0.0)) / (1.0 - rho)


# ---- the retraining map itself ---------------------------------------------------------------------
def retraining_map(
    model: ParametricDensity,
    theta_prev: Tensor,
    x_data: np.ndarray,
    lam: float,
    *,
    data_weights: np.ndarray | None = None,
    synthetic: tuple[np.ndarray, np.ndarray] | None = None,
) -> Tensor:
    """G_λ(θ') = argmax_θ Σ w_i log p_θ(x_i) + λ E_{p_θ'}[log p_θ] (the paper's map, Section 3),
    minus (r/2)|θ|² when the model has a ``ridge`` r.

    E_{p_θ'} uses ``model.quadrature(θ')`` (deterministic, so the map can be differentiated by
    finite differences) or the given ``synthetic`` nodes and weights.
    """
    lam = _check_lam(lam)
    if math.isinf(lam):
        raise ConfigError("the retraining map needs a finite lambda")
    x = _check_x(x_data, model.d)
    w = _check_weights(data_weights, x.shape[0])
    quad = synthetic if synthetic is not None else model.quadrature(theta_prev)
    if quad is None:
        raise ConfigError(f"{type(model).__name__} has no quadrature: pass synthetic=(nodes, weights)")
    xs, ws = _check_x(quad[0], model.d, "synthetic"), _check_weights(quad[1], len(quad[1]))
    X = np.concatenate([x, xs])
    W = np.concatenate([w, lam * ws])
    if model.ridge:
        # fit normalises the weights to sum 1: rescale the penalty of the (1+λ)-mass objective
        return model.fit(X, W, init=theta_prev, ridge=model.ridge / (1.0 + lam))
    return model.fit(X, W, init=theta_prev)


# ---- everything at once -------------------------------------------------------------------------
@dataclass
class StabilityAnalysis:
    """θ*, A, B and the Theorem 1 quantities of one model fitted to one data set."""

    model_name: str
    param_names: list[str]
    theta_star: np.ndarray
    A: np.ndarray
    B: np.ndarray
    kappa: np.ndarray
    alpha: float
    L: float
    eps: float
    exponential_family: bool
    extras: dict[str, float] = field(default_factory=dict)

    def jacobian(self, lam: float) -> np.ndarray:
        """J(λ) = λ(A + λB)^{-1}B."""
        return retraining_jacobian(self.A, self.B, lam)

    def spectral_radius(self, lam: float) -> float:
        """Exact local rate λκ_max/(1+λκ_max)."""
        lam = _check_lam(lam)
        if math.isinf(lam):
            return 1.0
        k = float(self.kappa[0])
        return lam * k / (1.0 + lam * k)

    def paper_condition(self, lam: float) -> bool:
        """Theorem 1: λ(1 + Lε/α) < 1/2."""
        return paper_condition(lam, self.alpha, self.L, self.eps)

    def paper_rate(self, lam: float) -> float:
        """Theorem 1: ρ(λ) (inf where undefined)."""
        return paper_rate(lam, self.alpha, self.L, self.eps)

    def stationary_covariance(self, n: int, m: int) -> np.ndarray:
        """Linearised stationary covariance of θ_t (n real, m synthetic per generation)."""
        return linearized_stationary_covariance(self.A, self.B, n, m)


def analyze(
    model: ParametricDensity,
    real: np.ndarray,
    *,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    n_fisher: int = 200_000,
    lipschitz_points: int | None = None,
    w1_samples: int = 2000,
) -> StabilityAnalysis:
    """Fit θ* on ``real`` and estimate A, B, κ, α, L and ε (paper, Theorem 1 quantities).

    ``weights`` turns ``real`` into a weighted point set (e.g. quadrature of a known p_data).
    ``lipschitz_points`` defaults to 256 (96 for models with more than 20 parameters, where
    each pair costs an SVD of a p × p matrix).
    """
    if lipschitz_points is None:
        lipschitz_points = 256 if model.n_params <= 20 else 96
    real = _check_x(real, model.d, "real")
    w = _check_weights(weights, real.shape[0])
    theta = model.fit(real, w)
    A = expected_neg_hessian(model, theta, real, w) + float(model.ridge) * np.eye(model.n_params)
    B = model.fisher(theta, rng=rng, n_mc=n_fisher)
    kappa = generalized_eigenvalues(A, B)
    alpha = float(np.linalg.eigvalsh(A)[0])
    L = estimate_lipschitz(model, theta, real, rng=rng, n_points=lipschitz_points, weights=w)
    eps = estimate_w1(model, theta, real, rng=rng, n_samples=w1_samples, weights=w)
    # Noise floor of the sample W1 estimator: W1 between two independent model samples of the
    # same sizes (an ε below it cannot be told apart from a perfect fit).
    m_floor = max(w1_samples, real.shape[0]) if model.d == 1 else min(w1_samples, real.shape[0])
    eps_floor = estimate_w1(model, theta, model.sample(theta, m_floor, rng), rng=rng, n_samples=w1_samples)
    log.debug("analysis of %s: alpha=%g L=%g eps=%g kappa=%s", model.name, alpha, L, eps, kappa)
    return StabilityAnalysis(
        model_name=model.name, param_names=model.param_names(), theta_star=theta.numpy(), A=A, B=B,
        kappa=kappa, alpha=alpha, L=L, eps=eps, exponential_family=model.exponential_family,
        extras={"eps_floor": eps_floor},
    )


# ---- norms of the Jacobian and the estimate-free Theorem 1 bound ---------------------------------
def transient_amplification(J: np.ndarray, *, t_max: int = 10_000) -> tuple[float, int]:
    """(max_{t≥1} ‖Jᵗ‖₂, the t where it is reached): the worst growth of a perturbation before
    the loop contracts, in the Euclidean norm of the parameter coordinates.

    J = λ(A+λB)⁻¹B is self-adjoint in the A-inner product (A J = λ(B − λB(A+λB)⁻¹B) is
    symmetric), so it is diagonalisable with real eigenvalues, J = V D V⁻¹, ‖Jᵗ‖_A = ρ(J)ᵗ and
    ‖Jᵗ‖₂ ≤ cond(V)·ρᵗ: the scan stops once that envelope falls below the best value found
    (or at ``t_max``), so the maximum is exact.
    """
    J = np.atleast_2d(np.asarray(J, dtype=np.float64))
    eigvals, V = np.linalg.eig(J)
    rho = float(np.max(np.abs(eigvals)))
    try:
        envelope = float(np.linalg.cond(V))
    except np.linalg.LinAlgError:
        envelope = math.inf
    best, best_t = 0.0, 1
    P = np.eye(J.shape[0])
    for t in range(1, t_max + 1):
        P = J @ P
        v = float(np.linalg.norm(P, 2))
        if v > best:
            best, best_t = v, t
        if rho < 1 and math.isfinite(envelope) and envelope * rho**t < best:
            break
    return best, best_t


def estimate_free_condition(A: np.ndarray, B: np.ndarray, lam: float) -> tuple[bool, float]:
    """Theorem 1 with the exact ‖A − B‖₂ in place of Lε: (λ(1 + ‖A−B‖/α) < 1/2, the bound ρ_δ).

    The paper's proof needs only ‖A − B‖ ≤ Lε (A = −E_data[∇²log p_θ*], B = −E_{p_θ*}[∇²log p_θ*],
    Kantorovich–Rubinstein). With K = A⁻¹B, ‖K‖₂ ≤ 1 + δ/α (δ = ‖A − B‖₂, α = λ_min(A)), and
    J = (I + λK)⁻¹λK gives ‖J‖₂ ≤ q/(1 − q) with q = λ(1 + δ/α) whenever q < 1: the
    Euclidean one-step bound ρ_δ(λ) = λ(α+δ)/(α − λ(α+δ)), < 1 exactly when q < 1/2. It needs no
    estimate of L or ε; ``(False, inf)`` when α ≤ 0 or q ≥ 1 (no statement).
    """
    A, B = _check_AB(A, B)
    lam = _check_lam(lam)
    alpha = float(np.linalg.eigvalsh(A)[0])
    if alpha <= 0 or math.isinf(lam):
        return False, math.inf
    delta = float(np.linalg.norm(A - B, 2))
    q = lam * (1.0 + delta / alpha)
    rho = q / (1.0 - q) if q < 1 else math.inf
    return bool(q < 0.5), rho
