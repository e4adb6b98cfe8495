"""The categorical loop's collapse laws (genloop.theory.discrete) against Monte Carlo of the real loop.

Every Monte Carlo check runs ``genloop.run_loop`` with the ``categorical`` model over many
seeds and compares a mean with its closed form within 4 standard errors (the SE estimated from
the same seeds), so a wrong law fails and a right one passes with probability > 0.9999 per check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from genloop.data import make_data
from genloop.errors import ConfigError
from genloop.loop import run_loop
from genloop.models import make_model
from genloop.rng import stage_rng
from genloop.theory.discrete import (
    categorical_covariance,
    expected_support,
    fully_synthetic_mass_covariance,
    loss_probability,
    loss_probability_diffusion,
    loss_probability_exact,
    mixed_mass_covariance,
    wright_fisher_matrix,
)
from genloop.theory.expfam import fully_synthetic_mean_covariance

K, N, GENS, SEEDS = 8, 24, 12, 400


def _loop_probs(lam: float | str, *, seeds: int = SEEDS, n: int = N, gens: int = GENS) -> tuple[np.ndarray, np.ndarray]:
    """p̂_t of every seed and generation (seeds, gens + 1, K), and the true law."""
    source = make_data("categorical", n_categories=K, exponent=1.2)
    out = np.empty((seeds, gens + 1, K))
    for s in range(seeds):
        real = source.sample(n, rng=stage_rng(s, 0, "data"))
        for rec in run_loop(make_model("categorical", n_categories=K), real, lam=lam, generations=gens, seed=s):
            out[s, rec.generation] = rec.model.pmf()
    return out, source.true_probs()


@pytest.fixture(scope="module")
def fully_synthetic() -> tuple[np.ndarray, np.ndarray]:
    return _loop_probs("inf")


def _within(mc: np.ndarray, theory: np.ndarray | float, k: float = 4.0, resolution: float = 0.0) -> None:
    """|mean − theory| <= k SE (+ ``resolution``: 1/seeds for a frequency whose SE can be 0)."""
    mc = np.asarray(mc, dtype=np.float64)
    se = mc.std(axis=0, ddof=1) / math.sqrt(mc.shape[0])
    diff = mc.mean(axis=0) - theory
    assert np.all(np.abs(diff) <= k * se + resolution + 1e-12), f"MC mean {mc.mean(axis=0)} vs theory {theory} (SE {se})"


def test_wright_fisher_matrix_rows_are_binomials() -> None:
    M = wright_fisher_matrix(5)
    np.testing.assert_allclose(M.sum(axis=1), 1.0)
    np.testing.assert_allclose(M[2], stats.binom.pmf(np.arange(6), 5, 0.4))
    assert M[0, 0] == 1.0 and M[5, 5] == 1.0  # 0 and n absorb


def test_exact_loss_probability_closed_forms() -> None:
    # one step: P(Bin(n, p) = 0) = (1-p)^n; a lost category stays lost; t = 0 is the indicator
    n = 30
    np.testing.assert_allclose(loss_probability_exact(3 / n, n, 1), (1 - 3 / n) ** n)
    assert loss_probability_exact(0.0, n, 5)[0] == 1.0 and loss_probability_exact(1.0, n, 50)[0] == 0.0
    np.testing.assert_array_equal(loss_probability_exact([0.0, 0.5], n, 0), [1.0, 0.0])
    # two steps by the law of total probability, independently of the backward recursion
    i = np.arange(n + 1)
    two = np.sum(stats.binom.pmf(i, n, 0.1) * (1 - i / n) ** n)
    np.testing.assert_allclose(loss_probability_exact(0.1, n, 2), two)
    # from real data: one more binomial draw in front
    np.testing.assert_allclose(loss_probability_exact(0.1, n, 1, from_real=True), two)
    # loss + fixation + still segregating; eventually lost with probability 1 - p (martingale)
    np.testing.assert_allclose(loss_probability_exact(0.2, n, 3000), 0.8, atol=1e-9)


def test_diffusion_matches_exact_chain_for_large_n() -> None:
    n = 1000
    p = np.array([5 / n, 0.02, 0.05, 0.3])
    for t in (100, 400):
        np.testing.assert_allclose(loss_probability_diffusion(p, n, t), loss_probability_exact(p, n, t), atol=0.01)
    np.testing.assert_allclose(loss_probability_diffusion(p, n, 10**6), 1 - p, atol=1e-9)
    np.testing.assert_allclose(loss_probability(p, 5000, 1000, method="auto"),
                               loss_probability_diffusion(p, 5000, 1000))
    with pytest.raises(ConfigError, match="integer count"):
        loss_probability_exact(0.33333, 10, 2)
    with pytest.raises(ConfigError, match="method"):
        loss_probability(0.1, 10, 2, method="kimura")


@pytest.mark.slow
def test_mass_is_a_martingale_with_wright_fisher_variance(fully_synthetic) -> None:
    P, p = fully_synthetic
    for t in (0, 4, GENS):
        _within(P[:, t], p)  # E[p̂_t] = p
        var = np.diag(fully_synthetic_mass_covariance(p, N, t))
        _within((P[:, t] - p) ** 2, var)
    # the closed form is the exp-family one, reused: (1 - (1-1/n)^(t+1)) (diag p - pp^T)
    np.testing.assert_allclose(fully_synthetic_mass_covariance(p, N, 3),
                               (1 - (1 - 1 / N) ** 4) * categorical_covariance(p))
    np.testing.assert_allclose(fully_synthetic_mass_covariance(p, N, 3, from_real=False),
                               fully_synthetic_mean_covariance(N, 3, categorical_covariance(p), estimator="mle"))


@pytest.mark.slow
def test_loss_of_support_matches_the_chain_on_counts(fully_synthetic) -> None:
    P, p = fully_synthetic
    lost = P == 0.0  # (seeds, gens + 1, K)
    for t in (0, 3, GENS):
        _within(lost[:, t].astype(float), loss_probability(p, N, t, from_real=True), resolution=1 / SEEDS)
    support = expected_support(p, N, GENS)
    _within((P > 0).sum(axis=2).astype(float), support)
    assert support[-1] < support[0] - 1.0  # the tail really vanishes at this size
    # a category lost once is lost for ever (0 is absorbing)
    assert not np.any(lost[:, :-1] & ~lost[:, 1:])


@pytest.mark.slow
def test_mixed_loop_keeps_the_support_and_has_the_expfam_stationary_law() -> None:
    lam, gens = 1.0, 8
    P, _ = _loop_probs(lam, seeds=300, gens=gens)
    p_real = P[:, 0]  # the generation-0 fit is the real tokens' frequency
    support = (P > 0).sum(axis=2)
    np.testing.assert_array_equal(support, np.repeat(support[:, :1], gens + 1, axis=1))  # the support never shrinks
    for t in (1, gens):
        err2 = ((P[:, t] - p_real) ** 2).sum(axis=1)
        theory = np.array([np.trace(mixed_mass_covariance(pr, N, lam, t)) for pr in p_real])
        _within(err2 - theory, 0.0)
        _within(P[:, t] - p_real, np.zeros(K))
    # stationary value m Σ/(n(n+2m)+m), bounded, unlike the fully synthetic random walk
    m = N
    np.testing.assert_allclose(mixed_mass_covariance(p_real[0], N, lam), m * categorical_covariance(p_real[0]) / (N * (N + 2 * m) + m))
    with pytest.raises(ConfigError, match="finite lambda"):
        mixed_mass_covariance(p_real[0], N, "inf")


@pytest.mark.slow
def test_diffusion_law_against_the_loop_for_large_n() -> None:
    n, gens, seeds = 2500, 40, 120  # n > EXACT_MAX_N: method "auto" is Kimura's diffusion
    counts = np.array([5, 20, n - 25])
    real = np.repeat(np.arange(3), counts).astype(float)[:, None]  # generation 0 has exactly these masses
    lost = np.empty((seeds, 3), dtype=bool)
    for s in range(seeds):
        last = list(run_loop(make_model("categorical", n_categories=3), real, lam="inf", generations=gens, seed=s))[-1]
        lost[s] = last.model.pmf() == 0
    theory = loss_probability(counts / n, n, gens, method="auto")
    np.testing.assert_array_equal(theory, loss_probability_diffusion(counts / n, n, gens))
    _within(lost.astype(float), theory, resolution=1 / seeds)
