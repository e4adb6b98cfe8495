"""Test error of a regression model in the loop (``regression``).

``test_mse`` = mean (y − x·β̂)² over the real (held-out) rows ``[x, y]``. With the true
coefficients β* (``beta``, or a ``data`` source spec whose source has ``coef()``),
``excess_risk`` = (β̂ − β*)ᵀ Σ (β̂ − β*), Σ the source's feature covariance when it has one,
else the held-out second-moment matrix XᵀX/n: the quantity whose growth over generations
Dohmatob et al. (2024) and Gerstgrasser et al. (2024) give in closed form
(:mod:`genloop.theory.regression`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from genloop.errors import ConfigError, DataError
from genloop.metrics import register_metric
from genloop.metrics._arrays import as_vectors
from genloop.metrics.base import Metric
from genloop.metrics.discrete import _source

if TYPE_CHECKING:
    from genloop.models.base import GenerativeModel


@register_metric("regression")
class RegressionError(Metric):
    """Held-out test MSE and, with the true coefficients, the excess risk (module docstring).

    Args:
        beta: the true coefficients β*.
        data: a data-source spec whose ``coef()`` (and ``feature_cov()``) give β* (and Σ).
    """

    requires_model = True

    def __init__(self, beta: list[float] | None = None, data: dict[str, Any] | None = None) -> None:
        if beta is not None and data is not None:
            raise ConfigError("give the true coefficients as beta or as data, not both")
        self.beta = beta
        self.data = data
        source = _source(data, "coef")
        self._beta = np.asarray(beta, np.float64) if beta is not None else (source.coef() if source is not None else None)
        self._cov = source.feature_cov() if source is not None and hasattr(source, "feature_cov") else None

    def __call__(
        self, generated: np.ndarray, real: np.ndarray, *, model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        coef = getattr(model, "coef_", None)
        if coef is None:
            raise ConfigError("the regression metric needs a fitted regression model (with coef_)")
        rows = as_vectors(real, name="real rows")
        if rows.shape[1] != coef.size + 1:
            raise DataError(f"real rows have {rows.shape[1]} columns, the model expects {coef.size + 1} ([x, y])")
        X, y = rows[:, :-1], rows[:, -1]
        out = {"test_mse": float(np.mean((y - X @ coef) ** 2))}
        if self._beta is not None:
            if self._beta.size != coef.size:
                raise ConfigError(f"beta has {self._beta.size} entries, the model {coef.size} features")
            cov = self._cov if self._cov is not None else X.T @ X / X.shape[0]
            delta = coef - self._beta
            out["excess_risk"] = float(delta @ cov @ delta)
        return out
