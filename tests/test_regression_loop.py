"""Regression retrained on its own labels: genloop.theory.regression against Monte Carlo of the loop.

Every Monte Carlo check runs ``genloop.run_loop`` with the ``regression`` model over many seeds
and compares the mean excess risk (β̂_t − β*)ᵀ(β̂_t − β*) (features N(0, I), so Σ = I) with the
closed form within 4 standard errors estimated from the same seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.data import make_data
from genloop.errors import ConfigError, DataError
from genloop.loop import run_loop
from genloop.metrics import make_metric
from genloop.models import make_model
from genloop.rng import stage_rng
from genloop.theory.regression import (
    fresh_design_excess_risk,
    gaussian_design_trace,
    linear_loop_excess_risk,
    ols_excess_factor,
    ols_excess_risk,
)

N, D, GENS, SIGMA = 20, 4, 6, 1.0
BETA = np.array([1.0, -0.5, 0.25, 2.0])
X_FIXED = np.random.default_rng(123).standard_normal((N, D))


def _excess(lam, scheme, *, seeds, model=None, fixed=True, gens=GENS) -> np.ndarray:
    """Excess risk of every seed and generation, (seeds, gens + 1)."""
    out = np.empty((seeds, gens + 1))
    for s in range(seeds):
        rng = stage_rng(s, 0, "data")
        X = X_FIXED if fixed else rng.standard_normal((N, D))
        real = np.column_stack([X, X @ BETA + SIGMA * rng.standard_normal(N)])
        proto = model or make_model("regression", sigma=SIGMA)
        for rec in run_loop(proto, real, lam=lam, generations=gens, scheme=scheme, seed=s):
            delta = rec.model.coef_ - BETA
            out[s, rec.generation] = delta @ delta
    return out


def _within(mc: np.ndarray, theory: np.ndarray, k: float = 4.0) -> None:
    se = mc.std(axis=0, ddof=1) / math.sqrt(mc.shape[0])
    assert np.all(np.abs(mc.mean(axis=0) - theory) <= k * se), f"MC {mc.mean(axis=0)} vs theory {theory} (SE {se})"


def test_closed_forms_agree_with_the_exact_affine_recursion() -> None:
    tau = np.trace(np.linalg.inv(X_FIXED.T @ X_FIXED))
    for scheme, lam in [("replace", "inf"), ("replace", 1), ("replace", 3), ("accumulate", 1), ("accumulate", "inf")]:
        exact = linear_loop_excess_risk(X_FIXED, BETA, SIGMA**2, 8, lam=lam, scheme=scheme)
        np.testing.assert_allclose(exact, SIGMA**2 * tau * ols_excess_factor(scheme, lam, 8), rtol=1e-9)
    # Dohmatob et al.: linear growth σ² d (t+1)/(n-d-1); Gerstgrasser et al.: bounded by π²/6
    np.testing.assert_allclose(ols_excess_risk(2.0, 30, 5, 3), 2.0 * 5 * np.arange(1, 5) / 24)
    acc = ols_excess_factor("accumulate", 1, 2000)
    assert np.all(np.diff(acc) > 0) and acc[-1] < math.pi**2 / 6 and math.pi**2 / 6 - acc[-1] < 1e-3
    assert ols_excess_factor("replace", 1, 200)[-1] == pytest.approx(1 + 1 / 3)  # 1 + λ/(1+2λ)
    with pytest.raises(ConfigError, match="integer lambda"):
        ols_excess_factor("replace", 0.5, 3)
    with pytest.raises(ConfigError, match="n > d"):
        gaussian_design_trace(5, 4)


def test_model_relabels_its_design_and_round_trips() -> None:
    src = make_data("linear_regression", d=3, sigma=0.5, beta=[1.0, 2.0, 3.0])
    rows = src.sample(400, rng=np.random.default_rng(0))
    m = make_model("regression").fit(rows, rng=np.random.default_rng(0))
    np.testing.assert_allclose(m.coef_, np.linalg.lstsq(rows[:, :3], rows[:, 3], rcond=None)[0])
    assert abs(m.sigma_ - 0.5) < 0.05
    synth = m.sample(800, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(synth[:400, :3], rows[:, :3])  # fixed design, cycled
    np.testing.assert_array_equal(synth[400:, :3], rows[:, :3])
    ridge = make_model("regression", alpha=10.0).fit(rows, rng=np.random.default_rng(0))
    Xf, y = rows[:, :3], rows[:, 3]
    np.testing.assert_allclose(ridge.coef_, np.linalg.solve(Xf.T @ Xf + 10 * np.eye(3), Xf.T @ y))
    fresh = make_model("regression", design="fresh").fit(rows, rng=np.random.default_rng(0))
    feats = fresh.sample(20000, rng=np.random.default_rng(2))[:, :3]
    np.testing.assert_allclose(feats.T @ feats / 20000, Xf.T @ Xf / 400, atol=0.06)
    with pytest.raises(DataError, match="more rows than features"):
        make_model("regression").fit(rows[:3], rng=np.random.default_rng(0))
    metric = make_metric("regression", data={"name": "linear_regression", "d": 3, "sigma": 0.5, "beta": [1.0, 2.0, 3.0]})
    out = metric(synth, rows, model=m)
    assert out["excess_risk"] == pytest.approx(float((m.coef_ - [1, 2, 3]) @ (m.coef_ - [1, 2, 3])))
    assert out["test_mse"] == pytest.approx(float(np.mean((y - Xf @ m.coef_) ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize(("scheme", "lam"), [("replace", "inf"), ("replace", 1), ("accumulate", 1), ("accumulate", "inf")])
def test_fixed_design_ols_laws_in_the_loop(scheme, lam) -> None:
    mc = _excess(lam, scheme, seeds=500)
    _within(mc, linear_loop_excess_risk(X_FIXED, BETA, SIGMA**2, GENS, lam=lam, scheme=scheme))


@pytest.mark.slow
def test_replace_grows_linearly_and_accumulate_stays_bounded() -> None:
    gens = 12
    rep, acc = _excess("inf", "replace", seeds=300, gens=gens), _excess(1, "accumulate", seeds=300, gens=gens)
    tau = np.trace(np.linalg.inv(X_FIXED.T @ X_FIXED))
    _within(rep, SIGMA**2 * tau * (np.arange(gens + 1) + 1))
    _within(acc, SIGMA**2 * tau * ols_excess_factor("accumulate", 1, gens))
    assert rep[:, -1].mean() > 5 * acc[:, -1].mean()


@pytest.mark.slow
def test_ridge_law_in_the_loop() -> None:
    model = make_model("regression", alpha=5.0, sigma=SIGMA)
    mc = _excess("inf", "replace", seeds=500, model=model)
    _within(mc, linear_loop_excess_risk(X_FIXED, BETA, SIGMA**2, GENS, alpha=5.0))


@pytest.mark.slow
def test_gaussian_design_dohmatob_law_and_estimated_sigma() -> None:
    # averaged over the design: σ² d (t+1)/(n-d-1); estimating σ keeps the law (E σ̂_t² = σ², a martingale)
    mc = _excess("inf", "replace", seeds=800, fixed=False, model=make_model("regression"))
    _within(mc, ols_excess_risk(SIGMA**2, N, D, GENS))


@pytest.mark.slow
def test_fresh_design_law() -> None:
    mc = _excess("inf", "replace", seeds=800, fixed=False, model=make_model("regression", sigma=SIGMA, design="fresh"))
    _within(mc, fresh_design_excess_risk(SIGMA**2, N, D, GENS))
