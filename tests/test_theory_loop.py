"""The theory's closed forms against Monte Carlo runs of the real loop (genloop.loop.run_loop).

Every check runs the registered ``gaussian`` model through ``run_loop`` over many seeds and
compares with an exact prediction; tolerances are K_SE standard errors of the Monte Carlo
estimate (computed from the runs themselves), so a wrong formula or a wrong loop fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genloop.loop import LoopState, run_loop
from genloop.models import make_model
from genloop.theory import expfam, gaussian, jacobian
from genloop.theory.jacobian import GaussianDensity

K_SE = 4.5

pytestmark = pytest.mark.slow


def _runs(model, real: np.ndarray, *, lam: float, generations: int, seeds: int, resume=None) -> list[list]:
    out = []
    for seed in range(seeds):
        out.append(list(run_loop(model, real, lam=lam, generations=generations, seed=seed, resume=resume)))
    return out


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
@pytest.mark.parametrize("n", [5, 20])
def test_gaussian_collapse_law_matches_run_loop(estimator: str, n: int) -> None:
    rng = np.random.default_rng(100 + n)
    real = rng.normal(2.0, 3.0, size=(n, 1))
    model = make_model("gaussian", estimator=estimator)
    T, seeds = 8, 400
    runs = _runs(model, real, lam=math.inf, generations=T, seeds=seeds)
    assert all(r.n_real == 0 and r.n_synthetic == n for run in runs for r in run[1:])
    sig = np.array([[math.sqrt(r.model.covariance_[0, 0]) for r in run] for run in runs])
    ratio = sig / sig[:, :1]
    for t in (1, 4, T):
        x = ratio[:, t]
        se = x.std(ddof=1) / math.sqrt(seeds)
        assert abs(x.mean() - gaussian.expected_sigma_ratio(n, t, estimator)) < K_SE * se
        # the exact law: the predicted median and 80% band hold the right fractions of runs
        lo, med, hi = gaussian.sigma_ratio_band(n, t, estimator, level=0.8)
        for frac, level in (((x <= med).mean(), 0.5), (((x >= lo) & (x <= hi)).mean(), 0.8)):
            assert abs(frac - level) < K_SE * math.sqrt(level * (1 - level) / seeds)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_mean_contracts_at_lam_over_one_plus_lam_in_run_loop(lam: float) -> None:
    # Start generation 0 away from the real-data fit: E[μ_t - μ_real] = (m/(n+m))^t δ exactly.
    rng = np.random.default_rng(200)
    n, delta, T, seeds = 20, 3.0, 6, 300
    real = rng.normal(0.0, 1.0, size=(n, 1))
    model = make_model("gaussian", estimator="mle")
    fitted = model.clone().fit(real, rng=rng)
    shifted = model.clone()
    shifted.set_state({"mean": fitted.mean_ + delta, "covariance": fitted.covariance_}, {})
    runs = _runs(model, real, lam=lam, generations=T, seeds=seeds, resume=LoopState(generation=0, model=shifted))
    assert [r.generation for r in runs[0]] == list(range(1, T + 1))
    e = np.array([[r.model.mean_[0] - fitted.mean_[0] for r in run] for run in runs])
    a = expfam.replace_contraction(n, lam)
    assert a == pytest.approx(lam / (1 + lam))
    predicted = expfam.expfam_mean_trajectory(np.zeros(1), np.array([delta]), lam, T)[1:, 0]
    for t in range(T):
        se = e[:, t].std(ddof=1) / math.sqrt(seeds)
        assert abs(e[:, t].mean() - predicted[t]) < K_SE * se + 1e-12
    # and not the fully synthetic behaviour (no pull back): the last mean is far below δ
    assert e[:, -1].mean() < 0.5 * delta


@pytest.mark.parametrize("n,lam,d", [(10, 0.5, 1), (30, 2.0, 2)])
def test_stationary_spread_matches_exact_formula_in_run_loop(n: int, lam: float, d: int) -> None:
    rng = np.random.default_rng(300 + n)
    real = rng.normal(size=(n, d)) @ np.array([[1.0, 0.4], [0.0, 0.7]])[:d, :d] + 1.0
    model = make_model("gaussian", estimator="mle")
    T, seeds = 12, 700
    runs = _runs(model, real, lam=lam, generations=T, seeds=seeds)
    m = runs[0][-1].n_synthetic
    assert m == math.floor(lam * n)
    mu_real = real.mean(0)
    cov_real = np.atleast_2d(np.cov(real.T, ddof=0))
    e = np.array([run[-1].model.mean_ - mu_real for run in runs])  # (seeds, d)
    C = expfam.gaussian_mle_mean_covariance(n, m, cov_real, t=T)
    prods = e[:, :, None] * e[:, None, :]
    emp = prods.mean(0)  # E[e] = 0 exactly, so the raw second moment is the covariance
    se = prods.std(0, ddof=1) / math.sqrt(seeds)
    assert np.all(np.abs(emp - C) < K_SE * se)
    # mean of the fitted mean is exactly the real-data fit
    assert np.all(np.abs(e.mean(0)) < K_SE * e.std(0, ddof=1) / math.sqrt(seeds))
    # the first-order λ/(n(1+2λ)) Cov(x) prediction is within a few % of the exact one here
    approx = expfam.stationary_covariance_approx(m / n, n, cov_real)
    np.testing.assert_allclose(approx, expfam.gaussian_mle_mean_covariance(n, m, cov_real), rtol=0.05)


def test_exact_jacobian_matches_finite_differences_of_the_registered_gaussian_fit() -> None:
    # The actual retraining map of genloop's Gaussian model: fit(D_real ∪ D_synth(θ')), with
    # D_synth = μ' + Z L'^T for a fixed, exactly whitened Z (sample mean 0, covariance I), so the
    # synthetic moments are exactly those of θ' (the infinite-sample map, no Monte Carlo noise).
    rng = np.random.default_rng(400)
    d, n, lam = 2, 600, 1.5
    m = int(lam * n)
    comp = rng.integers(0, 2, size=n)
    real = np.where(comp[:, None] == 0, rng.normal(-1.0, 0.5, (n, d)), rng.normal(1.5, 1.2, (n, d)))
    dens = GaussianDensity(d)
    Z = rng.standard_normal((m, d))
    Z -= Z.mean(0)
    Z = Z @ np.linalg.inv(np.linalg.cholesky(np.cov(Z.T, ddof=0))).T
    base = make_model("gaussian", estimator="mle")

    def G(theta: torch.Tensor) -> np.ndarray:
        mu, L = dens.unpack(theta)
        synth = mu.numpy() + Z @ L.numpy().T
        fitted = base.clone().fit(np.concatenate([real, synth]), rng=rng)
        return dens.pack(fitted.mean_, fitted.covariance_).numpy()

    an = jacobian.analyze(dens, real, rng=rng, w1_samples=300, lipschitz_points=32)
    theta = torch.as_tensor(an.theta_star)
    np.testing.assert_allclose(G(theta), an.theta_star, atol=1e-10)  # θ* is a fixed point
    p = dens.n_params
    J_fd = np.zeros((p, p))
    for j in range(p):
        e = torch.zeros(p, dtype=torch.float64)
        e[j] = 1e-5
        J_fd[:, j] = (G(theta + e) - G(theta - e)) / 2e-5
    J = an.jacobian(m / n)
    np.testing.assert_allclose(J, J_fd, atol=1e-3)
    assert np.max(np.abs(J - J_fd)) < 1e-6
    assert an.spectral_radius(m / n) == pytest.approx(lam / (1 + lam), abs=1e-9)
