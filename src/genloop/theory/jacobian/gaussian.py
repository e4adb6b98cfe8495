"""The Gaussian adapter: θ = (mean, log-Cholesky factor); closed-form fit."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from genloop.errors import ConfigError, DataError
from genloop.models._parametric import (
    ParametricDensity,
    Tensor,
    _check_weights,
    _check_x,
    _t,
)

log = logging.getLogger(__name__)


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
