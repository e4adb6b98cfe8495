"""What ``genloop theory`` prints, against Monte Carlo of the real loop (genloop.loop.run_loop).

Each check runs the registered model through ``run_loop`` over many seeds at small n (λn not an
integer where it matters) and compares with the prediction; tolerances are K_SE standard errors
of the Monte Carlo estimate computed from the runs themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.data import make_data
from genloop.loop import LoopState, run_loop
from genloop.models import make_model
from genloop.theory.expfam import gaussian_scheme_moments, mean_offset_factor
from genloop.theory.report import theory_rows

K_SE = 4.5

pytestmark = pytest.mark.slow


def _within(samples: np.ndarray, expected: float) -> None:
    se = samples.std(ddof=1) / math.sqrt(samples.shape[0])
    assert abs(samples.mean() - expected) < K_SE * se + 1e-12, (samples.mean(), expected, se)


@pytest.mark.parametrize("scheme", ["replace", "accumulate", "accumulate-subsample"])
def test_rate_at_m_over_n_plus_m_with_lambda_n_not_an_integer(scheme: str) -> None:
    # n = 10, λ = 0.33: m = 3, so an offset of the mean contracts by 3/13 = 0.2308, not λ/(1+λ) = 0.248
    rng = np.random.default_rng(1)
    n, lam, T, seeds, delta = 10, 0.33, 4, 1500, 2.0
    real = rng.normal(size=(n, 1))
    model = make_model("gaussian", estimator="mle")
    fitted = model.clone().fit(real, rng=rng)
    shifted = model.clone()
    shifted.set_state({"mean": fitted.mean_ + delta, "covariance": fitted.covariance_}, {})
    e = np.array([[r.model.mean_[0] - fitted.mean_[0] for r in run_loop(
        model, real, lam=lam, generations=T, seed=s, scheme=scheme, resume=LoopState(0, shifted))]
        for s in range(seeds)])
    f = mean_offset_factor(n, lam, T, scheme=scheme)
    for t in range(T):
        _within(e[:, t], delta * f[t + 1])
    if scheme == "replace":
        rows = theory_rows("gaussian", {}, real, [lam], n, rng=rng, generations=T)
        assert rows[0]["m"] == 3 and rows[0]["rate"] == pytest.approx(3 / 13)
        assert abs(e[:, 0].mean() / delta - lam / (1 + lam)) > 3 * e[:, 0].std() / delta / math.sqrt(seeds)


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
@pytest.mark.parametrize("scheme,lam", [("replace", 0.7), ("accumulate", 0.7), ("fresh", 1.5), ("accumulate", math.inf)])
def test_gaussian_scheme_laws_match_run_loop(scheme: str, lam: float, estimator: str) -> None:
    n, T, seeds = 6, 5, 1500
    source = make_data("gaussian", mean=[1.0, -1.0], cov=[[1.0, 0.5], [0.5, 2.0]])
    cov_pop = np.array([[1.0, 0.5], [0.5, 2.0]])
    model = make_model("gaussian", estimator=estimator)
    rng = np.random.default_rng(2)
    fixed_real = source.sample(n, rng=rng)
    sq, tr_cov = [], []
    for s in range(seeds):
        real = source.sample(n, rng=np.random.default_rng([7, s])) if scheme == "fresh" else fixed_real
        ref = np.array([1.0, -1.0]) if scheme == "fresh" else real.mean(0)
        last = list(run_loop(model, real, lam=lam, generations=T, seed=s, scheme=scheme, source=source))[-1]
        sq.append(float(np.sum((last.model.mean_ - ref) ** 2)))
        tr_cov.append(float(np.trace(last.model.covariance_)))
    cov = cov_pop if scheme == "fresh" else np.cov(fixed_real.T, ddof=0)
    C, V = gaussian_scheme_moments(n, lam, cov, T, scheme=scheme, estimator=estimator)
    _within(np.asarray(sq), float(np.trace(C[-1])))
    _within(np.asarray(tr_cov), float(np.trace(V[-1])))


def test_unbiased_and_mle_spreads_differ_as_predicted_at_n_5() -> None:
    # the case: the MLE law applied to estimator: unbiased is off at n = 5
    real = np.random.default_rng(3).normal(size=(5, 1))
    rng = np.random.default_rng(4)
    mle = theory_rows("gaussian", {"estimator": "mle"}, real, [2.0], 5, rng=rng, generations=12)[0]
    unb = theory_rows("gaussian", {"estimator": "unbiased"}, real, [2.0], 5, rng=rng, generations=12)[0]
    assert unb["sd_T"] > 1.1 * mle["sd_T"]
    sq = [float((list(run_loop(make_model("gaussian", estimator="unbiased"), real, lam=2.0, generations=12,
                                seed=s))[-1].model.mean_[0] - real.mean()) ** 2) for s in range(800)]
    _within(np.asarray(sq), unb["sd_T"] ** 2)
