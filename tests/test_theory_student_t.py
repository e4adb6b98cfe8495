"""The registered ``student_t`` family: maximum likelihood, state round trip, theory adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from genloop.errors import ConfigError, DataError
from genloop.models import make_model
from genloop.models.io import load_model, save_model


def test_fit_is_the_maximum_likelihood_estimate() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_t(3.0, size=(400, 1)) * 2.0 - 1.0
    for learn in (False, True):
        model = make_model("student_t", dof=3.0, learn_dof=learn).fit(x, rng=rng)

        # reference: scipy's optimiser on the same likelihood, started elsewhere
        def nll(p: np.ndarray) -> float:
            dof = math.exp(p[2]) if learn else 3.0
            return -float(stats.t.logpdf(x[:, 0], dof, loc=p[0], scale=math.exp(p[1])).sum())

        start = np.array([0.0, 0.0] + ([1.0] if learn else []))
        ref = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                           "maxiter": 20000}).x
        assert model.loc_ == pytest.approx(ref[0], abs=1e-5)
        assert math.log(model.scale_) == pytest.approx(ref[1], abs=1e-5)
        if learn:
            assert math.log(model.dof_) == pytest.approx(ref[2], abs=1e-4)
        assert nll(np.array([model.loc_, math.log(model.scale_)] + ([math.log(model.dof_)] if learn else []))) \
            <= nll(ref) + 1e-9
        np.testing.assert_allclose(model.log_prob(x), stats.t.logpdf(x[:, 0], model.dof_, model.loc_, model.scale_))


def test_warm_start_reaches_the_same_optimum_and_state_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_t(6.0, size=(300, 1))
    cold = make_model("student_t", learn_dof=True).fit(x, rng=rng)
    other = make_model("student_t", learn_dof=True).fit(x[:100] + 3.0, rng=rng)
    warm = make_model("student_t", learn_dof=True).fit(x, rng=rng, init=other)
    assert (warm.loc_, warm.scale_, warm.dof_) == pytest.approx((cold.loc_, cold.scale_, cold.dof_), rel=1e-9)
    loaded = load_model(save_model(cold, tmp_path / "t"))
    assert (loaded.loc_, loaded.scale_, loaded.dof_) == (cold.loc_, cold.scale_, cold.dof_)
    np.testing.assert_array_equal(loaded.sample(50, rng=np.random.default_rng(2)),
                                  cold.sample(50, rng=np.random.default_rng(2)))


def test_bad_input() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ConfigError):
        make_model("student_t", dof=-1.0)
    with pytest.raises(DataError):
        make_model("student_t").fit(rng.normal(size=(20, 2)), rng=rng)
    with pytest.raises(DataError):
        make_model("student_t").fit(np.ones((20, 1)), rng=rng)
    fixed = make_model("student_t").fit(rng.normal(size=(20, 1)), rng=rng)
    with pytest.raises(ConfigError):
        make_model("student_t", learn_dof=True).fit(rng.normal(size=(20, 1)), rng=rng, init=fixed)
