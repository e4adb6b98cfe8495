"""Loop variants: selection laws, closed forms on the real loop, configs, resume.

Statistical checks average over seeds and use tolerances of 4 standard errors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from genloop.config import parse_config
from genloop.errors import ConfigError
from genloop.loop import LoopState, run_loop
from genloop.loop.variants import (
    MixtureVariant,
    VariantRunner,
    eval_formula,
    gaussian_ot_map,
    parse_variant,
    softmax_select,
    top_select,
)
from genloop.models import make_model
from genloop.models.io import load_model, save_model
from genloop.rng import stage_rng
from genloop.theory.variants import (
    corrected_gaussian_map,
    corrected_rate,
    curated_gaussian_map,
    quadratic_reward_expectation,
    softmax_curated_moments,
    tempered_variance_fixed_point,
    tilted_gaussian,
    top_curated_moments,
    top_curated_moments_exact,
)

Z = 4.0  # tolerance in standard errors


def _within(values: np.ndarray, expected: float | np.ndarray, what: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1, axis=0) / math.sqrt(values.shape[0])
    err = np.abs(values.mean(axis=0) - expected)
    assert np.all(err <= Z * se + 1e-12), f"{what}: mean {values.mean(axis=0)} vs {expected} (SE {se})"


def _gauss(mean: float, var: float) -> Any:
    m = make_model("gaussian", estimator="mle")
    m._set_fitted(np.array([mean]), np.array([[var]]))
    return m


# ---- the selection rules ---------------------------------------------------------------------------
def test_softmax_select_follows_the_bradley_terry_law() -> None:
    rng = np.random.default_rng(0)
    r = np.array([0.0, 1.0, -0.5, 2.0])
    groups = 40_000
    idx = softmax_select(np.tile(r, groups), 4, 0.7, rng) % 4
    freq = np.bincount(idx, minlength=4) / groups
    p = np.exp(r / 0.7) / np.exp(r / 0.7).sum()
    np.testing.assert_allclose(freq, p, atol=Z * np.sqrt(p * (1 - p) / groups).max())
    best = softmax_select(np.tile(r, 3), 4, 0.0, rng)
    np.testing.assert_array_equal(best, [3, 7, 11])


def test_top_select_keeps_the_largest() -> None:
    r = np.array([0.3, -1.0, 5.0, 0.3, 2.0])
    np.testing.assert_array_equal(top_select(r, 3), [0, 2, 4])


# ---- the closed forms themselves --------------------------------------------------------------------
def test_finite_k_law_against_a_two_dimensional_quadrature() -> None:
    """K = 2: E[f(X_sel)] = 2 E[f(X_1) w_1/(w_1 + w_2)], computed on a product grid."""
    mu, sigma, tau, c = 0.4, 1.3, 0.8, 1.0
    x, w = np.polynomial.hermite_e.hermegauss(150)
    w = w / w.sum()
    X1, X2 = np.meshgrid(mu + sigma * x, mu + sigma * x, indexing="ij")
    W = np.outer(w, w)
    e1, e2 = np.exp(-0.5 * (X1 - c) ** 2 / tau), np.exp(-0.5 * (X2 - c) ** 2 / tau)
    m1 = 2 * np.sum(W * e1 / (e1 + e2) * X1)
    m2 = 2 * np.sum(W * e1 / (e1 + e2) * X1**2)
    m, v = softmax_curated_moments(mu, sigma, K=2, tau=tau, center=c)
    assert m == pytest.approx(m1, abs=1e-7) and v == pytest.approx(m2 - m1 * m1, abs=1e-7)


def test_large_k_softmax_law_tends_to_the_gaussian_tilt() -> None:
    m_t, v_t = tilted_gaussian(np.array([0.5]), np.array([[2.0]]), np.array([-1.0]), 1.5, 0.7)
    m, v = softmax_curated_moments(0.5, math.sqrt(2.0), K=5000, tau=0.7, center=-1.0, scale=1.5)
    assert m == pytest.approx(m_t[0], abs=2e-3) and v == pytest.approx(v_t[0, 0], rel=2e-3)
    # precision adds a/τ, the mean is the precision-weighted average (Gaussian tilting)
    assert 1 / v_t[0, 0] == pytest.approx(1 / 2.0 + 1.5 / 0.7)


def test_selection_laws_against_monte_carlo_of_the_selectors() -> None:
    rng = np.random.default_rng(3)
    N, K = 100_000, 3
    X = 0.7 + 1.2 * rng.standard_normal(N * K)
    r = -0.5 * X**2
    Y = X[softmax_select(r, K, 1.5, rng)]
    m, v = softmax_curated_moments(0.7, 1.2, K=K, tau=1.5)
    assert abs(Y.mean() - m) < Z * Y.std() / math.sqrt(N)
    assert abs(Y.var() - v) < Z * np.std((Y - Y.mean()) ** 2) / math.sqrt(N)
    Y = X[top_select(r, N)]  # the top third of N K candidates: the truncated law as N → ∞
    m, v = top_curated_moments(0.7, 1.2, fraction=1 / K)
    assert abs(Y.mean() - m) < Z * Y.std() / math.sqrt(N) + 1e-3
    assert abs(Y.var() - v) < Z * np.std((Y - Y.mean()) ** 2) / math.sqrt(N) + 1e-3


def test_gaussian_ot_map_pushes_forward_exactly() -> None:
    S = np.array([[2.0, 0.3], [0.3, 0.5]])
    T = np.array([[1.0, -0.2], [-0.2, 0.8]])
    A, b = gaussian_ot_map(np.array([1.0, 2.0]), S, np.array([0.0, -1.0]), T)
    np.testing.assert_allclose(A @ S @ A.T, T, atol=1e-12)
    np.testing.assert_allclose(A, A.T, atol=1e-12)  # the OT map's linear part is symmetric PSD
    assert np.all(np.linalg.eigvalsh(A) > 0)
    np.testing.assert_allclose(A @ np.array([1.0, 2.0]) + b, [0.0, -1.0], atol=1e-12)


# ---- curated retraining on the real loop -------------------------------------------------------------
CURATED = {"kind": "curated", "reward": {"name": "quadratic", "center": [1.5], "scale": 1.0}, "K": 4, "tau": 1.0}


def _reward_of(model: Any) -> float:
    return quadratic_reward_expectation(model.mean_, model.covariance_, np.array([1.5]), 1.0)


def test_curated_generation_matches_the_exact_finite_k_law() -> None:
    """E[μ̂_1] = E_q[X], E[σ̂²_1] = (m−1)/m Var_q(X) for the MLE fit of the m curated samples,
    q the exact law of the sample kept from K = 4 by softmax(r/τ) (finite K, no limit)."""
    rows = []
    for seed in range(150):
        real = np.random.default_rng(seed).normal(0.0, 1.0, size=(300, 1))
        recs = list(run_loop(make_model("gaussian", estimator="mle"), real, lam="inf", generations=1,
                             seed=seed, variant=CURATED))
        m0, v0 = float(recs[0].model.mean_[0]), float(recs[0].model.covariance_[0, 0])
        mq, vq = softmax_curated_moments(m0, math.sqrt(v0), K=4, tau=1.0, center=1.5)
        rows.append([recs[1].model.mean_[0] - mq, recs[1].model.covariance_[0, 0] - vq * 299 / 300])
    _within(np.array(rows), np.zeros(2), "curated fit minus the exact law")


@pytest.mark.slow
def test_curated_fully_synthetic_reward_does_not_decrease() -> None:
    """Ferbach et al.'s theorem: E[r] of the model is non-decreasing over generations. With a
    Gaussian MLE fit and a quadratic reward, E[r(θ_t) | θ_{t−1}] = E_q[r] exactly (a
    submartingale); we check the conditional step and that the mean reward rises."""
    T, seeds = 6, 60
    rewards = np.zeros((seeds, T + 1))
    steps = []
    logged = np.zeros((seeds, T + 1))
    for seed in range(seeds):
        real = np.random.default_rng(100 + seed).normal(0.0, 1.0, size=(400, 1))
        recs = list(run_loop(make_model("gaussian", estimator="mle"), real, lam="inf", generations=T,
                             seed=seed, variant=CURATED, n_eval=400))
        rewards[seed] = [_reward_of(r.model) for r in recs]
        logged[seed] = [r.metrics["reward_mean"] for r in recs]
        for prev, cur in zip(recs, recs[1:]):
            mq, vq = softmax_curated_moments(float(prev.model.mean_[0]), math.sqrt(prev.model.covariance_[0, 0]),
                                             K=4, tau=1.0, center=1.5)
            steps.append(_reward_of(cur.model) - quadratic_reward_expectation(np.array([mq]), np.array([[vq]]),
                                                                               np.array([1.5]), 1.0))
    _within(np.array(steps), 0.0, "reward of the next model minus E_q[r]")
    inc = np.diff(rewards, axis=1)
    se = inc.std(ddof=1, axis=0) / math.sqrt(seeds)
    assert np.all(inc.mean(axis=0) > -Z * se), f"mean reward fell: {inc.mean(axis=0)}"
    assert inc.mean() > 0 and rewards[:, -1].mean() - rewards[:, 0].mean() > Z * rewards[:, -1].std() / math.sqrt(seeds)
    # the recorded metric (a Monte Carlo mean over the model's samples) agrees with the exact reward
    _within(logged - rewards, np.zeros(T + 1), "reward_mean metric minus the exact reward")


@pytest.mark.slow
@pytest.mark.parametrize("select", ["softmax", "top"])
def test_curated_with_real_data_settles_at_the_population_fixed_point(select: str) -> None:
    """With real data mixed in (λ = 1) the curated loop stays at the fixed point of the exact
    population map (D_real + λ q)/(1 + λ); ``top`` uses the N → ∞ truncated law (N = 4m here)."""
    lam, T, seeds, n = 1.0, 12, 30, 1500
    variant = {**CURATED, "select": select, "fraction": 0.25}
    rows = []
    for seed in range(seeds):
        real = np.random.default_rng(500 + seed).normal(0.0, 1.0, size=(n, 1))
        recs = list(run_loop(make_model("gaussian", estimator="mle"), real, lam=lam, generations=T, seed=seed,
                             variant=variant))
        dm, dv = float(real.mean()), float(real.var())
        m, v = float(recs[0].model.mean_[0]), float(recs[0].model.covariance_[0, 0])
        for _ in range(25):
            m, v = curated_gaussian_map(m, v, lam=lam, data_mean=dm, data_var=dv, K=4, tau=1.0, center=1.5,
                                        select=select, fraction=0.25)
        rows.append([recs[-1].model.mean_[0] - m, recs[-1].model.covariance_[0, 0] - v])
        assert dm < m < 1.5  # the curated fixed point moves toward the reward's centre
        c = np.array([1.5])
        assert quadratic_reward_expectation(np.array([m]), np.array([[v]]), c, 1.0) >= \
            quadratic_reward_expectation(np.array([dm]), np.array([[dv]]), c, 1.0)  # reward at least the data's
    _within(np.array(rows), np.zeros(2), f"curated ({select}) loop minus the population fixed point")


# ---- self-correction ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [1.0, "inf"])
def test_ot_self_correction_contracts_at_the_exact_rate(lam: float | str) -> None:
    """From a displaced model θ_0 = N(x̄ + δ, s²), one generation with x ← x + γ(T(x) − x)
    (T the OT map to the real Gaussian) gives E[μ_1 − x̄] = ρ(λ, γ) δ, ρ = λ(1 − γ)/(1 + λ)."""
    delta, seeds, n = 1.0, 60, 400
    lam_f = math.inf if lam == "inf" else float(lam)
    measured = {}
    for gamma in (0.0, 0.3, 0.7, 1.0):
        ratios = []
        for seed in range(seeds):
            real = np.random.default_rng(seed).normal(0.0, 1.0, size=(n, 1))
            xbar, s2 = float(real.mean()), float(real.var(ddof=1))
            start = LoopState(0, _gauss(xbar + delta, 1.5 * s2))
            (rec,) = run_loop(make_model("gaussian"), real, lam=lam, generations=1, seed=seed, resume=start,
                              variant={"kind": "corrected", "gamma": gamma, "correction": "ot-gaussian"})
            ratios.append((rec.model.mean_[0] - xbar) / delta)
        _within(np.array(ratios), corrected_rate(lam_f, gamma), f"contraction at γ={gamma}")
        measured[gamma] = float(np.mean(ratios))
    assert measured[0.0] > measured[0.3] > measured[0.7]  # the rate shrinks with γ


def test_ot_self_correction_rate_at_finite_m() -> None:
    """n = 7, λ = 0.5: the loop mixes k = ⌊λn⌋ = 3 corrected samples with 7 real ones, so the
    mean deviation contracts at k(1 − γ)/(n + k) = 0.21 at γ = 0.3, not λ(1 − γ)/(1 + λ) = 0.233
    (300 seeds, offset δ = 10: the standard error is ~0.001)."""
    delta, seeds, n, gamma = 10.0, 300, 7, 0.3
    ratios = []
    for seed in range(seeds):
        real = np.random.default_rng(seed).normal(0.0, 1.0, size=(n, 1))
        xbar, s2 = float(real.mean()), float(real.var(ddof=1))
        start = LoopState(0, _gauss(xbar + delta, 1.5 * s2))
        (rec,) = run_loop(make_model("gaussian"), real, lam=0.5, generations=1, seed=seed, resume=start,
                          variant={"kind": "corrected", "gamma": gamma, "correction": "ot-gaussian"})
        ratios.append((rec.model.mean_[0] - xbar) / delta)
    _within(np.array(ratios), corrected_rate(0.5, gamma, n), "contraction at m = ⌊λn⌋")
    assert corrected_rate(0.5, gamma, n) == pytest.approx(3 * 0.7 / 10)
    se = np.std(ratios, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(ratios) - corrected_rate(0.5, gamma)) > Z * se  # the n → ∞ form is refuted


def test_top_fraction_curation_exact_finite_n_law_on_the_loop() -> None:
    """Fully synthetic, m = 30 kept of N = ⌈30/0.3⌉ = 100 candidates: E[μ̂_1] and E[σ̂²_1] of the
    loop's MLE fit equal the exact order-statistic law of the top 30 of 100 (400 seeds)."""
    variant = {**CURATED, "select": "top", "fraction": 0.3}
    rows = []
    for seed in range(400):
        real = np.random.default_rng(seed).normal(0.0, 1.0, size=(30, 1))
        recs = list(run_loop(make_model("gaussian", estimator="mle"), real, lam="inf", generations=1,
                             seed=seed, variant=variant))
        m0, v0 = float(recs[0].model.mean_[0]), float(recs[0].model.covariance_[0, 0])
        mq, _, v_fit = top_curated_moments_exact(m0, math.sqrt(v0), kept=30, candidates=100, center=1.5)
        rows.append([recs[1].model.mean_[0] - mq, recs[1].model.covariance_[0, 0] - v_fit])
    _within(np.array(rows), np.zeros(2), "top-fraction fit minus the exact finite-N law")


def test_top_fraction_exact_law_tends_to_the_truncated_normal() -> None:
    """As N grows with k/N fixed the exact law tends to the N → ∞ truncated normal; k = N is the
    plain law."""
    m_inf, v_inf = top_curated_moments(0.7, 1.2, fraction=0.3)
    m, v, _ = top_curated_moments_exact(0.7, 1.2, kept=3000, candidates=10_000)
    assert m == pytest.approx(m_inf, abs=2e-3) and v == pytest.approx(v_inf, rel=5e-3)
    assert top_curated_moments_exact(0.7, 1.2, kept=5, candidates=5)[:2] == pytest.approx((0.7, 1.44))


def test_ot_self_correction_variance_map_fully_synthetic() -> None:
    """λ = ∞: the corrected samples are N((1−γ)m + γ m_d, M Σ M) exactly, so the unbiased
    covariance estimate has that expectation (corrected_gaussian_map)."""
    seeds, n, gamma = 200, 200, 0.4
    real = np.random.default_rng(0).normal(0.0, 1.0, size=(n, 1))
    xbar, s2 = real.mean(axis=0), np.cov(real, rowvar=False, ddof=1).reshape(1, 1)
    m_pred, S_pred = corrected_gaussian_map(xbar + 0.5, 3.0 * s2, lam=math.inf, gamma=gamma, data_mean=xbar, data_cov=s2)
    rows = []
    for seed in range(seeds):
        (rec,) = run_loop(make_model("gaussian"), real, lam="inf", generations=1, seed=seed,
                          resume=LoopState(0, _gauss(float(xbar[0]) + 0.5, float(3.0 * s2[0, 0]))),
                          variant={"kind": "corrected", "gamma": gamma, "correction": "ot-gaussian"})
        rows.append([rec.model.mean_[0], rec.model.covariance_[0, 0]])
    _within(np.array(rows), np.array([m_pred[0], S_pred[0, 0]]), "corrected Gaussian")
    # the standard deviation interpolates: (1 − γ) σ + γ σ_d in 1-D
    assert math.sqrt(S_pred[0, 0]) == pytest.approx((1 - gamma) * math.sqrt(3 * s2[0, 0]) + gamma * math.sqrt(s2[0, 0]))


def test_knn_correction_moves_samples_toward_real_data() -> None:
    real = np.random.default_rng(0).normal(size=(300, 2))
    model = _gauss(0.0, 1.0)
    model._set_fitted(np.zeros(2), 9.0 * np.eye(2))  # a model far wider than the data
    out = {}
    for gamma in (0.0, 0.5, 1.0):
        (rec,) = run_loop(make_model("gaussian"), real, lam=1, generations=1, seed=1, resume=LoopState(0, model),
                          variant={"kind": "corrected", "gamma": gamma, "k": 5})
        out[gamma] = rec.synthetic
    np.testing.assert_allclose(out[0.5], 0.5 * (out[0.0] + out[1.0]))  # same draws, straight line
    assert np.var(out[1.0]) < np.var(out[0.5]) < np.var(out[0.0])


# ---- sampling bias (MAD) -----------------------------------------------------------------------------
@pytest.mark.slow
def test_biased_sampling_keeps_precision_and_loses_recall_faster() -> None:
    """Alemohammad et al.: with a temperature < 1 the fully synthetic loop keeps precision higher
    while recall falls faster than unbiased sampling (two moons, gmm, raw-feature prdc)."""
    from genloop.data import make_data

    src = make_data("two_moons", noise=0.05)
    T, seeds = 5, 6
    res = {"plain": [], "biased": []}
    for seed in range(seeds):
        real = src.sample(600, rng=np.random.default_rng(seed))
        heldout = src.sample(600, rng=np.random.default_rng(1000 + seed))
        for kind, variant in (("plain", None), ("biased", {"kind": "biased", "temperature": 0.6})):
            recs = list(run_loop(make_model("gmm", n_components=10, max_iter=100), real, lam="inf", generations=T,
                                 seed=seed, variant=variant, heldout=heldout,
                                 metrics=[{"name": "prdc", "features": "raw", "k": 5}]))
            res[kind].append([[r.metrics["precision"], r.metrics["recall"]] for r in recs])
    plain, biased = np.array(res["plain"]), np.array(res["biased"])  # (seeds, T + 1, 2)
    d_prec = biased[:, -1, 0] - plain[:, -1, 0]
    d_rec_drop = (biased[:, 0, 1] - biased[:, -1, 1]) - (plain[:, 0, 1] - plain[:, -1, 1])
    for d, what in ((d_prec, "precision gap"), (d_rec_drop, "extra recall drop")):
        assert d.mean() > Z * d.std(ddof=1) / math.sqrt(seeds) or d.min() > 0, f"{what}: {d}"


def test_temperature_scales_the_gaussian_covariance_and_fixes_the_variance() -> None:
    """Temperature T draws N(m, T²Σ); with real data (λ) the variance settles at v_d/(1 + λ(1 − T²))."""
    real = np.random.default_rng(0).normal(size=(4000, 1))
    recs = list(run_loop(make_model("gaussian", estimator="mle"), real, lam=2.0, generations=25, seed=0,
                         variant={"kind": "biased", "temperature": 0.8}))
    v_star = tempered_variance_fixed_point(float(real.var()), lam=2.0, temperature=0.8)
    tail = [float(r.model.covariance_[0, 0]) for r in recs[10:]]
    assert np.mean(tail) == pytest.approx(v_star, rel=0.03)
    first = recs[0].model.sample(2 * 4000, rng=stage_rng(0, 1, "sample"))[:10]
    x = recs[0].model.mean_ + 0.8 * (first - recs[0].model.mean_)
    np.testing.assert_allclose(recs[1].synthetic[:10], x)  # the same latent, scaled


def test_truncation_keeps_the_highest_density_samples() -> None:
    real = np.random.default_rng(0).normal(size=(200, 2))
    (rec,) = run_loop(make_model("gaussian"), real, lam=1, generations=1, seed=0,
                      resume=LoopState(0, make_model("gaussian").fit(real, rng=np.random.default_rng(0))),
                      variant={"kind": "biased", "truncation": 0.5})
    d2 = np.sum(rec.synthetic**2, axis=1)
    assert rec.synthetic.shape == (200, 2) and np.median(d2) < 2 * math.log(2) * 0.8  # inside the half-mass disc


def test_biased_sampler_overrides_are_checked() -> None:
    real = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ConfigError, match="no option 'S_churn'"):
        list(run_loop(make_model("gaussian"), real, lam=1, generations=1,
                      variant={"kind": "biased", "sampler": {"S_churn": 1.0}}))


# ---- mixtures and λ schedules ------------------------------------------------------------------------
def test_mixture_draws_each_generation_by_its_weight() -> None:
    cfg = MixtureVariant(kind="mixture", weights="geometric", decay=0.5, last_k=3)
    assert cfg.window(5) == [4, 3, 2]
    np.testing.assert_allclose(cfg.mixture_weights(5), np.array([4, 2, 1]) / 7)
    np.testing.assert_allclose(MixtureVariant(kind="mixture", weights=(3.0, 1.0)).mixture_weights(4), [0.75, 0.25, 0, 0])
    runner = VariantRunner(cfg, real=np.zeros((10, 1)), seed=0)
    models = {s: _gauss(100.0 * s, 1e-6) for s in range(5)}
    k = 70_000
    X = runner.draw(5, k, models, lambda st: np.random.default_rng(abs(hash(st)) % 2**32)).X
    share = np.array([np.mean(np.round(X[:, 0] / 100) == s) for s in (4, 3, 2)])
    p = cfg.mixture_weights(5)
    np.testing.assert_allclose(share, p, atol=Z * np.sqrt(p * (1 - p) / k).max())


def test_lam_schedule_sets_the_synthetic_count_per_generation() -> None:
    real = np.random.default_rng(0).normal(size=(100, 1))
    recs = list(run_loop(make_model("gaussian"), real, lam=1.0, generations=4, variant={"lam_schedule": [0.5, 2, "inf"]}))
    assert [(r.n_real, r.n_synthetic) for r in recs] == [(100, 0), (100, 50), (100, 200), (0, 100), (0, 100)]
    recs = list(run_loop(make_model("gaussian"), real, lam=2.0, generations=4, variant={"lam_schedule": "lam * t / T"}))
    assert [r.n_synthetic for r in recs] == [0, 50, 100, 150, 200]
    assert eval_formula("max(0, 1 - t / 4) ** 2 + exp(0)", {"t": 2}) == pytest.approx(1.25)
    with pytest.raises(ConfigError, match="unknown name"):
        eval_formula("open", {"t": 1})


def test_lam_schedule_counts_are_exact_rationals() -> None:
    """⌊λ_t·n⌋ of a formula is the count its written numbers state, not float rounding's:
    0.7·3 = 2.0999999999999996 in floats (83 of 84 samples at n = 40), 1/3 → 0.333…3 (0 of 1 at n = 3)."""
    from fractions import Fraction

    from genloop.loop.schemes import synthetic_count
    from genloop.loop.variants import exact_formula

    assert math.floor(0.7 * 3 * 40) == 83  # the float route the schedule used to take
    assert exact_formula("0.7*t", {"t": 3}) == Fraction(21, 10)
    assert exact_formula("lam / 3 + 0.1 * T // 2 - 2 ** -1 % 1", {"lam": 1.0, "T": 5}) == Fraction(1, 3) + 0 - Fraction(1, 2)
    assert exact_formula("min(lam, t / 3)", {"lam": 0.5, "t": 1}) == Fraction(1, 3)
    assert isinstance(exact_formula("sqrt(t) + 0.1", {"t": 4}), float)  # irrational functions leave the rationals
    assert isinstance(exact_formula("t ** 0.5", {"t": 4}), float)
    cfg = parse_variant({"lam_schedule": "0.7*t"})
    assert synthetic_count(cfg.lam_at(3, 1.0, 5), 40) == 84
    assert synthetic_count(parse_variant({"lam_schedule": "t / 3"}).lam_at(1, 1.0, 5), 3) == 1
    real = np.random.default_rng(0).normal(size=(40, 1))
    recs = list(run_loop(make_model("gaussian"), real, lam=1.0, generations=3, variant={"lam_schedule": "0.7*t"}))
    assert [r.n_synthetic for r in recs] == [0, 28, 56, 84]
    recs = list(run_loop(make_model("gaussian"), real[:3], lam=1.0, generations=1, variant={"lam_schedule": "t / 3"}))
    assert [r.n_synthetic for r in recs] == [0, 1]


def test_schedule_is_checked_over_every_generation_and_lambda() -> None:
    from genloop.loop.variants import (
        SCHEDULE_CHECK_LIMIT,
        check_schedule,
        schedule_generations,
    )

    cfg = parse_variant({"lam_schedule": "1.5 - t"})
    check_schedule(cfg, [1.0], 1)  # λ_1 = 0.5
    with pytest.raises(ConfigError, match=r"λ = -0.5 at t=2 \(lam=1, T=2\)"):
        check_schedule(cfg, [1.0], 2)
    with pytest.raises(ConfigError, match="at t=1"):
        check_schedule(parse_variant({"lam_schedule": "lam - 0.25"}), [1.0, 0.0], 1)
    with pytest.raises(ConfigError, match="fails at"):
        check_schedule(parse_variant({"lam_schedule": "1 / (3 - t)"}), [1.0], 4)
    ts = schedule_generations(10**9)
    assert len(ts) == SCHEDULE_CHECK_LIMIT and ts[0] == 1 and ts[-1] == 10**9
    with pytest.raises(ConfigError, match=f"at t={10**9}"):
        check_schedule(parse_variant({"lam_schedule": "1 - t / 999999999"}), [1.0], 10**9)


# ---- configs -----------------------------------------------------------------------------------------
BASE = {"data": {"name": "two_moons", "n": 100}, "model": {"name": "gaussian"}, "loop": {"generations": 2, "lambdas": [1]}}


def _cfg(variant: Any, **extra: Any) -> Any:
    doc = {**BASE, "loop": {**BASE["loop"], "variant": variant}, **extra}
    return parse_config(doc)


def test_config_blocks_validate_and_dump_plainly() -> None:
    import yaml

    assert "variant" not in parse_config(BASE).resolved()["loop"]  # the paper's loop: unchanged files
    cfg = _cfg({"kind": "curated", "reward": "quadratic", "K": 3, "lam_schedule": [1, "inf"]})
    dumped = cfg.resolved()["loop"]["variant"]
    assert dumped["lam_schedule"] == [1.0, "inf"]
    assert _cfg(yaml.safe_load(yaml.safe_dump(dumped))).loop.variant == cfg.loop.variant  # round trip
    assert parse_variant("biased").kind == "biased"
    assert hash(cfg.loop.variant) == hash(_cfg(dumped).loop.variant)


@pytest.mark.parametrize("variant, message", [
    ({"kind": "curated", "reward": {"name": "region"}}, "radius"),
    ({"kind": "curated", "reward": "nomodule xyz:f"}, "neither a built-in"),  # importing waits for the run: test_read_no_import.py
    ({"kind": "corrected", "gamma": 1.5}, "gamma"),
    ({"kind": "curated", "reward": "quadratic", "K": 0}, "K"),
    ({"kind": "mixture", "weights": [0, 0]}, "positive sum"),
    ({"kind": "plain", "lam_schedule": "__import__('os')"}, "not allowed"),
    ({"kind": "nope"}, "nope"),
    ({"kind": "biased", "tmperature": 0.5}, "tmperature"),
])
def test_bad_variant_blocks_are_config_errors(variant: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(variant)


def test_mixture_needs_every_checkpoint() -> None:
    with pytest.raises(ConfigError, match="checkpoints"):
        _cfg({"kind": "mixture"}, output={"checkpoints": "last"})


def test_callable_reward_and_correction() -> None:
    real = np.random.default_rng(0).normal(size=(100, 2))
    (_, rec) = run_loop(make_model("gaussian"), real, lam=1, generations=1, seed=0,
                        variant={"kind": "curated", "reward": "test_variants_callables:first_coordinate", "K": 5, "tau": 0})
    assert rec.metrics["reward_curated"] > rec.metrics["reward_candidates"] + 0.5
    (_, rec) = run_loop(make_model("gaussian"), real, lam=1, generations=1, seed=0,
                        variant={"kind": "corrected", "gamma": 1.0, "correction": "test_variants_callables:to_origin"})
    np.testing.assert_array_equal(rec.synthetic, np.zeros((100, 2)))


# ---- exact resume --------------------------------------------------------------------------------------
RESUMABLE = [
    {"kind": "curated", "reward": {"name": "region", "radius": 1.0}, "select": "top", "fraction": 0.5},
    {"kind": "curated", "reward": {"name": "log-density", "reference": {"name": "gmm", "n_components": 2}}, "K": 3},
    {"kind": "corrected", "gamma": 0.5, "correction": "knn"},
    {"kind": "biased", "temperature": 0.7, "truncation": 0.8},
    {"kind": "mixture", "last_k": 2, "weights": "geometric", "lam_schedule": "lam * t / T"},
]


@pytest.mark.parametrize("variant", RESUMABLE, ids=lambda v: v["kind"])
def test_variant_resumed_from_a_checkpoint_equals_the_uninterrupted_run(variant: dict[str, Any], tmp_path) -> None:
    real = np.random.default_rng(0).normal(size=(120, 2))
    kwargs: dict[str, Any] = dict(lam=1.0, generations=4, seed=7, metrics=["moments"], n_eval=50, variant=variant)
    full = list(run_loop(make_model("gmm", n_components=2), real, **kwargs))
    saved = {r.generation: save_model(r.model, tmp_path / f"gen{r.generation}") for r in full[:3]}
    resumed = list(run_loop(make_model("gmm", n_components=2), real, resume=LoopState(2, load_model(saved[2])),
                            load_model=lambda s: load_model(saved[s]), **kwargs))
    assert [r.generation for r in resumed] == [3, 4]
    for a, b in zip(resumed, full[3:]):
        assert a.metrics == b.metrics
        np.testing.assert_array_equal(a.synthetic, b.synthetic)
        np.testing.assert_array_equal(a.samples, b.samples)


@pytest.mark.parametrize("scheme", ["accumulate", "accumulate-subsample"])
def test_curated_pool_resumes_exactly(scheme: str) -> None:
    """The accumulate schemes keep the curated sets in the pool; resuming with that pool is exact."""
    real = np.random.default_rng(0).normal(size=(80, 2))
    kwargs: dict[str, Any] = dict(lam=0.5, generations=3, seed=2, scheme=scheme, metrics=["moments"], n_eval=40,
                                  variant={"kind": "curated", "reward": "quadratic", "K": 3, "tau": 0.5})
    full = list(run_loop(make_model("gaussian"), real, **kwargs))
    pool = [r.synthetic for r in full[1:2]]
    resumed = list(run_loop(make_model("gaussian"), real, resume=LoopState(1, full[1].model, pool), **kwargs))
    for a, b in zip(resumed, full[2:]):
        assert a.metrics == b.metrics and a.n_synthetic == b.n_synthetic
        np.testing.assert_array_equal(a.model.covariance_, b.model.covariance_)


def test_mixture_resume_without_earlier_models_is_refused() -> None:
    real = np.random.default_rng(0).normal(size=(50, 1))
    first = list(run_loop(make_model("gaussian"), real, lam=1, generations=2, variant={"kind": "mixture"}))
    with pytest.raises(ConfigError, match="load_model"):
        list(run_loop(make_model("gaussian"), real, lam=1, generations=3, variant={"kind": "mixture"},
                      resume=LoopState(2, first[2].model)))


def test_mixture_run_resumed_through_the_run_store_equals_the_whole_run(tmp_path) -> None:
    """execute_run: stop after 2 generations, resume to 4 (reloading the earlier checkpoints)."""
    from genloop.store.run import RunStore
    from genloop.sweep.runs import RunSpec, execute_run

    doc = {"data": {"name": "two_moons", "n": 80, "n_heldout": 40}, "model": {"name": "gmm", "n_components": 3},
           "loop": {"generations": 2, "lambdas": [1], "variant": {"kind": "mixture", "weights": "uniform"}},
           "metrics": ["moments"]}
    short = parse_config(doc)
    whole = parse_config({**doc, "loop": {**doc["loop"], "generations": 4}})
    execute_run(short, RunSpec(1.0, 0, tmp_path / "a"), check_disk=False)
    execute_run(whole, RunSpec(1.0, 0, tmp_path / "a"), check_disk=False)
    execute_run(whole, RunSpec(1.0, 0, tmp_path / "b"), check_disk=False)
    assert RunStore(tmp_path / "a").read_metrics() == RunStore(tmp_path / "b").read_metrics()


def test_the_python_example_of_the_docs_runs() -> None:
    """docs/variants.md's first Python block runs, and its rewards are finite."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "variants.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(code, "docs/variants.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert len(scope["rewards"]) == 4 and np.all(np.isfinite(scope["rewards"]))


# ---- rewards and knobs of the other families -----------------------------------------------------------
@pytest.mark.slow
def test_classifier_reward_curates_a_digit(tmp_path) -> None:
    """The digits-classifier reward: confident on its class; softmax curation with a small τ keeps
    a class-3 image whenever the group has one, P = 1 − (1 − p_3)^K."""
    from genloop.loop.variants import CuratedVariant
    from genloop.metrics.features.classifier import load_digit_data

    X, y = load_digit_data("digits")
    cfg = CuratedVariant(kind="curated", K=4, tau=0.02,
                         reward={"name": "classifier", "digit": 3, "cache_dir": str(tmp_path)})
    runner = VariantRunner(cfg, real=X[:10], seed=0)
    r = runner.reward(X)  # type: ignore[misc]
    assert r[y == 3].mean() > 0.9 and r[y != 3].mean() < 0.05

    class Rows:  # a stand-in model: uniform rows of the digits set
        def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
            return X[rng.integers(0, len(X), size=n)]

    k = 2000
    out = runner.draw(1, k, {0: Rows()}, lambda st: np.random.default_rng(abs(hash(st)) % 2**32))  # type: ignore[dict-item]
    kept3 = np.mean(runner.reward(out.X) > 0.5)  # type: ignore[misc]
    p = 1 - (1 - np.mean(r > 0.5)) ** 4
    assert abs(kept3 - p) < Z * math.sqrt(p * (1 - p) / k)


_TINY = {"network": {"hidden": 16, "depth": 2}, "train": {"samples": 512, "batch_size": 64, "device": "cpu"}}


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [
    ("gaussian", {}), ("student_t", {}), ("gmm", {"n_components": 3}), ("kde", {}),
    ("flow", {"transforms": 2, "hidden_features": [16, 16], "train": _TINY["train"]}),
    ("cfm", {**_TINY, "solver": "euler", "steps": 4}),
])
def test_temperature_shrinks_the_spread(name: str, options: dict[str, Any]) -> None:
    from genloop.data import make_data
    from genloop.loop.variants import tempered_sample

    X = make_data("two_moons", noise=0.05).sample(256, rng=np.random.default_rng(0))
    if name == "student_t":
        X = X[:, :1]
    model = make_model(name, **options).fit(X, rng=np.random.default_rng(1))
    spread = {T: np.var(tempered_sample(model, 2000, T, np.random.default_rng(2)), axis=0).sum() for T in (1.0, 0.5, 1e-4)}
    assert spread[1e-4] < spread[0.5] < spread[1.0]
    if name == "gaussian":
        assert spread[0.5] / spread[1.0] == pytest.approx(0.25, rel=1e-12)  # the same latents, scaled
    if name in ("flow", "cfm", "gaussian", "student_t"):  # one latent point: (almost) one sample
        assert spread[1e-4] < 1e-4 * spread[1.0]


@pytest.mark.slow
def test_edm_denoiser_correction_and_sampler_override() -> None:
    from genloop.data import make_data
    from genloop.loop.variants import denoise_step

    X = make_data("two_moons", noise=0.05).sample(256, rng=np.random.default_rng(0))
    model = make_model("edm", **_TINY, num_steps=4).fit(X, rng=np.random.default_rng(1))
    noisy = X + 0.3 * np.random.default_rng(2).standard_normal(X.shape)
    den = denoise_step(model, noisy, 0.05, np.random.default_rng(3))
    assert den.shape == X.shape and np.all(np.isfinite(den))
    np.testing.assert_array_equal(den, denoise_step(model, noisy, 0.05, np.random.default_rng(3)))
    (rec,) = run_loop(make_model("edm", **_TINY, num_steps=4), X, lam=0.5, generations=1, seed=0,
                      resume=LoopState(0, model), variant={"kind": "corrected", "gamma": 0.5, "correction": "denoiser"})
    assert rec.synthetic.shape == (128, 2)
    (rec,) = run_loop(make_model("edm", **_TINY, num_steps=4), X, lam=0.5, generations=1, seed=0,
                      resume=LoopState(0, model), variant={"kind": "biased", "sampler": {"S_churn": 10.0, "S_noise": 0.8}})
    plain = model.sample(128, rng=stage_rng(0, 1, "sample"))
    assert rec.synthetic.shape == (128, 2) and not np.array_equal(rec.synthetic, plain)
    assert model.S_churn == 0.0  # the fitted model itself is untouched
    with pytest.raises(ConfigError, match="diffusion"):
        denoise_step(make_model("gaussian").fit(X, rng=np.random.default_rng(0)), X, 0.1, np.random.default_rng(0))


def test_softmax_select_with_minus_infinite_rewards() -> None:
    rng = np.random.default_rng(0)
    r = np.array([-np.inf, -np.inf, -np.inf, 0.0, -np.inf, -1.0])
    picks = np.array([softmax_select(r, 3, 1.0, rng) for _ in range(3000)])
    assert set(np.unique(picks[:, 0])) == {0, 1, 2}  # a group of −∞ only: uniform
    assert set(np.unique(picks[:, 1])) <= {3, 5}  # −∞ is never chosen beside a finite reward


@pytest.mark.parametrize("model, variant, message", [
    ("gaussian", {"kind": "corrected", "gamma": 0.5, "correction": "denoiser"}, "diffusion"),
    ("ddpm", {"kind": "biased", "truncation": 0.5}, "density model"),
    ("ddpm", {"kind": "biased", "temperature": 0.5}, "no temperature"),
    ("gmm", {"kind": "biased", "sampler": {"S_noise": 0.5}}, "no option 'S_noise'"),
])
def test_variants_a_family_cannot_do_fail_before_generation_zero(model: str, variant: Any, message: str) -> None:
    real = np.random.default_rng(0).normal(size=(40, 2))
    records = run_loop(make_model(model), real, lam=1, generations=1, variant=variant)
    with pytest.raises(ConfigError, match=message):
        next(records)
