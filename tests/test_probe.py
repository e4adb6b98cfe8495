"""The stability probe (genloop.theory.probe, ``genloop probe``): its parts against exact
answers, and its rate against the exact rates of the Gaussian, the GMM learner and the KDE.

Tolerances: the probe's rate must lie within K_SE jackknife standard errors of the exact rate
(K_SE = 4: the 95 % interval of the probe is t_7 = 2.36 standard errors wide, and
docs/theory.md's validation table shows its coverage over seeds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from genloop.cli import main
from genloop.data import make_data
from genloop.models import make_model
from genloop.theory.probe import (
    MomentFeatures,
    SmoothField,
    dmd_rate,
    jackknife_interval,
    parameter_vector,
    perturbed_copy,
    probe_stability,
)

K_SE = 4.0


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gaussian_data(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 2)) @ np.array([[1.0, 0.5], [0.0, 2.0]])


# ---- the parts -----------------------------------------------------------------------------------
def test_dmd_rate_recovers_the_spectral_radius_of_a_known_linear_map() -> None:
    rng = np.random.default_rng(0)
    F, p = 12, 4
    basis = np.linalg.qr(rng.standard_normal((F, p)))[0]  # the map lives on a 4-dim subspace
    eig = np.array([0.9, 0.5, -0.3, 0.1])
    P = rng.standard_normal((p, p))
    J = basis @ P @ np.diag(eig) @ np.linalg.inv(P) @ basis.T
    X = basis @ rng.standard_normal((p, 10))
    assert dmd_rate(X, J @ X) == pytest.approx(0.9, abs=1e-10)
    # pairs may be scaled freely; a zero snapshot is ignored
    Xs, Ys = X * np.linspace(0.1, 10, 10), J @ X * np.linspace(0.1, 10, 10)
    assert dmd_rate(np.c_[Xs, np.zeros(F)], np.c_[Ys, np.zeros(F)]) == pytest.approx(0.9, abs=1e-10)


def test_jackknife_of_a_mean_is_the_classical_standard_error() -> None:
    x = np.random.default_rng(2).normal(size=9)
    loo = [(x.sum() - xi) / 8 for xi in x]
    se, lo, hi = jackknife_interval(float(x.mean()), loo, 0.95)
    assert se == pytest.approx(x.std(ddof=1) / 3, rel=1e-12)
    from scipy import stats

    assert hi - x.mean() == pytest.approx(stats.t.ppf(0.975, 8) * se, rel=1e-12)
    assert lo == pytest.approx(2 * x.mean() - hi, rel=1e-12)


def test_perturbed_copy_moves_samples_by_the_field_and_keeps_the_parameters() -> None:
    real = _gaussian_data(200)
    model = make_model("gaussian").fit(real, rng=np.random.default_rng(0))
    field = SmoothField.random(real, rng=np.random.default_rng(3))
    z = (real - real.mean(0)) / real.std(0)
    u = field(real) / real.std(0)
    assert np.sqrt(np.mean(np.sum(u * u, axis=1))) == pytest.approx(1.0, rel=1e-12)  # δ is in data sd
    copy = perturbed_copy(model, field, 0.1)
    base = model.sample(50, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(copy.sample(50, rng=np.random.default_rng(4)), base + 0.1 * field(base))
    np.testing.assert_array_equal(parameter_vector(copy), parameter_vector(model))
    assert z.shape == real.shape


def test_moment_features_are_first_second_moments_and_fourier_features() -> None:
    real = _gaussian_data(50)
    f = MomentFeatures.random(real, rng=np.random.default_rng(0), n_fourier=5)
    phi = f(real)
    assert phi.shape == (50, f.size) and f.size == 2 + 3 + 5
    z = (real - real.mean(0)) / real.std(0)
    np.testing.assert_allclose(phi[:, :2], z, atol=1e-12)
    np.testing.assert_allclose(phi[:, 2:5], np.c_[z[:, 0] ** 2, z[:, 0] * z[:, 1], z[:, 1] ** 2], atol=1e-12)


def test_no_synthetic_data_means_nothing_to_probe() -> None:
    res = probe_stability(make_model("gaussian"), _gaussian_data(50), lam=0.0, seed=0)
    assert res.m == 0 and res.rate is None and res.verdict.startswith("no synthetic data")


def test_paired_runs_differ_only_by_the_perturbation() -> None:
    """Common random numbers: with δ → 0 the paired difference vanishes linearly (no noise floor)."""
    real = _gaussian_data(300)
    a = probe_stability(make_model("gaussian"), real, lam=1.0, seed=0, delta=1e-3, replicates=3)
    b = probe_stability(make_model("gaussian"), real, lam=1.0, seed=0, delta=1e-6, replicates=3)
    np.testing.assert_allclose(b.distances * 1e3, a.distances, rtol=1e-2)
    assert a.rate == pytest.approx(b.rate, abs=1e-2)


# ---- the rate against exact rates ----------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_gaussian_rate_is_m_over_n_plus_m(lam: float) -> None:
    n = 1000
    res = probe_stability(make_model("gaussian"), _gaussian_data(n), lam=lam, seed=0)
    m = math.floor(lam * n)
    exact = m / (n + m)
    assert abs(res.rate - exact) <= K_SE * res.se, (res.rate, res.se, exact)
    assert res.ci_high < 1 and res.verdict.startswith("stable")
    assert res.fits == 1 + 8 * 4 * 3


def test_gaussian_fully_synthetic_does_not_contract() -> None:
    res = probe_stability(make_model("gaussian"), _gaussian_data(1000), lam="inf", seed=0)
    assert abs(res.rate - 1.0) <= K_SE * res.se, (res.rate, res.se)
    assert res.ci_high >= 1 and res.verdict.startswith("not contracting")


@pytest.mark.slow
def test_gmm_learner_rate_matches_the_exact_k_step_em_map() -> None:
    """1-D GMM(2), tol = 0 (exactly k = 2 EM steps per generation), probed from θ*: the exact
    rate is ρ(J_k) of genloop.theory.em (0.876 at λ = 2, next mode 0.69)."""
    from genloop.theory.em import em_learner_map, em_step_derivatives
    from genloop.theory.jacobian import GMMDensity

    rng = np.random.default_rng(5)
    n, lam, k = 400, 2.0, 2
    x = np.concatenate([rng.normal(-1.5, 0.6, n // 2), rng.normal(1.0, 0.8, n - n // 2)])[:, None]
    density = GMMDensity(2, 1)
    theta = density.fit(x)
    m = math.floor(lam * n)
    Jk = em_learner_map(em_step_derivatives(density, theta, x), m / n, [k], m)[k].J
    exact = float(np.max(np.abs(np.linalg.eigvals(Jk))))
    lw, mu, L = (a.detach().numpy() for a in density.unpack(theta))
    cov = np.einsum("kij,klj->kil", L, L)
    start = make_model("gmm", n_components=2, tol=0.0, max_iter=k)
    start.set_state({"weights": np.exp(lw), "means": mu, "covariances": cov,
                     "precisions_cholesky": np.linalg.inv(np.linalg.cholesky(cov)).transpose(0, 2, 1)},
                    {"converged": True, "n_iter": 0, "lower_bound": 0.0})
    res = probe_stability(make_model("gmm", n_components=2, tol=0.0, max_iter=k), x, lam=lam, seed=0, start=start)
    assert res.space == "parameters" and res.estimator == "dmd"
    assert abs(res.rate - exact) <= K_SE * res.se, (res.rate, res.se, exact)


def test_kde_rate_in_sample_space_is_m_over_n_plus_m() -> None:
    """Fixed-bandwidth KDE: a synthetic point is a copied parent plus kernel noise, so a
    perturbation of the distribution's mean is passed on by the m/(n+m) synthetic share:
    the slowest rate is m/(n+m) (module docstring). Measured through coupled samples."""
    n, lam = 200, 1.0
    moons = make_data("two_moons", noise=0.05).sample(n, rng=np.random.default_rng(5))
    res = probe_stability(make_model("kde", bandwidth=0.1), moons, lam=lam, seed=0, n_samples=2000)
    assert res.space == "samples" and res.estimator == "dmd"
    assert abs(res.rate - 0.5) <= K_SE * res.se, (res.rate, res.se)


def test_rms_rate_of_a_known_geometric_decay() -> None:
    from genloop.theory.probe import rms_rate

    base = np.random.default_rng(0).normal(size=(5, 2, 1, 6))  # replicates, directions, -, features
    V = base * (0.7 ** np.arange(4))[None, None, :, None]  # four generations of a 0.7 decay
    assert rms_rate(V) == pytest.approx(0.7, rel=1e-12)


# ---- the command ---------------------------------------------------------------------------------
def _config(tmp_path, **loop) -> str:
    doc = {"data": {"name": "gaussian", "n": 50, "mean": [0.0, 0.0]}, "model": {"name": "gaussian"},
           "loop": {"generations": 5, "lambdas": [0, 1, "inf"], "seeds": [0], **loop}, "metrics": ["moments"]}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_probe_command_prints_a_table_per_lambda(tmp_path, capsys) -> None:
    cfg = _config(tmp_path)
    assert main(["probe", cfg, "--replicates", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 replicates x 3 directions x 3 generations" in out
    rows = [line for line in out.splitlines() if line.startswith("|") and line.split("|")[1].strip() in ("0", "1", "inf")]
    assert len(rows) == 3 and "no synthetic data" in rows[0] and "stable" in rows[1] and "not contracting" in rows[2]
    assert main(["probe", cfg, "--replicates", "3", "--json", "--set", "loop.lambdas=[1]"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["lam"] == 1 and row["replicates"] == 3 and row["ci_low"] < row["rate"] < row["ci_high"]
    assert list(tmp_path.iterdir()) == [tmp_path / "cfg.yaml"]  # the probe writes nothing


def test_probe_command_rejects_bad_counts(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["probe", _config(tmp_path), "--replicates", "2"])
    assert exc.value.code == 2 and "--replicates" in capsys.readouterr().err


@pytest.mark.slow
def test_report_has_the_probe_section_on_request(tmp_path) -> None:
    from genloop.config import load_config
    from genloop.report.html import build_report
    from genloop.report.probe import config_probe

    cfg_path = _config(tmp_path)
    assert main(["run", cfg_path, "--out", str(tmp_path / "exp"), "-q", "--set", "loop.generations=1"]) == 0
    page = build_report(tmp_path / "exp", theory=False, probe=True).read_text()
    assert "Stability probe (measured rate per λ)" in page and "8 replicates x 3 directions x 3 generations" in page
    cfg = load_config(cfg_path, ["loop.generations=1"])
    rate = config_probe(cfg)[1].rate  # λ = 1: the report shows the command's numbers
    assert f"{rate:.3f}" in page
    assert "Stability probe" not in build_report(tmp_path / "exp", theory=False).read_text()
