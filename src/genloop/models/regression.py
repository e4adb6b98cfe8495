"""Linear regression in the loop: a model of joint rows (x, y) that relabels its own features.

A row is ``[x_1 … x_d, y]`` (the last column is the label). Fitting is ordinary least squares
(``alpha = 0``) or ridge regression, β̂ = (XᵀX + αI)⁻¹ Xᵀy, without intercept (centre the data,
or add a constant feature). Sampling draws features and labels y = x·β̂ + σ z, z ~ N(0, 1):
the setting of Dohmatob et al. (2024) and Gerstgrasser et al. (2024), where generation t+1 is
trained on the predictions of generation t plus noise. The loop's schemes then give their
laws (:mod:`genloop.theory.regression`): ``replace`` grows the test error linearly in the
generations, ``accumulate`` keeps it bounded.

Features of synthetic rows:

* ``design="fixed"``: the stored design, row i of k drawn rows being design row i mod n (k = n
  draws return exactly the design; k = λn with integer λ returns λ copies of it). The design is
  the generation-0 training features, carried through warm starts (``retrain: finetune``); a
  fit from scratch stores its own training features.
* ``design="fresh"``: new features x ~ N(0, S) with S = XᵀX/n the second-moment matrix of the
  stored design (a Gaussian design of the same scale, drawn afresh every generation).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import linalg
from typing_extensions import Self

from genloop._validation import check_option
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count, check_vectors, psd_factor
from genloop.models.base import GenerativeModel

Design = Literal["fixed", "fresh"]


def least_squares(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """β̂ = (XᵀX + αI)⁻¹ Xᵀy (ridge, α > 0) or the minimum-norm least-squares solution (α = 0)."""
    if alpha == 0:
        return np.linalg.lstsq(X, y, rcond=None)[0]
    d = X.shape[1]
    return linalg.solve(X.T @ X + alpha * np.eye(d), X.T @ y, assume_a="pos")


@register_model("regression")
class RegressionModel(GenerativeModel):
    """OLS / ridge regression over rows ``[x, y]`` that samples y = x·β̂ + σ z (module docstring).

    Args:
        alpha: ridge penalty α >= 0 (0 = ordinary least squares).
        sigma: noise standard deviation of synthetic labels; ``None`` estimates it by
            σ̂² = RSS/(n − d) on the training rows (needs n > d).
        design: ``"fixed"`` (relabel the stored design) or ``"fresh"`` (new Gaussian features).
    """

    coef_: np.ndarray
    design_: np.ndarray
    sigma_: float

    def __init__(self, alpha: float = 0.0, sigma: float | None = None, design: Design = "fixed") -> None:
        check_option("alpha", alpha, ge=0, finite=True)
        if sigma is not None:
            check_option("sigma", sigma, ge=0, finite=True)
        if design not in ("fixed", "fresh"):
            raise ConfigError(f"design must be 'fixed' or 'fresh', got {design!r}")
        self.alpha = alpha
        self.sigma = sigma
        self.design = design

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: rows ``[x_1 … x_d, y]`` with d >= 1, n >= d for OLS
        (XᵀX invertible, β̂ = (XᵀX)⁻¹Xᵀy) and n > d to estimate σ (σ̂² = RSS/(n − d))."""
        if len(event_shape) != 1 or event_shape[0] < 2:
            raise ConfigError(f"the regression model takes rows [x_1 … x_d, y] with d >= 1, the data have events of shape {event_shape}")
        d = event_shape[0] - 1
        if self.sigma is None and n <= d:
            raise ConfigError(f"estimating sigma needs more rows than features (n={n}, d={d}); set sigma")
        if self.alpha == 0 and n < d:
            raise ConfigError(
                f"ordinary least squares (alpha: 0) with d={d} features and n={n} rows is underdetermined: "
                "β̂ = (XᵀX)⁻¹Xᵀy does not exist (XᵀX is singular) and the minimum-norm fit interpolates; "
                "set alpha > 0 (ridge) or use n >= d rows"
            )

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """β̂ from the rows ``X`` ``(n, d + 1)``; the design comes from ``init`` when given."""
        rows = check_vectors(X, name="regression rows")
        if rows.shape[1] < 2:
            raise DataError(f"regression rows must be [x_1 … x_d, y] with d >= 1, got {rows.shape[1]} column(s)")
        feats, y = rows[:, :-1], rows[:, -1]
        n, d = feats.shape
        if init is not None:
            if not isinstance(init, RegressionModel) or not init.is_fitted:
                raise ConfigError(f"warm start of the regression model needs a fitted regression init, got {type(init).__name__}")
            if init.design_.shape[1] != d:
                raise DataError(f"warm start: rows have {d} features, the init model's {init.design_.shape[1]}")
            design = init.design_.copy()
        else:
            design = feats.copy()
        coef = least_squares(feats, y, float(self.alpha))
        if self.sigma is None:
            if n <= d:
                raise DataError(f"estimating sigma needs more rows than features (n={n}, d={d}); set sigma")
            sigma = float(np.sqrt(np.sum((y - feats @ coef) ** 2) / (n - d)))
        else:
            sigma = float(self.sigma)
        self._set_fitted(coef, design, sigma)
        return self

    def _set_fitted(self, coef: np.ndarray, design: np.ndarray, sigma: float) -> None:
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.design_ = np.asarray(design, dtype=np.float64)
        self.sigma_ = float(sigma)
        self.second_moment_ = self.design_.T @ self.design_ / self.design_.shape[0]
        self._factor = psd_factor(self.second_moment_)
        self.event_shape_ = (int(self.coef_.size) + 1,)

    def features(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Features of ``n`` synthetic rows: the design cycled (fixed) or N(0, S) draws (fresh)."""
        if self.design == "fixed":
            return self.design_[np.arange(n) % self.design_.shape[0]]
        return rng.standard_normal((n, self.coef_.size)) @ self._factor.T

    def predict(self, features: np.ndarray) -> np.ndarray:
        """x·β̂ for each row of ``features`` ``(n, d)``."""
        self._check_fitted()
        return check_vectors(features, name="features", n_features=self.coef_.size) @ self.coef_

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows ``[x, x·β̂ + σ z]``."""
        self._check_fitted()
        n = check_count(n)
        feats = self.features(n, rng=rng)
        y = feats @ self.coef_ + self.sigma_ * rng.standard_normal(n)
        return np.concatenate([feats, y[:, None]], axis=1)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"coef": self.coef_.copy(), "design": self.design_.copy(), "sigma": np.asarray(self.sigma_)}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        coef, design = np.asarray(arrays["coef"], np.float64), np.asarray(arrays["design"], np.float64)
        if coef.ndim != 1 or design.ndim != 2 or design.shape[1] != coef.size:
            raise DataError(f"bad regression state: coef shape {coef.shape}, design shape {design.shape}")
        self._set_fitted(coef.copy(), design.copy(), float(arrays["sigma"]))
