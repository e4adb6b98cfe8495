"""A Gaussian mixture fitted by EM (scikit-learn's ``GaussianMixture``) behind genloop's contract.

The density is p_theta(x) = sum_k pi_k N(x; mu_k, Sigma_k); ``fit`` maximises the likelihood
with EM, the learning procedure A of the paper's Algorithm 1. Two things differ from using
scikit-learn directly:

* randomness comes only from the ``rng`` argument: EM's initialisation seed is drawn from it,
  and :meth:`GMMModel.sample` draws components and Gaussian noise itself with ``rng``
  (``GaussianMixture.sample`` uses the estimator's own ``random_state`` and returns rows
  grouped by component);
* the fitted state is a handful of named arrays, from which a working scikit-learn object is
  rebuilt without pickling.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from typing_extensions import Self

from genloop._validation import check_option
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count, check_vectors, require_vector_data
from genloop.models.base import GenerativeModel

logger = logging.getLogger(__name__)

CovarianceType = Literal["full", "diag", "spherical", "tied"]
_INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


@register_model("gmm")
class GMMModel(GenerativeModel):
    """Gaussian mixture model p(x) = sum_k pi_k N(x; mu_k, Sigma_k), fitted by EM.

    Options are those of :class:`sklearn.mixture.GaussianMixture`. ``tol`` and ``max_iter``
    decide how much of the maximisation each generation does: EM stops once the mean
    log-likelihood gains less than ``tol`` (or after ``max_iter`` iterations). Warm-started at
    the default ``tol=1e-3`` that is 2-3 iterations per generation, a partial maximisation
    whose retraining map ``genloop theory`` predicts (docs/theory.md §3.2); ``tol: 0`` with a
    large ``max_iter`` runs exactly ``max_iter`` iterations, approaching the exact maximiser
    the paper's theory assumes. Warm start (fine-tuning):
    when ``fit`` gets ``init``, a fitted :class:`GMMModel` with the same ``n_components``,
    ``covariance_type`` and dimension, EM starts from init's weights, means and precisions
    (one initialisation, ``n_init`` ignored) instead of k-means; ``init`` is not modified.

    Fitted attributes: ``weights_`` (K,), ``means_`` (K, d), ``covariances_`` and
    ``precisions_cholesky_`` (shapes by ``covariance_type`` as in scikit-learn),
    ``converged_``, ``n_iter_``, ``lower_bound_``.
    """

    has_log_prob = True

    def __init__(
        self,
        n_components: int = 8,
        covariance_type: CovarianceType = "full",
        max_iter: int = 200,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        n_init: int = 1,
        init_params: str = "kmeans",
    ) -> None:
        check_option("n_components", n_components, ge=1)
        if covariance_type not in ("full", "diag", "spherical", "tied"):
            raise ConfigError(
                f"covariance_type must be one of full, diag, spherical, tied; got {covariance_type!r}"
            )
        check_option("max_iter", max_iter, ge=1)
        check_option("tol", tol, ge=0)
        check_option("reg_covar", reg_covar, ge=0)
        check_option("n_init", n_init, ge=1)
        if init_params not in _INIT_PARAMS:
            raise ConfigError(f"init_params must be one of {', '.join(_INIT_PARAMS)}; got {init_params!r}")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.init_params = init_params

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        require_vector_data(self.name, event_shape)
        if n < self.n_components:
            raise ConfigError(f"a GMM with n_components={self.n_components} needs at least that many samples; data.n is {n}")

    # ---- fitting ----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Fit by EM to ``X`` (n, d); warm-started from ``init`` when given (see class doc)."""
        X = check_vectors(X, name="X")
        n, d = X.shape
        if n < self.n_components:
            raise DataError(f"a GMM with n_components={self.n_components} needs at least that many samples, got {n}")
        seed = int(rng.integers(0, 2**31 - 1))
        options: dict[str, Any] = dict(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=seed,
        )
        if init is not None:
            options.update(self._warm_start_options(init, d))
        gm = GaussianMixture(**options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(X)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                logger.info("GMM EM did not converge in max_iter=%d iterations (tol=%g)", self.max_iter, self.tol)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._set_estimator(gm, d)
        return self

    def _warm_start_options(self, init: GenerativeModel, d: int) -> dict[str, Any]:
        """GaussianMixture options that start EM from ``init``'s parameters (copies)."""
        if not isinstance(init, GMMModel) or not init.is_fitted:
            raise ConfigError(f"a GMM can only be warm-started from a fitted GMM, got {init!r}")
        if init.n_components != self.n_components or init.covariance_type != self.covariance_type:
            raise ConfigError(
                "warm start needs the same n_components and covariance_type: init has "
                f"{init.n_components}/{init.covariance_type}, this model {self.n_components}/{self.covariance_type}"
            )
        if init.event_shape_ != (d,):
            raise DataError(f"warm start from a GMM fitted on {init.event_shape_[0]} features, X has {d}")
        src = init._estimator
        weights = np.array(src.weights_, dtype=np.float64)
        return dict(
            weights_init=weights / weights.sum(),
            means_init=np.array(src.means_, dtype=np.float64),
            precisions_init=np.array(src.precisions_, dtype=np.float64),
            n_init=1,
            # The initial responsibilities are overridden by the three arrays above; the
            # cheapest method avoids a pointless k-means run.
            init_params="random_from_data",
        )

    def _set_estimator(self, gm: GaussianMixture, d: int) -> None:
        self._estimator = gm
        self.event_shape_ = (d,)
        # Component "square roots" A_k with A_k A_k^T = Sigma_k, for sampling.
        self._sample_factors = _covariance_factors(gm.covariances_, self.covariance_type, self.n_components, d)

    # ---- fitted attributes (read-only views of the scikit-learn estimator) ---------------------
    @property
    def weights_(self) -> np.ndarray:
        self._check_fitted()
        return self._estimator.weights_

    @property
    def means_(self) -> np.ndarray:
        self._check_fitted()
        return self._estimator.means_

    @property
    def covariances_(self) -> np.ndarray:
        self._check_fitted()
        return self._estimator.covariances_

    @property
    def precisions_cholesky_(self) -> np.ndarray:
        self._check_fitted()
        return self._estimator.precisions_cholesky_

    @property
    def converged_(self) -> bool:
        self._check_fitted()
        return bool(self._estimator.converged_)

    @property
    def n_iter_(self) -> int:
        self._check_fitted()
        return int(self._estimator.n_iter_)

    @property
    def lower_bound_(self) -> float:
        self._check_fitted()
        return float(self._estimator.lower_bound_)

    # ---- drawing and density --------------------------------------------------------------
    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. draws: component k ~ Categorical(weights_), then mu_k + A_k z, z ~ N(0, I).

        Components are drawn per row, so rows come in random order (not grouped by
        component). The result depends only on the fitted parameters and ``rng``.
        """
        self._check_fitted()
        n = check_count(n)
        weights = np.asarray(self.weights_, dtype=np.float64)
        labels = rng.choice(self.n_components, size=n, p=weights / weights.sum())
        z = rng.standard_normal((n, self.event_shape_[0]))
        out = np.empty_like(z)
        for k in range(self.n_components):
            rows = labels == k
            if np.any(rows):
                out[rows] = self.means_[k] + z[rows] @ self._sample_factors[k].T
        return out

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log p_theta(x) of each row (``GaussianMixture.score_samples``)."""
        self._check_fitted()
        X = check_vectors(X, name="X", n_features=self.event_shape_[0])
        return self._estimator.score_samples(X)

    # ---- state -------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        gm = self._estimator
        arrays = {
            "weights": np.array(gm.weights_, dtype=np.float64),
            "means": np.array(gm.means_, dtype=np.float64),
            "covariances": np.array(gm.covariances_, dtype=np.float64),
            "precisions_cholesky": np.array(gm.precisions_cholesky_, dtype=np.float64),
            # Kept although it follows from the Cholesky factors: the next warm start reads
            # ``precisions_`` and recomputing it rounds differently, which would make a
            # resumed run differ from an uninterrupted one in the last digits.
            "precisions": np.array(gm.precisions_, dtype=np.float64),
        }
        meta = {
            "converged": bool(gm.converged_),
            "n_iter": int(gm.n_iter_),
            "lower_bound": float(gm.lower_bound_),
        }
        return arrays, meta

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Rebuild a fitted ``GaussianMixture`` from the arrays of :meth:`get_state`."""
        weights = np.array(arrays["weights"], dtype=np.float64)
        means = np.array(arrays["means"], dtype=np.float64)
        if weights.shape != (self.n_components,) or means.ndim != 2 or means.shape[0] != self.n_components:
            raise DataError(
                f"bad GMM state for n_components={self.n_components}: weights {weights.shape}, means {means.shape}"
            )
        d = means.shape[1]
        gm = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            n_init=self.n_init,
            init_params=self.init_params,
        )
        gm.weights_ = weights
        gm.means_ = means
        gm.covariances_ = np.array(arrays["covariances"], dtype=np.float64)
        gm.precisions_cholesky_ = np.array(arrays["precisions_cholesky"], dtype=np.float64)
        if "precisions" in arrays:
            gm.precisions_ = np.array(arrays["precisions"], dtype=np.float64)
        else:  # checkpoints written before precisions were stored
            gm.precisions_ = _precisions_from_cholesky(gm.precisions_cholesky_, self.covariance_type)
        gm.converged_ = bool(meta.get("converged", True))
        gm.n_iter_ = int(meta.get("n_iter", 0))
        gm.lower_bound_ = float(meta.get("lower_bound", np.nan))
        gm.n_features_in_ = d
        self._set_estimator(gm, d)


def _precisions_from_cholesky(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precisions P = U U^T from their Cholesky factors U, as scikit-learn stores them."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def _covariance_factors(covariances: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """A (K, d, d) stack of A_k with A_k A_k^T = Sigma_k for every covariance type."""
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return np.linalg.cholesky(cov)
    if covariance_type == "tied":
        return np.broadcast_to(np.linalg.cholesky(cov), (k, d, d))
    if covariance_type == "diag":
        return np.sqrt(cov)[:, :, None] * np.eye(d)
    return np.sqrt(cov)[:, None, None] * np.eye(d)
