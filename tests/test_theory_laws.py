"""Laws of the pooled-frequency learners (categorical, bigram LM, fixed-design OLS) against
Monte Carlo of the real loop, and the rows ``genloop theory`` prints for them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.data import make_data
from genloop.loop import run_loop
from genloop.loop.schemes import synthetic_count
from genloop.models import make_model
from genloop.theory.ngram import bigram_kl_drift, bigram_kl_generation0, sequence_kl_per_token, unigram_covariance
from genloop.theory.pooled import pooled_stationary_factor, pooled_variance_factor
from genloop.theory.regression import ols_excess_factor

P3 = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.25, 0.45]])


@pytest.mark.parametrize(("scheme", "lam"), [("replace", 1), ("replace", 3), ("replace", "inf"),
                                             ("accumulate", 1), ("accumulate", "inf")])
def test_pooled_factor_is_the_ols_closed_form(scheme, lam):
    """The pooled-frequency recursion reproduces the regression module's closed forms (fixed
    design OLS is a pooled mean per copy of the design)."""
    fs = lam == "inf"
    m = 10 if fs else 10 * int(lam)
    got = pooled_variance_factor(10, m, 12, scheme=scheme, fully_synthetic=fs)
    np.testing.assert_allclose(got, ols_excess_factor(scheme, lam, 12), rtol=1e-12)


def test_pooled_stationary_factors():
    assert pooled_stationary_factor(10, 10) == pytest.approx(4 / 3)
    assert pooled_stationary_factor(10, 10, scheme="fresh") == pytest.approx(2 / 3)
    assert pooled_stationary_factor(10, 10, scheme="accumulate") == pytest.approx(math.pi**2 / 6, abs=1e-3)
    assert math.isinf(pooled_stationary_factor(10, 10, fully_synthetic=True))
    assert pooled_variance_factor(10, 5, 400)[-1] == pytest.approx(pooled_stationary_factor(10, 5))


def test_unigram_covariance_matches_simulation():
    """n·Cov(q̂) of the pooled unigram of stationary sequences, against 20,000 sequences."""
    src = make_data("markov", seq_len=6, transition=P3.tolist())
    x = src.sample(20_000, rng=np.random.default_rng(0)).astype(int)
    freq = np.stack([(x == k).mean(axis=1) for k in range(3)], axis=1)  # per-sequence unigram (n = 1)
    emp = np.cov(freq.T)
    np.testing.assert_allclose(emp, unigram_covariance(P3, 6), atol=4 * np.sqrt(2 / 20_000) * 0.1)


def _kl(model, L: int) -> float:
    first = model.conditional(np.zeros((1, 0), dtype=np.int64))[0]
    Q = model.conditional(np.arange(P3.shape[0])[:, None])
    return sequence_kl_per_token(P3, first, Q, L)


@pytest.mark.slow
@pytest.mark.parametrize(("lam", "scheme"), [("inf", "replace"), (1.0, "replace"), (1.0, "accumulate"),
                                             (0.5, "fresh")])
def test_bigram_kl_drift_matches_the_loop(lam, scheme):
    """Monte Carlo of the real loop (bigram on a 3-state chain, n = 200 sequences of length 10,
    150 seeds): the mean exact KL per token at every generation within 4 standard errors plus
    the delta method's O(1/N) bias (3 % of the value) of eq. (3)."""
    n, L, T, R = 200, 10, 5, 150
    src = make_data("markov", seq_len=L, transition=P3.tolist())
    vals = np.zeros((R, T + 1))
    for r in range(R):
        real = src.sample(n, rng=np.random.default_rng(10_000 + r))
        for rec in run_loop(make_model("ngram", order=2), real, lam=lam, generations=T, seed=r, scheme=scheme,
                            source=src):
            vals[r, rec.generation] = _kl(rec.model, L)
    fs = lam == "inf"
    law = bigram_kl_drift(P3, n, L, T, m=synthetic_count(math.inf if fs else lam, n), scheme=scheme,
                          fully_synthetic=fs)
    mean, se = vals.mean(axis=0), vals.std(axis=0, ddof=1) / math.sqrt(R)
    assert np.all(np.abs(mean - law) < 4 * se + 0.03 * law), (mean / law[0], law / law[0], (mean - law) / se)


def test_bigram_kl_generation0_scales_as_one_over_n():
    assert bigram_kl_generation0(P3, 100, 10) == pytest.approx(2 * bigram_kl_generation0(P3, 200, 10))
