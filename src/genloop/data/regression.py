"""A linear-regression data source: rows [x, y] with x ~ N(0, I_d) and y = x·β* + σ ε.

The true coefficients β* and noise level σ are known (:meth:`LinearRegressionSource.coef`), so
the excess test risk (β̂ − β*)ᵀ Σ (β̂ − β*) of a fitted model is exact (Σ = I here). This is the
setting of Dohmatob et al. (2024) and Gerstgrasser et al. (2024); see
:mod:`genloop.theory.regression`.
"""

from __future__ import annotations

import numpy as np

from genloop.data import register_data
from genloop.data.base import DataSource
from genloop.errors import ConfigError


@register_data("linear_regression")
class LinearRegressionSource(DataSource):
    """Rows ``[x_1 … x_d, y]``, x ~ N(0, I_d), y = x·β* + σ ε, ε ~ N(0, 1).

    Args:
        d: number of features.
        sigma: noise standard deviation σ.
        beta: β* (length d); default drawn once as N(0, I_d/d) from ``beta_seed`` (part of the
            source's definition, so every run of a config shares it).
        beta_seed: seed of the default β*.
    """

    infinite = True

    def __init__(self, d: int = 5, sigma: float = 1.0, beta: list[float] | None = None, beta_seed: int = 0) -> None:
        if d < 1:
            raise ConfigError(f"d must be >= 1, got {d}")
        if not np.isfinite(sigma) or sigma < 0:
            raise ConfigError(f"sigma must be a finite number >= 0, got {sigma}")
        if beta is not None and len(beta) != d:
            raise ConfigError(f"beta has {len(beta)} entries, d = {d}")
        self.d = d
        self.sigma = sigma
        self.beta = beta
        self.beta_seed = beta_seed
        self._beta = (
            np.asarray(beta, dtype=np.float64) if beta is not None
            else np.random.default_rng(beta_seed).standard_normal(d) / np.sqrt(d)
        )

    def coef(self) -> np.ndarray:
        """β* (a copy)."""
        return self._beta.copy()

    def feature_cov(self) -> np.ndarray:
        """Σ = E[x xᵀ] = I_d."""
        return np.eye(self.d)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((int(n), self.d))
        y = x @ self._beta + self.sigma * rng.standard_normal(int(n))
        return np.concatenate([x, y[:, None]], axis=1)
