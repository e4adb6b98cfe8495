"""A multivariate Gaussian fitted in closed form: the model of the paper's Gaussian collapse.

Refitting a Gaussian to ``n`` of its own samples (the fully synthetic loop, docs/theory.md)
multiplies its standard deviation by independent random factors. With the unbiased estimator
(``ddof = 1``) the 1-D standard deviation satisfies E[sigma_t] = c4(n)^t sigma_0 with
c4(n) = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2) < 1; with the maximum-likelihood estimator
(``ddof = 0``) each factor also carries sqrt((n-1)/n). The estimators below are exactly
``np.mean`` and ``np.cov(..., ddof=...)`` so that these laws hold for the model as written.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import linalg
from scipy.stats import multivariate_normal
from typing_extensions import Self

from genloop._validation import check_option
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count, check_vectors, psd_factor, require_vector_data
from genloop.models.base import GenerativeModel

_DDOF = {"mle": 0, "unbiased": 1}


@register_model("gaussian")
class GaussianModel(GenerativeModel):
    """Multivariate normal N(mu, Sigma) fitted by closed-form moment estimates.

    ``mean_ = X.mean(0)`` and ``covariance_ = np.cov(X.T, ddof=ddof) + reg_covar * I`` with
    ``ddof = 0`` for ``estimator="mle"`` (divide by n, the maximum-likelihood estimate) and
    ``ddof = 1`` for ``estimator="unbiased"`` (divide by n - 1). The paper's Gaussian collapse
    (Section 2.2 of the paper; docs/theory.md) is this model refitted on its own samples.

    Warm start does not apply: the fit is a closed form of the data alone, so ``init`` is
    accepted (and never touched) but ignored, and fine-tuning equals training from scratch.

    Args:
        estimator: ``"mle"`` (divide by n) or ``"unbiased"`` (divide by n - 1).
        reg_covar: non-negative value added to the covariance diagonal (0 keeps the estimator
            exact; a small value keeps the covariance invertible when n <= d).
    """

    has_log_prob = True
    supports_warm_start = False  # closed-form fit: init is not read

    mean_: np.ndarray
    covariance_: np.ndarray

    def __init__(self, estimator: Literal["mle", "unbiased"] = "mle", reg_covar: float = 0.0) -> None:
        if estimator not in _DDOF:
            raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")
        check_option("reg_covar", reg_covar, ge=0, finite=True)
        self.estimator = estimator
        self.reg_covar = reg_covar

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        require_vector_data(self.name, event_shape)
        if n <= _DDOF[self.estimator]:
            raise ConfigError(f"the {self.estimator} covariance estimator needs at least 2 samples; data.n is {n}")

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Estimate ``mean_`` and ``covariance_`` from ``X`` (n, d). ``rng`` and ``init`` are
        unused (closed form); they are accepted for the common contract."""
        ddof = _DDOF[self.estimator]
        X = check_vectors(X, name="X")
        n, d = X.shape
        if n <= ddof:
            raise DataError(
                f"the unbiased covariance estimator needs at least 2 samples, got {n}; "
                "use estimator='mle' or more samples"
            )
        mean = X.mean(axis=0)
        cov = np.atleast_2d(np.cov(X, rowvar=False, ddof=ddof)).astype(np.float64)
        if self.reg_covar:
            cov = cov + self.reg_covar * np.eye(d)
        self._set_fitted(mean, cov)
        return self

    def _set_fitted(self, mean: np.ndarray, cov: np.ndarray) -> None:
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.covariance_ = np.asarray(cov, dtype=np.float64)
        self._factor = psd_factor(self.covariance_)
        self.event_shape_ = (int(self.mean_.shape[0]),)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``mean_ + L z`` with ``z ~ N(0, I)`` and ``L L^T = covariance_``."""
        self._check_fitted()
        n = check_count(n)
        z = rng.standard_normal((n, self.event_shape_[0]))
        return self.mean_ + z @ self._factor.T

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log N(x; mean_, covariance_) of each row of ``X``.

        When the covariance is not positive definite (a fully collapsed fit) this follows
        ``scipy.stats.multivariate_normal(allow_singular=True)``: the density on the support
        (pseudo-determinant), -inf off it and for a zero covariance.
        """
        self._check_fitted()
        d = self.event_shape_[0]
        X = check_vectors(X, name="X", n_features=d)
        diff = X - self.mean_
        try:
            L = linalg.cholesky(self.covariance_, lower=True)
        except linalg.LinAlgError:
            return np.atleast_1d(multivariate_normal(self.mean_, self.covariance_, allow_singular=True).logpdf(X))
        z = linalg.solve_triangular(L, diff.T, lower=True)
        log_det = 2.0 * np.sum(np.log(np.diag(L)))
        return -0.5 * (np.sum(z * z, axis=0) + log_det + d * np.log(2.0 * np.pi))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"mean": self.mean_.copy(), "covariance": self.covariance_.copy()}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        cov = np.asarray(arrays["covariance"], dtype=np.float64)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise DataError(f"bad Gaussian state: mean shape {mean.shape}, covariance shape {cov.shape}")
        self._set_fitted(mean.copy(), cov.copy())

