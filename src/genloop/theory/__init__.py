"""Closed forms and estimators of the stability theory of iterative retraining (docs/theory.md).

* :mod:`genloop.theory.gaussian` — Gaussian collapse under fully synthetic refitting.
* :mod:`genloop.theory.expfam` — exponential families in the mixed (replace) loop.
* :mod:`genloop.theory.jacobian` — the exact Jacobian J = λ(A+λB)^{-1}B and the paper's
  Theorem 1/2 quantities for any :class:`ParametricDensity`.
* :mod:`genloop.theory.em` — the learner's own map for ``gmm``: k warm-started EM steps.
* :mod:`genloop.theory.report` — per-λ predictions of a config's run (``genloop theory``).
"""

from __future__ import annotations

from genloop.theory.expfam import (
    expfam_mean_trajectory,
    expfam_rate,
    fully_synthetic_mean_covariance,
    gaussian_scheme_moments,
    mean_offset_factor,
    gaussian_mle_mean_covariance,
    known_variance_mean_variance,
    replace_contraction,
    stationary_covariance_approx,
)
from genloop.theory.gaussian import (
    c4,
    expected_covariance_ratio,
    expected_sigma_ratio,
    generalized_variance_moment,
    log_generalized_variance_cdf,
    log_generalized_variance_quantile,
    sigma_ratio_band,
    sigma_ratio_cdf,
    sigma_ratio_quantile,
)
from genloop.theory.jacobian import (
    GaussianDensity,
    GMMDensity,
    ParametricDensity,
    StabilityAnalysis,
    StudentTDensity,
    TorchModuleDensity,
    analyze,
    estimate_free_condition,
    paper_condition,
    paper_rate,
    retraining_jacobian,
    retraining_map,
    spectral_radius,
    transient_amplification,
)
from genloop.theory.report import SUPPORTED_MODELS, TheoryResult, format_theory_table, theory_analysis, theory_rows

__all__ = [
    "c4",
    "expected_sigma_ratio",
    "expected_covariance_ratio",
    "generalized_variance_moment",
    "log_generalized_variance_cdf",
    "log_generalized_variance_quantile",
    "sigma_ratio_cdf",
    "sigma_ratio_quantile",
    "sigma_ratio_band",
    "expfam_rate",
    "expfam_mean_trajectory",
    "replace_contraction",
    "known_variance_mean_variance",
    "gaussian_mle_mean_covariance",
    "stationary_covariance_approx",
    "fully_synthetic_mean_covariance",
    "gaussian_scheme_moments",
    "mean_offset_factor",
    "ParametricDensity",
    "GaussianDensity",
    "StudentTDensity",
    "GMMDensity",
    "TorchModuleDensity",
    "StabilityAnalysis",
    "analyze",
    "retraining_jacobian",
    "retraining_map",
    "spectral_radius",
    "paper_condition",
    "paper_rate",
    "estimate_free_condition",
    "transient_amplification",
    "SUPPORTED_MODELS",
    "TheoryResult",
    "theory_analysis",
    "theory_rows",
    "format_theory_table",
]
