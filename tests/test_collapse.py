"""The paper's Gaussian collapse (Bertrand et al. 2024, §2.2), run through the real loop.

(The 1-D law, its median and its probability bands are checked in test_theory_loop.py; here
the d-dimensional version and the effect of real data in the mix.)

Fully synthetic retraining makes σ_t a product of independent factors, so
E[σ_t]/σ_0 = c4(n)^t for the unbiased estimator and c4(n)^t ((n-1)/n)^(t/2) for the MLE.
Each check compares a Monte Carlo mean over many seeds with the closed form within
4 standard errors (estimated from the same seeds): a false alarm has probability < 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop import make_model, run_loop
from genloop.rng import stage_rng
from genloop.theory.gaussian import c4

Z = 4.0  # tolerance in standard errors


def sigma_ratios(n: int, d: int, lam: float, generations: int, seeds: int, estimator: str) -> np.ndarray:
    """σ_t/σ_0 per seed, generation and coordinate: shape (seeds, generations + 1, d)."""
    out = np.empty((seeds, generations + 1, d))
    scale = np.linspace(0.5, 2.0, d)  # coordinates with different variances
    for s in range(seeds):
        real = stage_rng(s, 0, "data").standard_normal((n, d)) * scale
        sig = [np.sqrt(np.diag(r.model.covariance_)) for r in
               run_loop(make_model("gaussian", estimator=estimator), real, lam=lam, generations=generations, seed=s)]
        out[s] = np.asarray(sig) / sig[0]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["unbiased", "mle"])
@pytest.mark.parametrize("n, d", [(12, 3)])
def test_fully_synthetic_mean_sigma_follows_c4(estimator, n, d):
    gens, seeds = 30, 1000
    ratios = sigma_ratios(n, d, math.inf, gens, seeds, estimator)
    per_step = c4(n) * (1.0 if estimator == "unbiased" else math.sqrt((n - 1) / n))
    for t in (1, 5, 15, 30):
        # coordinates of one seed are independent: pool them as independent draws
        draws = ratios[:, t, :].ravel()
        mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(draws.size)
        assert abs(mean - per_step**t) < Z * se, (estimator, n, d, t, mean, per_step**t, se)
    # log σ_t is a random walk with negative drift: the median collapses faster than the mean
    assert np.median(ratios[:, gens, :]) < per_step**gens


@pytest.mark.slow
@pytest.mark.parametrize("lam", [0.5, 1.0, 2.0])
def test_real_data_in_the_mix_keeps_variance_bounded(lam):
    n, gens, seeds = 20, 100, 200
    mixed = sigma_ratios(n, 2, lam, gens, seeds, "unbiased")
    synth = sigma_ratios(n, 2, math.inf, gens, seeds, "unbiased")
    late_mixed = mixed[:, gens // 2 :, :]
    # stays near the real data's σ: the spread does not grow with t (stationary) ...
    assert abs(np.median(late_mixed) - 1.0) < 0.1
    assert np.quantile(late_mixed, 0.01) > 0.5 and np.quantile(late_mixed, 0.99) < 1.6
    q_early = np.quantile(mixed[:, gens // 2, :], [0.1, 0.9])
    q_late = np.quantile(mixed[:, gens, :], [0.1, 0.9])
    assert np.all(np.abs(q_late - q_early) < 0.1)
    # ... while fully synthetic retraining collapses
    assert np.median(synth[:, gens, :]) < 0.2
