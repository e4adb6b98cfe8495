"""Predicted vs observed parameter trajectories (genloop.report.trajectory).

The Monte Carlo checks run a real experiment folder (run_experiment → checkpoints on disk →
observed_distances) and compare seed means with the exact laws; tolerances are K_SE standard
errors computed from the runs themselves.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genloop.config import parse_config
from genloop.errors import ConfigError
from genloop.loop import run_loop
from genloop.models import make_model
from genloop.report import trajectory as tr
from genloop.store.run import RunStore
from genloop.sweep import real_data, run_experiment
from genloop.theory import expfam
from genloop.theory.jacobian import GMMDensity, linearized_stationary_covariance

K_SE = 4.5
COV = [[1.0, 0.3], [0.3, 0.5]]


def _config(model: dict, *, lambdas: list, seeds: int, generations: int, n: int = 20, data: dict | None = None,
            **extra) -> dict:
    doc = {
        "data": data or {"name": "gaussian", "n": n, "mean": [1.0, -1.0], "cov": COV},
        "model": model,
        "loop": {"generations": generations, "lambdas": lambdas, "seeds": list(range(seeds))},
        "metrics": [],
        "output": {"keep_samples": 0},
    }
    doc.update(extra)
    return doc


def _run(doc: dict, out: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> Path:
    if monkeypatch is not None:  # durability syncs are irrelevant to what is tested and slow
        monkeypatch.setattr(os, "fsync", lambda fd: None)
    run_experiment(parse_config(doc), out)
    return out


# ---- exact laws without folders (fast) ----------------------------------------------------------
@pytest.mark.parametrize("lam", [0.5, 1.0, 3.0])
def test_mle_recursion_matches_expfam_closed_form(lam: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(17, 3))
    _, cov = tr.gaussian_theta_star(x)
    C, V = tr.gaussian_moment_recursion(17, lam, cov, 8)
    m = math.floor(lam * 17)
    for t in range(9):
        np.testing.assert_allclose(C[t], expfam.gaussian_mle_mean_covariance(17, m, cov, t), rtol=1e-12, atol=1e-15)
        # E[Σ_t] = Σ* − Cov(μ_t) for the MLE (expfam module docstring)
        np.testing.assert_allclose(V[t], cov - C[t], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
def test_fully_synthetic_recursion_matches_random_walk(estimator: str) -> None:
    cov = np.array(COV)
    C, V = tr.gaussian_moment_recursion(12, math.inf, cov, 6, estimator=estimator)
    cov0 = cov * (12 / 11 if estimator == "unbiased" else 1.0)
    for t in range(7):
        np.testing.assert_allclose(C[t], expfam.fully_synthetic_mean_covariance(12, t, cov0, estimator), rtol=1e-12)


def test_lambda_zero_is_deterministic() -> None:
    cov = np.array(COV)
    pred = tr.gaussian_predicted_distances(10, 0.0, cov, 5, estimator="unbiased")
    np.testing.assert_array_equal(pred["mu"], 0.0)
    # every generation refits the real data: Σ_t = n/(n−1) Σ*, ||Σ_t − Σ*||² = ||Σ*||²/(n−1)²
    np.testing.assert_allclose(pred["sigma"], np.sum(cov**2) / 81.0, rtol=1e-12)
    assert pred["exact"]["sigma"]


def test_linearized_prediction_contracts_and_reaches_the_stationary_covariance() -> None:
    rng = np.random.default_rng(1)
    G = rng.normal(size=(4, 4))
    A = G @ G.T + 4 * np.eye(4)
    n, lam = 50, 1.0
    m = 50
    e0 = rng.normal(size=4)
    # A = B (exponential family): J = λ/(1+λ) I exactly, the offset decays by (1/2)^t
    pred = tr.linearized_predicted_distances(A, A, e0, n, lam, 60)
    noise = tr.linearized_predicted_distances(A, A, np.zeros(4), n, lam, 60)
    np.testing.assert_allclose(pred - noise, (e0 @ e0) * 0.25 ** np.arange(61), rtol=1e-10, atol=1e-14)
    stat = np.trace(linearized_stationary_covariance(A, A, n, m))
    assert noise[-1] == pytest.approx(stat, rel=1e-10)
    np.testing.assert_allclose(stat, m / (n * (n + 2 * m)) * np.trace(np.linalg.inv(A)), rtol=1e-10)
    # λ = ∞: a random walk, E||θ_t − θ*||² = ||e0||² + t tr(B^{-1})/n
    walk = tr.linearized_predicted_distances(A, A, e0, n, math.inf, 5)
    np.testing.assert_allclose(walk, e0 @ e0 + np.arange(6) * np.trace(np.linalg.inv(A)) / n, rtol=1e-12)


def test_gmm_parameter_vector_undoes_label_switching() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-3, 0.5, (60, 2)), rng.normal(3, 1.0, (40, 2)), rng.normal((0, 4), 0.7, (50, 2))])
    gm = make_model("gmm", n_components=3).fit(x, rng=rng)
    theta = tr.gmm_parameter_vector(gm)
    dens = GMMDensity(3, 2)
    log_w, mus, Ls = (a.numpy() for a in dens.unpack(torch.as_tensor(theta)))
    np.testing.assert_allclose(np.exp(log_w), gm.weights_, rtol=1e-10)
    np.testing.assert_allclose(mus, gm.means_, rtol=1e-12)
    np.testing.assert_allclose(np.einsum("kij,klj->kil", Ls, Ls), gm.covariances_, rtol=1e-10)
    # the same mixture with its components listed in another order maps to the same θ
    perm = [2, 0, 1]
    arrays, meta = gm.get_state()
    shuffled = make_model("gmm", n_components=3)
    shuffled.set_state({k: v[perm] for k, v in arrays.items()}, meta)
    np.testing.assert_allclose(tr.gmm_parameter_vector(shuffled, gm.means_), theta, rtol=1e-12)
    with pytest.raises(ConfigError, match="covariance_type 'full'"):
        tr.gmm_parameter_vector(make_model("gmm", n_components=2, covariance_type="diag").fit(x, rng=rng))


def test_bad_input_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="not found"):
        tr.observed_distances(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no genloop run"):
        tr.observed_distances(tmp_path)
    kde = _run(_config({"name": "kde", "bandwidth": 0.3}, lambdas=[1], seeds=1, generations=1), tmp_path / "kde",
               monkeypatch)
    with pytest.raises(ConfigError, match="supported for models gaussian, gmm; got 'kde'"):
        tr.observed_distances(kde)
    with pytest.raises(ConfigError, match="supported for models"):
        tr.predicted_distances("kde", {}, np.zeros((5, 2)), 1.0, 3)
    gauss = _run(_config({"name": "gaussian"}, lambdas=[1], seeds=1, generations=2), tmp_path / "g", monkeypatch)
    with pytest.raises(ConfigError, match="part 'theta'"):
        tr.observed_distances(gauss, part="theta")
    last = _run(_config({"name": "gaussian"}, lambdas=[1], seeds=1, generations=2,
                        output={"keep_samples": 0, "checkpoints": "last"}), tmp_path / "last", monkeypatch)
    with pytest.raises(ConfigError, match="no checkpoint of generation 0"):
        tr.observed_distances(last)
    with pytest.raises(ConfigError, match="generations"):
        tr.gaussian_moment_recursion(10, 1.0, np.eye(2), -1)
    with pytest.raises(ConfigError, match="lambda"):
        tr.gaussian_predicted_distances(10, -1.0, np.eye(2), 3)


def test_theta_star_is_the_real_data_fit_and_generation_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _config({"name": "gaussian"}, lambdas=[0, 1], seeds=2, generations=3)
    folder = _run(doc, tmp_path / "exp", monkeypatch)
    cfg = parse_config(doc)
    for seed in (0, 1):
        train = real_data(cfg, seed)[1].train
        mu, cov = tr.gaussian_theta_star(train)
        np.testing.assert_array_equal(mu, train.mean(axis=0))
        np.testing.assert_allclose(cov, np.cov(train, rowvar=False, ddof=0), rtol=1e-13)
        gen0 = RunStore(folder / f"lam=1/seed={seed}").load_model(0)
        np.testing.assert_allclose(gen0.mean_, mu, rtol=1e-14)
        np.testing.assert_allclose(gen0.covariance_, cov, rtol=1e-13)
    obs = {part: tr.observed_distances(folder, part=part) for part in ("mu", "sigma", "total")}
    assert list(obs["mu"]) == ["0", "1"] and obs["mu"]["1"].shape == (2, 4)
    for part in obs:
        assert np.all(obs[part]["1"][:, 0] < 1e-25)  # the MLE generation 0 is θ*
        assert np.all(obs[part]["0"] < 1e-25)  # λ = 0 refits the real data only
    np.testing.assert_allclose(obs["total"]["1"], obs["mu"]["1"] + obs["sigma"]["1"], rtol=1e-14)
    # the observed squared distance recomputed from the checkpoints by hand
    store = RunStore(folder / "lam=1/seed=1")
    mu, cov = tr.gaussian_theta_star(real_data(cfg, 1)[1].train)
    hand = [np.sum((store.load_model(t).covariance_ - cov) ** 2) for t in range(4)]
    np.testing.assert_allclose(obs["sigma"]["1"][1], hand, rtol=1e-14)
    png = tr.plot_trajectory_overlay(folder, tmp_path / "overlay.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_unbiased_estimator_offset_is_predicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _config({"name": "gaussian", "estimator": "unbiased"}, lambdas=[0], seeds=2, generations=2, n=10)
    comps = tr.compare_trajectories(_run(doc, tmp_path / "u", monkeypatch), part="sigma")
    c = comps["0"]
    # θ* is the divide-by-n fit; the unbiased fit is n/(n−1) Σ*: ||Σ*||²/(n−1)² at every generation
    np.testing.assert_allclose(c.observed, c.predicted_per_seed, rtol=1e-10)
    assert c.exact and np.all(c.observed > 0)


# ---- Monte Carlo through experiment folders (slow) -----------------------------------------------
@pytest.fixture(scope="module")
def gaussian_experiment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tr.TrajectoryComparison]:
    mp = pytest.MonkeyPatch()
    try:
        doc = _config({"name": "gaussian"}, lambdas=[0.5, 2, "inf"], seeds=200, generations=4)
        folder = _run(doc, tmp_path_factory.mktemp("traj") / "exp", mp)
    finally:
        mp.undo()
    return {part: tr.compare_trajectories(folder, part=part) for part in ("mu", "sigma")}


@pytest.mark.slow
@pytest.mark.parametrize("lam", ["0.5", "2", "inf"])
def test_observed_mean_distance_matches_exact_law(gaussian_experiment, lam: str) -> None:
    c = gaussian_experiment["mu"][lam]
    assert c.exact and c.observed.shape == (200, 5)
    se = c.standard_error()
    for t in (1, 2, 4):
        assert abs(c.observed[:, t].mean() - c.predicted[t]) < K_SE * se[t], (lam, t)


@pytest.mark.slow
def test_observed_covariance_distance_matches_prediction(gaussian_experiment) -> None:
    comps = gaussian_experiment["sigma"]
    c = comps["inf"]  # exact (Wishart moments)
    assert c.exact
    se = c.standard_error()
    for t in (1, 2, 4):
        assert abs(c.observed[:, t].mean() - c.predicted[t]) < K_SE * se[t]
    for lam in ("0.5", "2"):  # first order in 1/n: at n = 20 its own error is about 10 %
        c = comps[lam]
        assert not c.exact
        se = c.standard_error()
        for t in (1, 2, 4):
            assert abs(c.observed[:, t].mean() - c.predicted[t]) < 0.15 * c.predicted[t] + 3 * se[t], (lam, t)


@pytest.mark.slow
def test_unbiased_and_regularised_mean_law_in_run_loop() -> None:
    rng = np.random.default_rng(5)
    n, T, seeds, reg = 12, 4, 1500, 0.2
    real = rng.normal(size=(n, 2)) @ np.linalg.cholesky(np.array(COV)).T
    mu_s, cov_s = tr.gaussian_theta_star(real)
    for lam in (1.0, math.inf):
        pred = tr.gaussian_predicted_distances(n, lam, cov_s, T, estimator="unbiased", reg_covar=reg)
        obs = np.array([[np.sum((r.model.mean_ - mu_s) ** 2) for r in run_loop(
            make_model("gaussian", estimator="unbiased", reg_covar=reg), real, lam=lam, generations=T, seed=s)]
            for s in range(seeds)])
        se = obs.std(axis=0, ddof=1) / math.sqrt(seeds)
        for t in (1, T):
            assert abs(obs[:, t].mean() - pred["mu"][t]) < K_SE * se[t], (lam, t)


@pytest.mark.slow
def test_gmm_linearised_prediction_on_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _config({"name": "gmm", "n_components": 8}, lambdas=[1, "inf"], seeds=3, generations=3,
                  data={"name": "eight_gaussians", "n": 200})
    folder = _run(doc, tmp_path / "gmm", monkeypatch)
    comps = tr.compare_trajectories(folder)
    for c in comps.values():
        assert c.part == "theta" and not c.exact
        # t = 0: the prediction is the observed initial offset ||θ_0 − θ*||² itself
        np.testing.assert_allclose(c.predicted_per_seed[:, 0], c.observed[:, 0], rtol=1e-10, atol=1e-20)
    inc = np.diff(comps["inf"].predicted)
    np.testing.assert_allclose(inc, inc[0], rtol=1e-10)  # a random walk: linear growth
    assert comps["1"].predicted[3] < comps["inf"].predicted[3]


def test_predicted_distances_api_for_gmm() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2, 0.5, (80, 2)), rng.normal(2, 0.8, (70, 2))])
    with pytest.raises(ConfigError, match="rng"):
        tr.predicted_distances("gmm", {"n_components": 2}, x, 1.0, 3)
    with pytest.raises(ConfigError, match="covariance_type 'full'"):
        tr.predicted_distances("gmm", {"n_components": 2, "covariance_type": "diag"}, x, 1.0, 3,
                               rng=np.random.default_rng(0))
    out = tr.predicted_distances("gmm", {"n_components": 2}, x, 1.0, 200, rng=np.random.default_rng(4), n_mc=5000)
    assert out["part"] == "theta" and not out["exact"] and out["mean_sq"][0] == 0.0
    assert np.all(np.diff(out["mean_sq"]) >= -1e-15)  # from θ_0 = θ*, the spread only grows
    # it tends to the trace of the linearised stationary covariance of the same A, B
    from genloop.theory.jacobian import expected_neg_hessian

    dens = GMMDensity(2, 2)
    theta = dens.fit(x)
    A = expected_neg_hessian(dens, theta, x)
    B = dens.fisher(theta, rng=np.random.default_rng(4), n_mc=5000)
    stat = np.trace(linearized_stationary_covariance(A, B, 150, 150))
    assert out["mean_sq"][-1] == pytest.approx(stat, rel=1e-6)
    g = tr.predicted_distances("gaussian", {}, x, 1.0, 4)
    np.testing.assert_array_equal(g["mean_sq"], g["mu"])
    assert g["exact"] is True and g["part"] == "mu"
