"""The learner's own map for ``gmm`` (k warm-started EM steps), norms of J and the honest floors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from genloop.loop import LoopState, run_loop
from genloop.models import make_model
from genloop.report.trajectory import gmm_parameter_vector
from genloop.theory.em import (
    em_learner_map,
    em_step_derivatives,
    gmm_em_steps,
    gmm_model_at,
)
from genloop.theory.jacobian import (
    GaussianDensity,
    GMMDensity,
    estimate_free_condition,
    expected_neg_hessian,
    retraining_jacobian,
    transient_amplification,
)
from genloop.theory.report import one_step_constants, w1_at_run_size

K_SE = 4.5


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.concatenate([rng.normal(-1.5, 0.6, n // 2), rng.normal(1.0, 0.8, n - n // 2)])[:, None]


def test_em_steps_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([-1, 0], 0.5, (150, 2)), rng.normal([1, 1], 0.7, (150, 2))])
    density = GMMDensity(2, 2)
    start = make_model("gmm", n_components=2, max_iter=1).fit(x, rng=rng)
    theta0 = gmm_parameter_vector(start)
    for k in (1, 3):
        gm = GaussianMixture(2, tol=0.0, max_iter=k, reg_covar=1e-6, weights_init=start.weights_,
                             means_init=start.means_, precisions_init=start._estimator.precisions_)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(x)
        ref = density.pack(gm.weights_, gm.means_, gm.covariances_).numpy()
        ours = gmm_em_steps(density, torch.as_tensor(theta0), torch.as_tensor(x),
                            torch.full((300,), 1 / 300, dtype=torch.float64), k, 1e-6).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_many_em_steps_converge_to_the_exact_maximiser_jacobian() -> None:
    rng = np.random.default_rng(1)
    x = _mixture(rng, 400)
    density = GMMDensity(2, 1)
    theta = density.fit(x)
    A, B = expected_neg_hessian(density, theta, x), density.fisher(theta)
    deriv = em_step_derivatives(density, theta, x, reg_covar=0.0)
    assert deriv.fixed_point_error < 1e-7
    lam = 0.8
    maps = em_learner_map(deriv, lam, [1, 2, 3000], 320)
    J = retraining_jacobian(A, B, lam)
    np.testing.assert_allclose(maps[3000].J, J, atol=1e-6)
    M = np.linalg.inv(A + lam * B)
    np.testing.assert_allclose(maps[3000].Q_synth, lam**2 * M @ (B / 320) @ M.T, atol=1e-8)
    rates = [float(np.max(np.abs(np.linalg.eigvals(maps[k].J)))) for k in (1, 2, 3000)]
    assert rates[0] > rates[1] > rates[2]  # a learner that stops early contracts more slowly


@pytest.mark.slow
def test_em_learner_prediction_matches_the_real_loop_and_the_maximiser_does_not() -> None:
    # Common random numbers: runs started at θ* ± δv with the same seed differ by J^t(δv) to
    # first order (even-order terms cancel); the registered gmm with tol = 0 runs exactly k EM steps.
    rng = np.random.default_rng(5)
    n, lam, k, delta, T, seeds = 300, 0.55, 2, 0.05, 3, 120
    x = _mixture(rng, n)
    density = GMMDensity(2, 1)
    theta = density.fit(x)
    m = math.floor(lam * n)
    Jk = em_learner_map(em_step_derivatives(density, theta, x), m / n, [k], m)[k].J
    J = retraining_jacobian(expected_neg_hessian(density, theta, x), density.fisher(theta), m / n)
    means = density.unpack(theta)[1].detach().numpy()
    v = np.zeros(density.n_params)
    v[1] = 1.0  # the mean of component 0
    diffs = []
    for s in range(seeds):
        paths = []
        for sign in (1.0, -1.0):
            start = gmm_model_at(density, theta.numpy() + sign * delta * v, {"tol": 0.0, "max_iter": k})
            recs = run_loop(make_model("gmm", n_components=2, tol=0.0, max_iter=k), x, lam=lam, generations=T,
                            seed=s, resume=LoopState(0, start))
            paths.append(np.array([gmm_parameter_vector(r.model, means) for r in recs]))
        diffs.append((paths[0] - paths[1]) / 2)
    diffs = np.array(diffs)
    P, Pk = np.eye(density.n_params), np.eye(density.n_params)
    far = 0
    for t in range(T):
        P, Pk = J @ P, Jk @ Pk
        obs = diffs[:, t].mean(0)
        se = diffs[:, t].std(0, ddof=1) / math.sqrt(seeds)
        assert np.all(np.abs(obs - delta * Pk @ v) < K_SE * se + 1e-4 * delta), (t, obs, delta * Pk @ v, se)
        far += int(np.any(np.abs(obs - delta * P @ v) > 10 * se))
    assert far == T  # the exact maximiser's J is rejected at every generation


def test_transient_amplification_and_the_estimate_free_bound() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        p = 4
        Q = rng.normal(size=(p, p))
        A = Q @ Q.T + 0.05 * np.eye(p)
        R = rng.normal(size=(p, p)) * rng.uniform(0.05, 1.5)
        B = A + 0.5 * (R + R.T)
        if np.linalg.eigvalsh(B)[0] <= 0:
            continue
        for lam in (0.05, 0.2, 1.0):
            J = retraining_jacobian(A, B, lam)
            best, t_best = transient_amplification(J)
            norms = [np.linalg.norm(np.linalg.matrix_power(J, t), 2) for t in range(1, 400)]
            assert best == pytest.approx(max(norms), rel=1e-9) and norms[t_best - 1] == pytest.approx(best)
            ok, rho = estimate_free_condition(A, B, lam)
            if ok:
                assert np.linalg.norm(J, 2) <= rho + 1e-12 < 1
            # J is self-adjoint in the A-inner product: ‖J‖_A = spectral radius
            Lc = np.linalg.cholesky(A)
            JA = Lc.T @ J @ np.linalg.inv(Lc.T)
            assert np.linalg.norm(JA, 2) == pytest.approx(np.max(np.abs(np.linalg.eigvals(J))), rel=1e-8)


def test_w1_noise_floor_flags_a_well_specified_fit() -> None:
    rng = np.random.default_rng(3)
    density = GaussianDensity(1)
    flags = []
    for _ in range(30):
        x = rng.normal(size=(40, 1))
        flags.append(w1_at_run_size(density, density.fit(x), x, rng=rng)["eps_consistent"])
    assert np.mean(flags) > 0.8  # small n, well specified: ε̂ sits inside its noise floor
    bimodal = _mixture(rng, 400)
    out = w1_at_run_size(density, density.fit(bimodal), bimodal, rng=rng)
    assert not out["eps_consistent"] and out["eps"] > 2 * out["eps_floor"]


@pytest.mark.slow
def test_one_step_constants_cover_one_retraining_step() -> None:
    # One retraining step of the Gaussian MLE on n fresh real + m = ⌊λn⌋ draws of θ*: the radius
    # a sqrt(log(b/δ))/sqrt(n) from the delta-method constants holds the step with probability ≈ 1-δ.
    rng = np.random.default_rng(4)
    n, lam = 40, 0.7
    m = math.floor(lam * n)
    density = GaussianDensity(1)
    B = np.diag([1.0, 2.0])  # Fisher information of N(0, 1) in (μ, log σ)
    M = np.linalg.inv(B + (m / n) * B)
    cov = M @ (B / n + (m / n) ** 2 * B / m) @ M.T
    a, b = one_step_constants(cov, n, rng=rng)
    draws = 4000
    dev = np.empty(draws)
    for i in range(draws):
        mix = np.concatenate([rng.normal(size=(n, 1)), rng.normal(size=(m, 1))])
        dev[i] = np.linalg.norm(density.fit(mix).numpy())
    for delta in (0.3, 0.1):
        radius = a * math.sqrt(math.log(b / delta)) / math.sqrt(n)
        cover = float(np.mean(dev <= radius))
        assert abs(cover - (1 - delta)) < K_SE * math.sqrt(delta * (1 - delta) / draws) + 0.02


@pytest.mark.slow
def test_transient_growth_predicted_by_the_learner_map_happens_in_the_real_loop() -> None:
    # 2-D GMM(4) on two moons: ‖J_k‖₂ ≈ 1.36 > 1 although the rate is ≈ 0.76. A perturbation
    # along the top right-singular vector of J_k first grows by ‖J_k‖₂, in the real loop too.
    from genloop.data import make_data

    rng = np.random.default_rng(8)
    n, K, lam, k, delta, T, seeds = 400, 4, 0.65, 2, 0.02, 1, 24
    x = make_data("two_moons", noise=0.1).sample(n, rng=rng)
    density = GMMDensity(K, 2)
    theta = density.fit(x)
    m = math.floor(lam * n)
    Jk = em_learner_map(em_step_derivatives(density, theta, x), m / n, [k], m)[k].J
    growth, t_peak = transient_amplification(Jk)
    assert growth > 1.2 and t_peak == 1 and np.max(np.abs(np.linalg.eigvals(Jk))) < 0.9
    v = np.linalg.svd(Jk)[2][0]
    means = density.unpack(theta)[1].detach().numpy()
    diffs = []
    for s in range(seeds):
        paths = []
        for sign in (1.0, -1.0):
            start = gmm_model_at(density, theta.numpy() + sign * delta * v, {"tol": 0.0, "max_iter": k})
            recs = run_loop(make_model("gmm", n_components=K, tol=0.0, max_iter=k), x, lam=lam, generations=T,
                            seed=s, resume=LoopState(0, start))
            paths.append(np.array([gmm_parameter_vector(r.model, means) for r in recs]))
        diffs.append((paths[0] - paths[1]) / 2)
    diffs = np.array(diffs)
    first = diffs[:, 0]
    norms = np.linalg.norm(first, axis=1) / delta
    assert norms.mean() - K_SE * norms.std(ddof=1) / math.sqrt(seeds) > 1.0  # it grows first
    P = np.eye(density.n_params)
    for t in range(T):
        P = Jk @ P
        obs, se = diffs[:, t].mean(0), diffs[:, t].std(0, ddof=1) / math.sqrt(seeds)
        assert np.all(np.abs(obs - delta * P @ v) < K_SE * se + 1e-3 * delta), t


def test_mixtures_beyond_two_dimensions_fall_back_to_the_exact_maximiser_and_say_so() -> None:
    from genloop.theory.report import theory_analysis

    rng = np.random.default_rng(9)
    x = np.concatenate([rng.normal(-1, 0.5, (150, 3)), rng.normal(1, 0.5, (150, 3))])
    res = theory_analysis("gmm", {"n_components": 2}, x, [0.5], 300, rng=rng, generations=3)
    assert "exact maximiser" in res.learner and any("d > 2" in note for note in res.notes)
    assert res.rows[0]["rate"] == res.rows[0]["maximiser_rate"] and 0 < res.rows[0]["rate"] < 1


def _three_component_data(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    comp = rng.choice(3, size=n, p=[0.3, 0.4, 0.3])
    return (np.array([-2.5, 0.0, 2.0])[comp] + np.array([0.7, 0.8, 0.6])[comp] * rng.normal(size=n))[:, None]


@pytest.mark.slow
def test_tol_stopped_em_contracts_at_the_printed_mean_map_not_at_its_modal_k() -> None:
    # The default gmm (tol = 1e-3) on a 1-D three-component mixture with GMM(2): EM runs 2 or 3
    # iterations per generation, depending on how far each warm start is from the new fit.
    # `genloop theory` prints ρ(J̄), J̄ = Σ share_k J_k with the shares read from the replayed loop.
    # Common-random-number pairs of the real loop, started from a draw of the stationary spread
    # ± δv, shrink their mean difference along v by ρ(J̄) per generation; the modal k's J_k is off.
    from scipy import linalg

    from genloop.theory.report import em_mixture_map, theory_analysis

    n, lam, T, seeds, delta = 700, 1.0, 4, 200, 0.03
    x = _three_component_data(n)
    res = theory_analysis("gmm", {"n_components": 2}, x, [lam], n, rng=np.random.default_rng(1), generations=20, seed=0)
    row = res.rows[0]
    freq = row["em_k_freq"]
    assert set(freq) == {2, 3} and min(freq.values()) > 0.2, freq  # k really varies here
    density = GMMDensity(2, 1)
    theta = torch.as_tensor(res.theta_star)
    m = math.floor(lam * n)
    maps = em_learner_map(em_step_derivatives(density, theta, x), m / n, list(freq), m)
    Jbar, Q, _ = em_mixture_map(maps, freq)
    assert float(np.max(np.abs(np.linalg.eigvals(Jbar)))) == pytest.approx(row["rate"], rel=1e-9)
    ev, V = np.linalg.eig(Jbar)
    v = np.real(V[:, np.argmax(np.abs(ev))])
    evl, U = np.linalg.eig(Jbar.T)
    u = np.real(U[:, np.argmax(np.abs(evl))])
    w, E = np.linalg.eigh(linalg.solve_discrete_lyapunov(Jbar, Q))
    means = density.unpack(theta)[1].detach().numpy()
    rng = np.random.default_rng(2)
    proj = np.empty((seeds, T))
    for s in range(seeds):
        centre = res.theta_star + E @ (np.sqrt(np.clip(w, 0, None)) * rng.standard_normal(w.size))
        paths = []
        for sign in (1.0, -1.0):
            recs = run_loop(make_model("gmm", n_components=2), x, lam=lam, generations=T, seed=100 + s,
                            resume=LoopState(0, gmm_model_at(density, centre + sign * delta * v, {})))
            paths.append(np.array([gmm_parameter_vector(r.model, means) for r in recs]))
        proj[s] = (paths[0] - paths[1]) @ u / 2 / (delta * float(u @ v))
    obs, se = proj.mean(0), proj.std(0, ddof=1) / math.sqrt(seeds)
    t = np.arange(1, T + 1)
    assert np.all(np.abs(obs - row["rate"] ** t) < K_SE * se), (obs, row["rate"] ** t, se)
    for k in freq:  # a single k every generation (the modal one included) is refuted
        rho_k = float(np.max(np.abs(np.linalg.eigvals(maps[k].J))))
        assert abs(obs[-1] - rho_k ** T) > K_SE * se[-1], (k, obs, rho_k)


@pytest.mark.slow
def test_scratch_em_contracts_at_the_exact_maximiser_rate_not_the_warm_learner_rate() -> None:
    # retrain: scratch refits EM from k-means every generation, so nothing of θ' survives but its
    # samples: to first order the map is the exact maximiser's G_λ, whatever tol stops EM at.
    # Common-random-number pairs of the real scratch loop started at θ* ± δv (v: top eigenvector
    # of J) shrink their mean difference by ρ(J)^t; the warm learner's printed rate is refuted.
    from genloop.theory.report import theory_analysis

    n, lam, T, seeds, delta = 300, 1.0, 3, 300, 0.1
    x = _three_component_data(n)
    scratch = theory_analysis("gmm", {"n_components": 2}, x, [lam], n, rng=np.random.default_rng(1), generations=20,
                              seed=0, retrain="scratch")
    warm = theory_analysis("gmm", {"n_components": 2}, x, [lam], n, rng=np.random.default_rng(1), generations=20, seed=0)
    rate, warm_rate = scratch.rows[0]["rate"], warm.rows[0]["rate"]
    assert rate == pytest.approx(scratch.rows[0]["maximiser_rate"]) and warm_rate > rate + 0.1
    density = GMMDensity(2, 1)
    theta = torch.as_tensor(scratch.theta_star)
    m = math.floor(lam * n)
    J = retraining_jacobian(expected_neg_hessian(density, theta, x), density.fisher(theta), m / n)
    ev, V = np.linalg.eig(J)
    v = np.real(V[:, np.argmax(np.abs(ev))])
    evl, U = np.linalg.eig(J.T)
    u = np.real(U[:, np.argmax(np.abs(evl))])
    assert float(np.max(np.abs(ev))) == pytest.approx(rate, rel=1e-6)
    means = density.unpack(theta)[1].detach().numpy()
    proj = np.empty((seeds, T))
    for s in range(seeds):
        paths = []
        for sign in (1.0, -1.0):
            recs = run_loop(make_model("gmm", n_components=2), x, lam=lam, generations=T, seed=100 + s,
                            retrain="scratch", resume=LoopState(0, gmm_model_at(density, scratch.theta_star + sign * delta * v, {})))
            paths.append(np.array([gmm_parameter_vector(r.model, means) for r in recs]))
        proj[s] = (paths[0] - paths[1]) @ u / 2 / (delta * float(u @ v))
    obs, se = proj.mean(0), proj.std(0, ddof=1) / math.sqrt(seeds)
    t = np.arange(1, T + 1)
    assert np.all(np.abs(obs - rate ** t) < K_SE * se), (obs, rate ** t, se)
    assert abs(obs[-1] - warm_rate ** T) > K_SE * se[-1], (obs, warm_rate ** T, se)


def test_the_spread_of_a_random_linear_recursion_matches_its_monte_carlo() -> None:
    # θ_{t+1} = J_k θ_t + ε, k ~ shares, ε ~ N(0, Q): the second-moment recursion of
    # _mixture_spread against 40,000 simulated paths; one k reduces to the fixed-J law.
    from genloop.theory.report import _linear_spread, _mixture_spread

    rng = np.random.default_rng(11)
    p, T, paths = 3, 6, 40_000
    Js = [0.5 * np.eye(p) + 0.2 * rng.normal(size=(p, p)) for _ in range(2)]
    shares = [0.3, 0.7]
    A = rng.normal(size=(p, p))
    Q = 0.01 * (A @ A.T + np.eye(p))
    e0 = np.array([3.0, -2.0, 1.0])
    sd_T, sd_inf = _mixture_spread(Js, shares, Q, np.zeros((p, p)), e0, T)
    x = np.tile(e0, (paths, 1))
    L = np.linalg.cholesky(Q)
    for _ in range(T):
        k = rng.random(paths) < shares[0]
        x = np.where(k[:, None], x @ Js[0].T, x @ Js[1].T) + rng.normal(size=(paths, p)) @ L.T
    msq = (x * x).sum(1)
    assert abs(math.sqrt(msq.mean()) - sd_T) < 4 * msq.std() / math.sqrt(paths) / (2 * sd_T)
    assert math.isfinite(sd_inf) and sd_inf > 0
    one = _mixture_spread([Js[0]], [1.0], Q, np.zeros((p, p)), e0, T)
    assert one == pytest.approx(_linear_spread(Js[0], Q, np.zeros((p, p)), e0, T), rel=1e-8)
