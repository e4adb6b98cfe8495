"""The text of ``genloop theory CONFIG``: per-λ predictions for the run a config describes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from genloop.errors import ConfigError
from genloop.rng import stage_rng
from genloop.theory import gaussian
from genloop.theory.report import SUPPORTED_MODELS, format_theory_table, theory_rows

if TYPE_CHECKING:
    from genloop.config import RunConfig


def theory_text(cfg: RunConfig) -> str:
    """Fit θ* to the config's real training set (that of its first seed, exactly as ``genloop
    run`` draws it) and tabulate, for each λ of the config, the exact local rate, the paper's
    Theorem 1 condition and rate, the stationary spread and the Theorem 2 radius.

    Raises :class:`ConfigError` for a model the theory toolkit does not support (the message
    lists the supported ones) or non-vector data.
    """
    from genloop.sweep.local import real_data

    if cfg.model.name not in SUPPORTED_MODELS:
        raise ConfigError(
            f"genloop theory does not support model {cfg.model.name!r}; supported models: {', '.join(SUPPORTED_MODELS)}"
        )
    seed = cfg.loop.seeds[0]
    _, split = real_data(cfg, seed)
    real = np.asarray(split.train, dtype=np.float64)
    if real.ndim != 2:
        raise ConfigError(f"genloop theory needs vector data of shape (n, d), data {cfg.data.name!r} has {real.shape}")
    rows = theory_rows(
        cfg.model.name, cfg.model.options, real, list(cfg.loop.lambdas), cfg.data.n, rng=stage_rng(seed, 0, "theory")
    )
    r0 = rows[0]
    lines = [
        f"theory for {cfg.name or cfg.model.name}: model {cfg.model.name}, data {cfg.data.name} "
        f"(n = {cfg.data.n}, d = {real.shape[1]}), seed {seed}",
        f"kappa_max = {r0['kappa_max']:.4g}, alpha = lambda_min(A) = {r0['alpha']:.4g}, "
        f"L (estimate) = {r0['L']:.4g}, eps = W1 = {r0['eps']:.4g} (sample noise floor {r0['eps_floor']:.2g})",
        f"Theorem 1 (lambda(1 + L eps/alpha) < 1/2) certifies lambda < {r0['paper_lambda_max']:.4g}; "
        "the exact rate lambda kappa_max/(1 + lambda kappa_max) is < 1 for every finite lambda.",
    ]
    if cfg.loop.scheme != "replace":
        lines.append(f"note: the predictions are for the paper's 'replace' scheme; this config uses {cfg.loop.scheme!r}.")
    if any(math.isinf(lam) for lam in cfg.loop.lambdas):
        lines.append("lambda = inf (fully synthetic) has no stationary law (the rows say inf).")
        if cfg.model.name == "gaussian":
            lines.append(_collapse_line(cfg, real.shape[1]))
    return "\n".join(lines) + "\n\n" + format_theory_table(rows, compact=True)


def _collapse_line(cfg: RunConfig, d: int) -> str:
    """Gaussian collapse predictions (paper, Section 2.2) at the config's last generation."""
    estimator = cfg.model.options.get("estimator", "mle")
    n, T = cfg.data.n, cfg.loop.generations
    if n < d + 1:
        return f"Gaussian collapse: n = {n} samples cannot refit a {d}-dimensional covariance."
    if d == 1:
        lo, med, hi = gaussian.sigma_ratio_band(n, T, estimator, level=0.9)
        return (
            f"Gaussian collapse at lambda = inf after {T} generations ({estimator}): "
            f"E[sigma_T]/sigma_0 = {gaussian.expected_sigma_ratio(n, T, estimator):.4g}, "
            f"median {med:.4g}, 90% band [{lo:.4g}, {hi:.4g}]"
        )
    return (
        f"Gaussian collapse at lambda = inf after {T} generations ({estimator}): "
        f"E[Sigma_T] = {gaussian.expected_covariance_ratio(n, T, estimator):.4g} Sigma_0, "
        f"E[det Sigma_T / det Sigma_0] = {gaussian.generalized_variance_moment(n, d, T, estimator):.4g}"
    )
