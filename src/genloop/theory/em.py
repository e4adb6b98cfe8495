"""The retraining map of the learner that actually runs for ``gmm``: k warm-started EM steps.

genloop's ``gmm`` (scikit-learn's ``GaussianMixture``) is warm-started from the previous
generation and stops when the mean log-likelihood changes by less than ``tol`` (default 1e-3),
typically after 2-3 EM iterations. Its retraining map is then not the exact maximiser G_λ of
docs/theory.md §3 but

    F_k(θ') = EM^k(start = θ';  data = (1−a)·p_real + a·p_θ'),     a = m/(n+m),

k EM iterations (E step then M step, ``reg_covar`` added to every covariance as scikit-learn
does) on the mix of the n real points and the synthetic measure of the previous model. θ*
(the exact maximum-likelihood mixture of the real data) is a fixed point of F_k for every k,
and F_k → G_λ as k → ∞.

Everything here is computed without Monte Carlo: p_θ' is represented by a fixed quadrature
grid whose weights p_θ'(x)·h^d depend on θ' (differentiable), so ∂F_k/∂θ' at θ* (the
learner's Jacobian J_k) and the influence functions of the real and synthetic points (whence
the per-generation noise covariances of the linearised loop) are exact derivatives of the
computation by reverse-mode automatic differentiation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genloop.errors import ConfigError
from genloop.theory.jacobian import GMMDensity

log = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = ["gmm_parameter_vector", "gmm_model_at", "EMLearnerMap", "EMStepDerivatives", "em_step_derivatives", "em_learner_map", "gmm_em_steps"]


def gmm_parameter_vector(model: Any, reference_means: np.ndarray | None = None) -> np.ndarray:
    """θ of a fitted registered ``gmm`` (full covariances) in :class:`GMMDensity` coordinates.

    With ``reference_means`` (K, d) the components are first permuted to match them
    (Hungarian algorithm on squared distances between means), undoing label switching.
    """
    from scipy.optimize import linear_sum_assignment

    if getattr(model, "covariance_type", None) != "full":
        raise ConfigError(f"gmm parameter vectors need covariance_type 'full', got {getattr(model, 'covariance_type', None)!r}")
    w = np.asarray(model.weights_, dtype=np.float64)
    mu = np.asarray(model.means_, dtype=np.float64)
    cov = np.asarray(model.covariances_, dtype=np.float64)
    if reference_means is not None:
        cost = ((np.asarray(reference_means)[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
        _, perm = linear_sum_assignment(cost)
        w, mu, cov = w[perm], mu[perm], cov[perm]
    density = GMMDensity(len(w), mu.shape[1])
    return density.pack(w / w.sum(), mu, cov).numpy()


def gmm_model_at(density: GMMDensity, theta: np.ndarray | Tensor, options: dict[str, Any]) -> Any:
    """A fitted registered ``gmm`` (full covariances, ``options`` as in the config) whose state is θ
    (:class:`GMMDensity` coordinates): the start of a replayed loop."""
    from genloop.models import make_model

    log_w, mu, L = (a.detach().numpy() for a in density.unpack(torch.as_tensor(np.asarray(theta, dtype=np.float64))))
    cov = np.einsum("kij,klj->kil", L, L)
    model = make_model("gmm", **{**options, "n_components": density.K, "covariance_type": "full"})
    prec_chol = np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)
    w = np.exp(log_w)
    model.set_state({"weights": w / w.sum(), "means": mu, "covariances": cov, "precisions_cholesky": prec_chol},
                    {"converged": True, "n_iter": 0, "lower_bound": float("nan")})
    return model


def _jacrev(f: Callable[..., Tensor], *args: Tensor) -> tuple[Tensor, ...]:
    """Reverse-mode Jacobians of a vector function in every argument: one vector-Jacobian
    product per output, vectorised (``torch.func.vjp`` + ``vmap``)."""
    out, vjp_fn = torch.func.vjp(f, *args)
    return torch.func.vmap(vjp_fn)(torch.eye(out.numel(), dtype=out.dtype))


def _pack(density: GMMDensity, log_w: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """θ (GMMDensity coordinates) from log weights, means and covariances, differentiably."""
    K, d = density.K, density.d
    logits = log_w[1:] - log_w[0]
    L = torch.linalg.cholesky(covs)
    rows, cols = np.tril_indices(d)
    vals = L[:, rows, cols]
    diag = torch.as_tensor(rows == cols)
    vals = torch.where(diag, torch.log(torch.where(diag, vals, torch.ones_like(vals))), vals)
    parts = [logits] + [torch.cat([means[k], vals[k]]) for k in range(K)]
    return torch.cat(parts)


def gmm_em_steps(
    density: GMMDensity, theta_start: Tensor, x: Tensor, w: Tensor, k: int, reg_covar: float
) -> Tensor:
    """k EM iterations of scikit-learn's full-covariance GaussianMixture on weighted points.

    E step: responsibilities r_ik ∝ π_k N(x_i; μ_k, Σ_k); M step: n_k = Σ_i w_i r_ik,
    π_k = n_k/Σn_k, μ_k = Σ_i w_i r_ik x_i/n_k, Σ_k = Σ_i w_i r_ik (x_i−μ_k)(x_i−μ_k)ᵀ/n_k +
    reg_covar·I (``sklearn.mixture._gaussian_mixture._estimate_gaussian_parameters`` with
    sample weights w). Returns θ after the k-th M step; differentiable in every input.
    """
    log_w, means, Ls = density.unpack(theta_start)
    covs = Ls @ Ls.transpose(1, 2)
    eye = torch.eye(density.d, dtype=torch.float64)
    w = w / w.sum()
    for _ in range(int(k)):
        L = torch.linalg.cholesky(covs)
        diff = (x[None, :, :] - means[:, None, :]).transpose(1, 2)  # (K, d, n)
        z = torch.linalg.solve_triangular(L, diff, upper=False)
        log_det = torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
        comp = log_w[:, None] - 0.5 * (z * z).sum(1) - log_det[:, None] - 0.5 * density.d * math.log(2 * math.pi)
        resp = torch.exp(comp - torch.logsumexp(comp, 0, keepdim=True))  # (K, n)
        rw = resp * w[None, :]
        nk = rw.sum(1)
        log_w = torch.log(nk) - torch.log(nk.sum())
        means = (rw @ x) / nk[:, None]
        centered = x[None, :, :] - means[:, None, :]  # (K, n, d)
        covs = torch.einsum("kn,kni,knj->kij", rw, centered, centered) / nk[:, None, None] + reg_covar * eye
    return _pack(density, log_w, means, covs)


@dataclass
class EMLearnerMap:
    """The linearised k-step EM retraining map at θ*: θ_{t+1} − θ* ≈ J (θ_t − θ*) + noise.

    ``J`` = ∂F_k/∂θ' at θ*; ``Q_synth`` the covariance of the noise from the m synthetic draws
    (first order: Cov_{p_θ*}[IF_synth]/m); ``Q_real`` that from n real draws (Cov_data[IF_real]/n,
    used for one-step constants and the ``fresh`` scheme); ``fixed_point_error`` = |F_k(θ*) − θ*|_∞
    (quadrature and ``reg_covar`` make it small but not 0).
    """

    k: int
    lam_eff: float
    J: np.ndarray
    Q_synth: np.ndarray
    Q_real: np.ndarray
    fixed_point_error: float


@dataclass
class EMStepDerivatives:
    """Derivatives at θ* of one EM step on the real points alone (suffix ``_r``) and on the
    synthetic measure p_θ' alone (suffix ``_s``), from which every mix follows (see
    :func:`em_step_derivatives`)."""

    D1_r: np.ndarray  # ∂M_real/∂θ_start
    G_r: np.ndarray  # ∂M_real/∂u_real (p, n)
    D1_s: np.ndarray  # ∂M_synth/∂θ_start
    D2_s: np.ndarray  # ∂M_synth/∂θ'
    G_s: np.ndarray  # ∂M_synth/∂u_synth (p, nodes)
    w_s: np.ndarray  # quadrature weights of p_θ* on the nodes (sum 1)
    n: int
    fixed_point_error: float


def em_step_derivatives(
    density: GMMDensity,
    theta_star: Tensor,
    real: np.ndarray,
    *,
    reg_covar: float = 1e-6,
    nodes: tuple[np.ndarray, np.ndarray] | None = None,
) -> EMStepDerivatives:
    """Differentiate one EM step at θ* on the real points and on the synthetic measure.

    The M step is a function h of the normalised sufficient statistics S = (Σ w r_k, Σ w r_k x,
    Σ w r_k xxᵀ); on a mix with synthetic share a, S = (1−a) S_real + a S_synth. At θ* both
    parts are EM fixed points (θ* is the maximum-likelihood fit of the real data and of its
    own distribution), so h(S_real) = h(S_synth) = θ* and, h being one-to-one, S_real =
    S_synth there: every derivative of the mixed step is (1−a)·(real part) + a·(synthetic
    part) with one common h'. Two passes of automatic differentiation serve every λ.

    ``nodes`` = (points x_i, factors c_i) with p_θ'(x_i)·c_i the quadrature weights of the
    synthetic measure (default :meth:`GMMDensity.quadrature_grid` at θ*).
    """
    grid = density.quadrature_grid(theta_star) if nodes is None else nodes
    if grid is None:
        raise ConfigError(f"no quadrature grid for a {density.d}-dimensional mixture: the EM learner map needs d <= 2")
    xs = torch.as_tensor(np.asarray(grid[0], dtype=np.float64))
    cell = torch.as_tensor(np.asarray(grid[1], dtype=np.float64))
    xr = torch.as_tensor(np.asarray(real, dtype=np.float64))
    n = xr.shape[0]
    th = theta_star.detach().to(torch.float64)

    def step_real(theta_start: Tensor, u_real: Tensor) -> Tensor:
        return gmm_em_steps(density, theta_start, xr, u_real / n, 1, reg_covar)

    def step_synth(theta_start: Tensor, theta_synth: Tensor, u_synth: Tensor) -> Tensor:
        ws = torch.exp(density.log_prob(xs, theta_synth)) * cell
        return gmm_em_steps(density, theta_start, xs, ws / ws.sum() * u_synth, 1, reg_covar)

    u_r = torch.ones(n, dtype=torch.float64)
    u_s = torch.ones(xs.shape[0], dtype=torch.float64)
    with torch.no_grad():
        err = max(float((step_real(th, u_r) - th).abs().max()), float((step_synth(th, th, u_s) - th).abs().max()))
        ws = torch.exp(density.log_prob(xs, th)) * cell
        ws = (ws / ws.sum()).numpy()
    D1_r, G_r = (j.numpy() for j in _jacrev(step_real, th, u_r))
    D1_s, D2_s, G_s = (j.numpy() for j in _jacrev(step_synth, th, th, u_s))
    log.debug("EM step derivatives: |M(θ*) − θ*| = %.2g", err)
    return EMStepDerivatives(D1_r=D1_r, G_r=G_r, D1_s=D1_s, D2_s=D2_s, G_s=G_s, w_s=ws, n=n, fixed_point_error=err)


def em_learner_map(deriv: EMStepDerivatives, lam_eff: float, ks: Sequence[int], m: int) -> dict[int, EMLearnerMap]:
    """J_k, Q_synth and Q_real of the k-step warm-started EM map at θ*, for each k in ``ks``.

    With a = m/(n+m) the one-step derivatives are D1 = (1−a)D1_r + aD1_s, D2 = aD2_s and, for
    the point masses, (1−a)G_r and aG_s (:func:`em_step_derivatives`). Linearising k steps with
    the synthetic set fixed at θ' = θ* + δ gives θ_k − θ* = D1^k δ + Σ_{j<k} D1^j D2 δ, so
    J_k = D1^k + Σ_{j<k} D1^j D2, and the response to the point masses is Σ_{j<k} D1^j G.
    Influence functions (the response when one point's mass grows with its part's total mass
    fixed) IF_i = (∂F/∂u_i)/w_i − Σ_j ∂F/∂u_j give Q_synth = E_{p_θ*}[IF IFᵀ]/m and
    Q_real = E_data[IF IFᵀ]/n.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"the EM learner needs k >= 1 iterations, got {ks}")
    if m < 0:
        raise ConfigError(f"m must be >= 0 synthetic samples, got {m}")
    a = lam_eff / (1.0 + lam_eff)  # m = 0: EM continuing on the real data alone (J_k = D1_r^k)
    D1 = (1.0 - a) * deriv.D1_r + a * deriv.D1_s
    D2 = a * deriv.D2_s
    p, n, ws = D1.shape[0], deriv.n, deriv.w_s
    keep = ws > 1e-300
    out: dict[int, EMLearnerMap] = {}
    power, acc = np.eye(p), np.zeros((p, p))  # D1^j and Σ_{i<j} D1^i
    j = 0
    for k in ks:
        while j < k:
            acc = acc + power
            power = D1 @ power
            j += 1
        J = power + acc @ D2
        g_s, g_r = a * (acc @ deriv.G_s), (1.0 - a) * (acc @ deriv.G_r)
        if_s = g_s[:, keep] / ws[keep] - g_s.sum(1, keepdims=True)
        Q_synth = (if_s * ws[keep]) @ if_s.T / m if m else np.zeros((p, p))
        if_r = g_r * n - g_r.sum(1, keepdims=True)
        Q_real = if_r @ if_r.T / n / n
        out[k] = EMLearnerMap(k=k, lam_eff=float(lam_eff), J=J, Q_synth=0.5 * (Q_synth + Q_synth.T),
                              Q_real=0.5 * (Q_real + Q_real.T), fixed_point_error=deriv.fixed_point_error)
    return out
