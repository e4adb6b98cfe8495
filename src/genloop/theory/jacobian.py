"""The exact local rate of iterative retraining and the paper's Theorem 1/2 quantities.

Retraining map (paper, Section 3; docs/theory.md), for a density model p_θ with data p_data:

    G_λ(θ') = argmax_θ  E_{p_data}[log p_θ(x)] + λ E_{x~p_θ'}[log p_θ(x)].

θ* = argmax_θ E_data[log p_θ] is a fixed point. With A = -E_data[∇²_θ log p_θ*(x)] and
B = -E_{p_θ*}[∇²_θ log p_θ*(x)] (the Fisher information of p_θ*), the implicit function theorem
applied to ∇_θ[E_data log p_θ + λ E_{p_θ'} log p_θ] = 0 gives (differentiating the synthetic
term in θ' uses ∇_θ' E_{p_θ'}[∇_θ log p_θ]|_{θ=θ'} = E_{p_θ'}[s s^T] = B)

    J(λ) = dG_λ/dθ'(θ*) = λ (A + λB)^{-1} B,

whose eigenvalues are λκ/(1+λκ) for the generalised eigenvalues κ of B v = κ A v. When A ≻ 0 the
spectral radius λκ_max/(1+λκ_max) is < 1 for *every* finite λ: the paper's Theorem 1 condition
λ(1 + Lε/α) < 1/2 (α = λ_min(A), L a Lipschitz constant in x of ∇²_θ log p_θ(x), ε =
W₁(p_θ*, p_data)), with its rate ρ(λ) = λ(α+εL)/(α - λ(α+εL)), is a sufficient, conservative
bound. The spectral radius is invariant under reparametrisation (J changes by a similarity);
α, L and therefore the paper's bound are not.

Models enter through :class:`ParametricDensity`: θ is a flat float64 torch vector,
``log_prob(x, θ)`` is differentiable in θ, ``fit`` is (weighted) maximum likelihood and
``sample`` draws with an explicit numpy ``rng``. Adapters: :class:`GaussianDensity`
(mean + log-Cholesky), :class:`StudentTDensity` (1-D, loc, log-scale, optional log-dof).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import ot
import torch
from scipy import linalg

from genloop.errors import ConfigError, DataError
from genloop.loop.schemes import parse_lambda as _check_lam

log = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = [
    "ParametricDensity",
    "GaussianDensity",
    "StudentTDensity",
    "GMMDensity",
    "TorchModuleDensity",
    "expected_neg_hessian",
    "per_sample_scores",
    "per_sample_hessians",
    "retraining_jacobian",
    "generalized_eigenvalues",
    "jacobian_eigenvalues",
    "spectral_radius",
    "paper_condition",
    "paper_rate",
    "linearized_stationary_covariance",
    "estimate_lipschitz",
    "estimate_w1",
    "bootstrap_constants",
    "theorem2_radius",
    "retraining_map",
    "StabilityAnalysis",
    "analyze",
    "transient_amplification",
    "estimate_free_condition",
]


def _t(x: object) -> Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)


def _check_x(x: object, d: int | None = None, name: str = "x") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name} must have shape (n, d), got {arr.shape}")
    if d is not None and arr.shape[1] != d:
        raise DataError(f"{name} has {arr.shape[1]} features, the density has {d}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or infinite values")
    return arr


def _check_weights(weights: object, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise DataError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w / w.sum()


# ---- maximisation ---------------------------------------------------------------------------
def _newton_maximize(f: Callable[[Tensor], Tensor], theta0: Tensor, *, tol: float = 1e-11, max_iter: int = 200) -> Tensor:
    """Maximise a smooth scalar f by damped Newton (Levenberg shift + backtracking).

    Written by hand because the parameter vectors here are tiny and the Jacobian tests need
    fits converged to ~1e-12, which Newton reaches in a few steps (quasi-Newton would not).
    """
    theta = theta0.detach().clone()
    with torch.no_grad():
        fval = float(f(theta))
    p = theta.numel()
    eye = torch.eye(p, dtype=torch.float64)
    for _ in range(max_iter):
        g = torch.autograd.functional.jacobian(f, theta).detach()
        if float(g.abs().max()) < tol:
            break
        H = torch.autograd.functional.hessian(f, theta, vectorize=True).detach()
        H = 0.5 * (H + H.T)
        if not (bool(torch.isfinite(H).all()) and bool(torch.isfinite(g).all())):
            log.warning("Newton fit stopped: non-finite gradient or Hessian")
            break
        mu = 0.0
        scale = float(H.abs().max()) + 1e-12
        while True:
            chol, info = torch.linalg.cholesky_ex(-H + mu * eye)
            if int(info) == 0:
                break
            mu = max(2.0 * mu, 1e-10 * scale)
        step_dir = torch.cholesky_solve(g[:, None], chol)[:, 0]
        step = 1.0
        accepted = False
        while step > 1e-14:
            cand = theta + step * step_dir
            with torch.no_grad():
                fc = float(f(cand))
            if math.isfinite(fc) and fc >= fval - 1e-14 * abs(fval):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            break
        theta, fval = cand, fc
        if float((step * step_dir).abs().max()) < 1e-15 * (1.0 + float(theta.abs().max())):
            break
    return theta


# ---- the model protocol ------------------------------------------------------------------------
class ParametricDensity(ABC):
    """A density p_θ(x) with a flat float64 parameter vector θ, seen by the theory toolkit.

    Implement :meth:`log_prob`, :meth:`sample` and :meth:`init_theta` (a starting point for
    the default Newton maximum-likelihood :meth:`fit`); override :meth:`fit` with a closed form
    where one exists and :meth:`quadrature` where E_{p_θ}[·] has an exact/accurate rule (then
    :meth:`fisher` is deterministic; otherwise it is Monte Carlo).
    """

    name: str = ""
    exponential_family: bool = False
    d: int = 1
    #: weight decay r relative to the real data: the retraining objective is
    #: E_data[log p_θ] + λ E_{p_θ'}[log p_θ] - (r/2)|θ|², so A gains r·I (docs/theory.md §3)
    ridge: float = 0.0

    @property
    @abstractmethod
    def n_params(self) -> int:
        """Length of θ."""

    def param_names(self) -> list[str]:
        """Human-readable names of the entries of θ."""
        return [f"theta[{i}]" for i in range(self.n_params)]

    @abstractmethod
    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        """log p_θ(x) for x of shape (n, d): shape (n,), differentiable in θ."""

    @abstractmethod
    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws of p_θ, shape (n, d)."""

    def init_theta(self, x: np.ndarray, weights: np.ndarray) -> Tensor:
        """A starting point for the numerical maximum-likelihood fit."""
        raise NotImplementedError(f"{type(self).__name__} needs init_theta or its own fit")

    def fit(
        self, x: np.ndarray, weights: np.ndarray | None = None, *, init: Tensor | None = None, ridge: float | None = None
    ) -> Tensor:
        """Weighted maximum likelihood argmax_θ Σ_i w_i log p_θ(x_i) - (r/2)|θ|² (weights
        normalised; r = ``ridge`` or, by default, ``self.ridge``)."""
        x = _check_x(x, self.d)
        w = _check_weights(weights, x.shape[0])
        xt, wt = _t(x), _t(w)
        theta0 = self.init_theta(x, w) if init is None else init.detach().clone().to(torch.float64)
        r = float(self.ridge if ridge is None else ridge)
        return _newton_maximize(lambda th: (wt * self.log_prob(xt, th)).sum() - 0.5 * r * (th * th).sum(), theta0)

    def quadrature(self, theta: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Nodes (m, d) and weights (m,) with Σ w f(x) ≈ E_{p_θ}[f], or None if none is known."""
        return None

    def fisher(self, theta: Tensor, *, rng: np.random.Generator | None = None, n_mc: int = 200_000) -> np.ndarray:
        """B = -E_{p_θ}[∇²_θ log p_θ(x)] = E_{p_θ}[s sᵀ] (s the score).

        By :meth:`quadrature` when available (of the negative Hessian for small rules; of the
        score outer product, the same expectation and cheaper, for rules of more than 4000
        nodes); else Monte Carlo of the score outer product over ``n_mc`` draws (positive
        semi-definite by construction; relative error about 1/sqrt(n_mc)).
        """
        quad = self.quadrature(theta)
        if quad is not None:
            nodes, w = quad
            if nodes.shape[0] <= 4000:
                return expected_neg_hessian(self, theta, nodes, w)
            S = per_sample_scores(self, theta, nodes)
            F = (S * (w / w.sum())[:, None]).T @ S
            return 0.5 * (F + F.T)
        if rng is None:
            raise ConfigError(f"{type(self).__name__} has no quadrature: fisher() needs an rng for Monte Carlo")
        acc = np.zeros((self.n_params, self.n_params))
        done, chunk = 0, 20_000
        while done < n_mc:
            k = min(chunk, n_mc - done)
            S = per_sample_scores(self, theta, self.sample(theta, k, rng))
            acc += S.T @ S
            done += k
        return acc / n_mc


class GaussianDensity(ParametricDensity):
    """N(μ, LLᵀ) in R^d with θ = (μ, log-Cholesky of the covariance).

    The lower-triangular entries of L are stored row by row; diagonal entries as log L_ii.
    Maximum likelihood is closed form (weighted mean and divide-by-total covariance), the
    model of genloop's ``gaussian`` family with ``estimator="mle"``. :meth:`quadrature` uses the
    2d symmetric points μ ± sqrt(d) L e_i (weights 1/(2d)): exact for polynomials of degree ≤ 3
    in x, hence exact for ∇²_θ log p_θ(x), which is quadratic in x.
    """

    name = "gaussian"
    exponential_family = True

    def __init__(self, d: int = 1) -> None:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ConfigError(f"d must be an integer >= 1, got {d!r}")
        self.d = int(d)
        rows, cols = np.tril_indices(self.d)
        self._rows = torch.as_tensor(rows)
        self._cols = torch.as_tensor(cols)
        self._is_diag = torch.as_tensor(rows == cols)

    @property
    def n_params(self) -> int:
        return self.d + self.d * (self.d + 1) // 2

    def param_names(self) -> list[str]:
        names = [f"mu[{i}]" for i in range(self.d)]
        for r, c in zip(self._rows.tolist(), self._cols.tolist()):
            names.append(f"log L[{r},{r}]" if r == c else f"L[{r},{c}]")
        return names

    def unpack(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, L) from θ."""
        mu = theta[: self.d]
        raw = theta[self.d :]
        vals = torch.where(self._is_diag, torch.exp(raw), raw)
        L = torch.zeros(self.d, self.d, dtype=theta.dtype).index_put((self._rows, self._cols), vals)
        return mu, L

    def pack(self, mu: np.ndarray, cov: np.ndarray) -> Tensor:
        """θ from a mean and a positive-definite covariance."""
        L = np.linalg.cholesky(np.atleast_2d(cov))
        vals = L[self._rows.numpy(), self._cols.numpy()].copy()
        diag = self._is_diag.numpy()
        vals[diag] = np.log(vals[diag])
        return _t(np.concatenate([np.atleast_1d(mu), vals]))

    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        mu, L = self.unpack(theta)
        z = torch.linalg.solve_triangular(L, (x - mu).T, upper=False)
        log_det = torch.log(torch.diagonal(L)).sum()
        return -0.5 * (z * z).sum(0) - log_det - 0.5 * self.d * math.log(2.0 * math.pi)

    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        mu, L = self.unpack(theta.detach())
        z = rng.standard_normal((int(n), self.d))
        return mu.numpy() + z @ L.numpy().T

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None, *, init: Tensor | None = None) -> Tensor:
        x = _check_x(x, self.d)
        w = _check_weights(weights, x.shape[0])
        mu = w @ x
        diff = x - mu
        cov = (w[:, None] * diff).T @ diff
        try:
            return self.pack(mu, cov)
        except np.linalg.LinAlgError:
            raise DataError("the weighted covariance is singular: cannot fit a Gaussian density") from None

    def quadrature(self, theta: Tensor) -> tuple[np.ndarray, np.ndarray]:
        mu, L = self.unpack(theta.detach())
        z = math.sqrt(self.d) * np.concatenate([np.eye(self.d), -np.eye(self.d)])
        return mu.numpy() + z @ L.numpy().T, np.full(2 * self.d, 1.0 / (2 * self.d))


class StudentTDensity(ParametricDensity):
    """1-D Student-t with θ = (loc, log scale) and, if ``learn_dof``, log ν appended.

    Not an exponential family: misspecified fits (e.g. to a two-component mixture) have A ≠ B,
    the case where the exact Jacobian differs from λ/(1+λ). :meth:`quadrature` is the trapezoid
    rule after x = loc + scale·sinh(s) (step 0.05; the integrands are analytic in a strip of
    half-width π/2 around the real s axis, so the error is of order e^{-π²/0.05}, far below
    double precision, plus a truncated tail below 1e-16).
    """

    name = "student_t"
    exponential_family = False
    d = 1

    def __init__(self, dof: float = 5.0, learn_dof: bool = False) -> None:
        if not (isinstance(dof, (int, float)) and math.isfinite(dof) and dof > 0):
            raise ConfigError(f"dof must be a finite number > 0, got {dof!r}")
        self.dof = float(dof)
        self.learn_dof = bool(learn_dof)

    @property
    def n_params(self) -> int:
        return 3 if self.learn_dof else 2

    def param_names(self) -> list[str]:
        return ["loc", "log scale"] + (["log dof"] if self.learn_dof else [])

    def _dof(self, theta: Tensor) -> Tensor:
        if self.learn_dof:
            return torch.exp(theta[2])
        return torch.as_tensor(self.dof, dtype=theta.dtype)

    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        nu = self._dof(theta)
        r = (x[:, 0] - theta[0]) * torch.exp(-theta[1])
        return (
            torch.lgamma((nu + 1) / 2) - torch.lgamma(nu / 2) - 0.5 * torch.log(nu * math.pi)
            - theta[1] - (nu + 1) / 2 * torch.log1p(r * r / nu)
        )

    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        th = theta.detach().numpy()
        nu = float(np.exp(th[2])) if self.learn_dof else self.dof
        return (th[0] + np.exp(th[1]) * rng.standard_t(nu, size=int(n)))[:, None]

    def init_theta(self, x: np.ndarray, weights: np.ndarray) -> Tensor:
        order = np.argsort(x[:, 0])
        cdf = np.cumsum(weights[order])
        loc = float(x[order[np.searchsorted(cdf, 0.5)], 0])
        sd = float(np.sqrt(weights @ (x[:, 0] - loc) ** 2)) + 1e-12
        start = [loc, math.log(sd)] + ([math.log(self.dof)] if self.learn_dof else [])
        return _t(start)

    def quadrature(self, theta: Tensor) -> tuple[np.ndarray, np.ndarray]:
        th = theta.detach()
        nu = float(self._dof(th))
        # the weight p(x) cosh(s) decays like e^{-ν|s|}: truncate where it is below ~1e-17
        s_max = 40.0 / min(nu, 40.0) + 4.0
        h = 0.05
        s = np.arange(-s_max, s_max + h / 2, h)
        scale = math.exp(float(th[1]))
        x = float(th[0]) + scale * np.sinh(s)
        logp = self.log_prob(_t(x[:, None]), th).numpy()
        w = h * scale * np.cosh(s) * np.exp(logp)
        return x[:, None], w


class GMMDensity(ParametricDensity):
    """Mixture of K full-covariance Gaussians in R^d: θ = (logits of components 2..K (the first
    is fixed at 0), the K means, the K log-Cholesky factors as in :class:`GaussianDensity`).

    The maximum-likelihood fit runs weighted EM (from k-means with a fixed ``seed``, or from
    ``init``) and polishes the result with damped Newton steps so that θ* is a stationary point
    to ~1e-9 (plain EM stops far earlier, which would bias A). Not an exponential family; the
    Fisher information uses a trapezoid quadrature in 1-D and Monte Carlo otherwise. Label
    switching is harmless locally; the
    bootstrap warm-starts from θ̂ to keep labels aligned.
    """

    name = "gmm"
    exponential_family = False

    def __init__(self, n_components: int, d: int, *, seed: int = 0, em_iter: int = 500) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
            raise ConfigError(f"n_components must be an integer >= 1, got {n_components!r}")
        self.K = int(n_components)
        self.gauss = GaussianDensity(d)
        self.d = self.gauss.d
        self.seed = int(seed)
        self.em_iter = int(em_iter)
        self._chol = self.gauss.n_params - self.d

    @property
    def n_params(self) -> int:
        return (self.K - 1) + self.K * self.d + self.K * self._chol

    def param_names(self) -> list[str]:
        names = [f"logit[{k}]" for k in range(1, self.K)]
        sub = self.gauss.param_names()
        for k in range(self.K):
            names += [f"c{k}.{nm}" for nm in sub]
        return names

    def unpack(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log weights (K,), means (K, d), Cholesky factors (K, d, d)) from θ."""
        K, d, c = self.K, self.d, self._chol
        logits = torch.cat([torch.zeros(1, dtype=theta.dtype), theta[: K - 1]])
        log_w = logits - torch.logsumexp(logits, 0)
        rest = theta[K - 1 :].reshape(K, d + c)
        mus, Ls = [], []
        for k in range(K):
            mu, L = self.gauss.unpack(rest[k])
            mus.append(mu)
            Ls.append(L)
        return log_w, torch.stack(mus), torch.stack(Ls)

    def pack(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> Tensor:
        """θ from mixture weights (K,), means (K, d) and covariances (K, d, d)."""
        logits = np.log(weights[1:]) - np.log(weights[0])
        parts = [_t(logits)] + [self.gauss.pack(means[k], covs[k]) for k in range(self.K)]
        return torch.cat(parts)

    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        log_w, mus, Ls = self.unpack(theta)
        diff = (x[None, :, :] - mus[:, None, :]).transpose(1, 2)  # (K, d, n)
        z = torch.linalg.solve_triangular(Ls, diff, upper=False)
        log_det = torch.log(torch.diagonal(Ls, dim1=1, dim2=2)).sum(1)
        comp = -0.5 * (z * z).sum(1) - log_det[:, None] - 0.5 * self.d * math.log(2.0 * math.pi)
        return torch.logsumexp(log_w[:, None] + comp, 0)

    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        log_w, mus, Ls = (a.detach().numpy() for a in self.unpack(theta.detach()))
        w = np.exp(log_w)
        k = rng.choice(self.K, size=int(n), p=w / w.sum())
        z = rng.standard_normal((int(n), self.d))
        return mus[k] + np.einsum("nij,nj->ni", Ls[k], z)

    def quadrature_grid(self, theta: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Nodes x_i (m, d) and factors c_i (m,) such that p_θ(x_i)·c_i is a quadrature rule of p_θ.

        d = 1: the trapezoid rule on a uniform grid (step σ_min/40, ±14 σ_max beyond the outer
        means), c_i = h. d = 2: the trapezoid rule on a uniform square grid of step h = s_min/1.5
        (s_min the smallest principal standard deviation of any component) over the box of
        ±9 standard deviations of every component, keeping the nodes where p_θ > e^{-45}·max p_θ;
        c_i = h². The integrands (Hessians of a log-mixture) are analytic with Gaussian decay,
        so the trapezoid rule converges geometrically: the Fisher information of the two-moons
        GMM(8) agrees with a grid twice as fine to 1e-5 relative, where per-component
        Gauss-Hermite with 32² nodes is still 1e-2 off (the Hessian has sharp features where
        responsibilities switch). None for d > 2 (the grid would be too large).
        """
        th = theta.detach()
        log_w, mus, Ls = (a.detach().numpy() for a in self.unpack(th))
        if self.d == 1:
            sig = Ls[:, 0, 0]
            h = float(sig.min()) / 40.0
            lo = float(mus[:, 0].min() - 14.0 * sig.max())
            hi = float(mus[:, 0].max() + 14.0 * sig.max())
            x = np.arange(lo, hi + h / 2, h)[:, None]
            return x, np.full(x.shape[0], h)
        if self.d != 2:
            return None
        covs = np.einsum("kij,klj->kil", Ls, Ls)
        sd = np.sqrt(np.einsum("kii->ki", covs))
        h = float(np.sqrt(np.linalg.eigvalsh(covs)[:, 0].min())) / 1.5
        lo, hi = (mus - 9.0 * sd).min(0), (mus + 9.0 * sd).max(0)
        axes = [np.arange(lo[i], hi[i] + h / 2, h) for i in range(2)]
        if axes[0].size * axes[1].size > 2_000_000:
            return None
        x = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        lp = self.log_prob(_t(x), th).numpy()
        keep = lp > lp.max() - 45.0
        return x[keep], np.full(int(keep.sum()), h * h)

    def quadrature(self, theta: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """The trapezoid rules of :meth:`quadrature_grid` (d ≤ 2) with weights p_θ(x_i)·c_i
        (normalised to sum 1); None for d > 2 (Monte Carlo Fisher)."""
        grid = self.quadrature_grid(theta)
        if grid is None:
            return None
        x, c = grid
        w = c * np.exp(self.log_prob(_t(x), theta.detach()).numpy())
        return x, w / w.sum()

    def _em(self, x: np.ndarray, w: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray):
        eye = np.eye(self.d)
        prev = -np.inf
        for _ in range(self.em_iter):
            # E step: responsibilities
            logp = np.empty((x.shape[0], self.K))
            for k in range(self.K):
                L = np.linalg.cholesky(covs[k])
                z = linalg.solve_triangular(L, (x - means[k]).T, lower=True)
                logp[:, k] = (np.log(weights[k]) - 0.5 * (z * z).sum(0) - np.log(np.diag(L)).sum()
                              - 0.5 * self.d * math.log(2 * math.pi))
            top = logp.max(1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(logp - top).sum(1))
            ll = float(w @ lse)
            r = np.exp(logp - lse[:, None]) * w[:, None]
            # M step (weighted)
            nk = r.sum(0) + 1e-300
            weights = nk / nk.sum()
            means = (r.T @ x) / nk[:, None]
            for k in range(self.K):
                diff = x - means[k]
                covs[k] = (r[:, k, None] * diff).T @ diff / nk[k] + 1e-10 * eye
            if ll - prev < 1e-10 * (1.0 + abs(ll)):
                break
            prev = ll
        return weights, means, covs

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None, *, init: Tensor | None = None) -> Tensor:
        x = _check_x(x, self.d)
        w = _check_weights(weights, x.shape[0])
        if x.shape[0] < self.K:
            raise DataError(f"a {self.K}-component mixture needs at least {self.K} points, got {x.shape[0]}")
        if init is None:
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=self.K, n_init=3, random_state=self.seed).fit(x, sample_weight=w)
            labels = km.labels_
            wk = np.array([w[labels == k].sum() for k in range(self.K)]) + 1e-12
            means = km.cluster_centers_.copy()
            covs = np.stack([
                ((w[labels == k, None] * (x[labels == k] - means[k])).T @ (x[labels == k] - means[k])) / wk[k]
                + 1e-6 * np.eye(self.d) for k in range(self.K)
            ])
            mix = wk / wk.sum()
        else:
            log_w, mus, Ls = (a.detach().numpy() for a in self.unpack(init.detach().to(torch.float64)))
            mix, means, covs = np.exp(log_w), mus.copy(), np.einsum("kij,klj->kil", Ls, Ls)
        mix, means, covs = self._em(x, w, mix, means, covs)
        theta0 = self.pack(mix, means, covs)
        xt, wt = _t(x), _t(w)
        return _newton_maximize(lambda th: (wt * self.log_prob(xt, th)).sum(), theta0, tol=1e-9)


class _Apply(torch.nn.Module):
    """Runs ``fn(inner, *args)`` as its forward, so functional_call covers all of ``fn``."""

    def __init__(self, inner: torch.nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.fn = fn

    def forward(self, *args: object) -> Tensor:
        return self.fn(self.inner, *args)


class TorchModuleDensity(ParametricDensity):
    """Any ``torch.nn.Module`` with a log-density; θ = its parameters, flattened.

    ``log_prob_fn(module, x)`` returns log p(x) of shape (n,) and ``sample_fn(module, n,
    generator)`` n samples (a ``torch.Generator`` seeded from the numpy ``rng``); both run
    entirely inside ``torch.func.functional_call`` with the module's parameters replaced by θ,
    so θ is differentiable even for modules that build lazy objects (zuko flows). :meth:`from_zuko_flow` builds both for a zuko flow (sampling by inverting
    the flow's transform on base noise drawn with the generator).

    ``fit`` maximises Σ w log p_θ - (ridge/2)|θ|² by full-batch L-BFGS from the module's
    initial parameters (or ``init``), then damped Newton when θ has at most ``newton_max``
    entries. Over-parametrised networks have flat directions (A singular): a positive
    ``ridge`` r makes A + r·I positive definite. The retraining objective is then
    E_data[log p_θ] + λ E_{p_θ'}[log p_θ] - (r/2)|θ|² (weight decay scaled to the real data, so
    the fixed point θ* = argmax E_data[log p_θ] - (r/2)|θ|² does not depend on λ), and
    J = λ(A + r·I + λB)^{-1}B is its exact Jacobian (:func:`analyze` adds r·I to A). Use smooth
    activations (tanh, not ReLU): the Hessian of a piecewise-linear network ignores its kinks.
    The module is copied and cast to float64; the caller's module is not touched.
    """

    name = "torch_module"
    exponential_family = False

    def __init__(
        self,
        module: torch.nn.Module,
        log_prob_fn: Callable[[torch.nn.Module, Tensor], Tensor],
        sample_fn: Callable[[torch.nn.Module, int, torch.Generator], Tensor],
        d: int,
        *,
        ridge: float = 0.0,
        lbfgs_steps: int = 500,
        newton_max: int = 300,
    ) -> None:
        import copy

        if not math.isfinite(ridge) or ridge < 0:
            raise ConfigError(f"ridge must be a finite number >= 0, got {ridge!r}")
        self.module = copy.deepcopy(module).to(torch.float64)
        self.log_prob_fn = log_prob_fn
        self.sample_fn = sample_fn
        self._lp = _Apply(self.module, log_prob_fn)
        self._draw = _Apply(self.module, sample_fn)
        self.d = int(d)
        self.ridge = float(ridge)
        self.lbfgs_steps = int(lbfgs_steps)
        self.newton_max = int(newton_max)
        named = [(k, v) for k, v in self.module.named_parameters() if v.requires_grad]
        self._names = [k for k, _ in named]
        self._shapes = [v.shape for _, v in named]
        self._sizes = [v.numel() for _, v in named]
        self.theta_init = torch.cat([v.detach().reshape(-1) for _, v in named]).clone()

    @classmethod
    def from_zuko_flow(cls, flow: torch.nn.Module, d: int, **options: object) -> TorchModuleDensity:
        """Adapter for an unconditional zuko flow (``flow()`` is the distribution)."""

        def log_prob_fn(module: torch.nn.Module, x: Tensor) -> Tensor:
            return module().log_prob(x)

        def sample_fn(module: torch.nn.Module, n: int, gen: torch.Generator) -> Tensor:
            dist = module()
            z = torch.randn(n, d, generator=gen, dtype=torch.float64)
            z = dist.base.mean + dist.base.stddev * z  # type: ignore[attr-defined]
            return dist.transform.inv(z)  # type: ignore[attr-defined]

        return cls(flow, log_prob_fn, sample_fn, d, **options)  # type: ignore[arg-type]

    @property
    def n_params(self) -> int:
        return int(sum(self._sizes))

    def param_names(self) -> list[str]:
        return [f"{nm}[{i}]" for nm, size in zip(self._names, self._sizes) for i in range(size)]

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        parts = torch.split(theta, self._sizes)
        return {f"inner.{nm}": p.reshape(shape) for nm, p, shape in zip(self._names, parts, self._shapes)}

    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        return torch.func.functional_call(self._lp, self._params(theta), (x,))

    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        from genloop.rng import torch_seed

        gen = torch.Generator().manual_seed(torch_seed(rng))
        with torch.no_grad():
            out = torch.func.functional_call(self._draw, self._params(theta.detach()), (int(n), gen))
        return out.detach().numpy().reshape(int(n), self.d)

    def init_theta(self, x: np.ndarray, weights: np.ndarray) -> Tensor:
        return self.theta_init.clone()

    def fit(
        self, x: np.ndarray, weights: np.ndarray | None = None, *, init: Tensor | None = None, ridge: float | None = None
    ) -> Tensor:
        x = _check_x(x, self.d)
        w = _check_weights(weights, x.shape[0])
        xt, wt = _t(x), _t(w)
        r = self.ridge if ridge is None else float(ridge)

        def objective(th: Tensor) -> Tensor:
            return (wt * self.log_prob(xt, th)).sum() - 0.5 * r * (th * th).sum()

        theta = (self.theta_init if init is None else init).detach().clone().to(torch.float64).requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=self.lbfgs_steps, tolerance_grad=1e-10,
                                tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = -objective(theta)
            loss.backward()
            return loss

        opt.step(closure)
        theta = theta.detach()
        if self.n_params <= self.newton_max:
            theta = _newton_maximize(objective, theta, tol=1e-10, max_iter=50)
        return theta


# ---- A, B and per-sample Hessians -------------------------------------------------------------
def expected_neg_hessian(model: ParametricDensity, theta: Tensor, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """-Σ_i w_i ∇²_θ log p_θ(x_i) (weights normalised; uniform by default).

    With the real data this is the paper's A = -E_data[∇² log p_θ*] (its α = λ_min(A)); with
    draws or quadrature of p_θ it is the Fisher information B.
    """
    x = _check_x(x, model.d)
    w = _t(_check_weights(weights, x.shape[0]))
    xt = _t(x)
    H = torch.autograd.functional.hessian(lambda th: (w * model.log_prob(xt, th)).sum(), theta.detach(), vectorize=True)
    H = -H.numpy()
    return 0.5 * (H + H.T)


def per_sample_scores(model: ParametricDensity, theta: Tensor, x: np.ndarray, *, chunk: int = 50_000) -> np.ndarray:
    """∇_θ log p_θ(x_i) for each row, shape (n, p) (vectorised, in chunks)."""
    x = _check_x(x, model.d)
    th = theta.detach()

    def single(th_: Tensor, xi: Tensor) -> Tensor:
        return model.log_prob(xi[None, :], th_)[0]

    grad = torch.func.vmap(torch.func.grad(single), in_dims=(None, 0))
    parts = [grad(th, _t(x[i : i + chunk])).detach().numpy() for i in range(0, x.shape[0], chunk)]
    return np.concatenate(parts)


def per_sample_hessians(model: ParametricDensity, theta: Tensor, x: np.ndarray) -> np.ndarray:
    """∇²_θ log p_θ(x_i) for each row, shape (n, p, p)."""
    x = _check_x(x, model.d)
    xt = _t(x)
    th = theta.detach()

    def single(th_: Tensor, xi: Tensor) -> Tensor:
        return model.log_prob(xi[None, :], th_)[0]

    try:
        H = torch.func.vmap(torch.func.hessian(single), in_dims=(None, 0))(th, xt)
    except Exception:  # noqa: BLE001 - an op without a batching rule: fall back to a loop
        H = torch.stack([torch.autograd.functional.hessian(lambda t_: single(t_, xi), th) for xi in xt])
    return H.detach().numpy()


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
