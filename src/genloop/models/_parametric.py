"""Parametric densities with a flat θ: the maximum-likelihood core shared by models and theory.

A :class:`ParametricDensity` has a flat float64 torch parameter vector θ, a log-density
differentiable in θ, a (weighted) maximum-likelihood ``fit`` by damped Newton and ``sample``
with an explicit numpy ``rng``. It lives below ``genloop.models`` so that a model family whose
learner *is* this fit (``student_t``) uses it without importing ``genloop.theory``; the theory
toolkit (``genloop.theory.jacobian``) re-exports it with its other adapters and estimators.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from genloop.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Tensor = torch.Tensor

__all__ = [
    "ParametricDensity",
    "StudentTDensity",
    "expected_neg_hessian",
    "per_sample_hessians",
    "per_sample_scores",
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
    except Exception:
        H = torch.stack([torch.autograd.functional.hessian(lambda t_: single(t_, xi), th) for xi in xt])
    return H.detach().numpy()


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


