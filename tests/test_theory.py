"""Tests of the stability theory toolkit (genloop.theory) against independent references.

References: direct Gamma-function formulas, the exact chi-square law, Monte Carlo simulation of
the refitting recursions (tolerances in standard errors, stated per test), scipy.stats
densities, closed-form Fisher information, and finite differences of the retraining map.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from genloop.errors import ConfigError
from genloop.theory import expfam, gaussian, jacobian
from genloop.theory.jacobian import GaussianDensity, StudentTDensity
from genloop.theory.report import SUPPORTED_MODELS, format_theory_table, theory_rows

K_SE = 4.5  # Monte Carlo tolerance in standard errors (two-sided p ~ 7e-6 per check)


# ============================================================ Gaussian collapse
@pytest.mark.parametrize("n", [2, 3, 10, 100])
def test_c4_matches_gamma_formula(n: int) -> None:
    direct = math.sqrt(2.0 / (n - 1)) * math.gamma(n / 2) / math.gamma((n - 1) / 2)
    assert gaussian.c4(n) == pytest.approx(direct, rel=1e-13)


def test_c4_large_n_asymptotics() -> None:
    for n in (10**5, 10**7, 10**9):
        assert gaussian.c4(n) == pytest.approx(1 - 1 / (4 * n) - 7 / (32 * n**2), abs=1e-14)
        assert gaussian.c4(n) < 1.0


def _simulate_refits(n: int, d: int, t: int, estimator: str, chains: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Covariances Σ_0..Σ_t of `chains` independent fully synthetic Gaussian refits (Σ_0 = I)."""
    ddof = 0 if estimator == "mle" else 1
    mu = np.zeros((chains, d))
    cov = np.broadcast_to(np.eye(d), (chains, d, d)).copy()
    out = [cov]
    for _ in range(t):
        L = np.linalg.cholesky(cov)
        x = mu[:, None, :] + np.einsum("cij,ckj->cki", L, rng.standard_normal((chains, n, d)))
        mu = x.mean(axis=1)
        diff = x - mu[:, None, :]
        cov = np.einsum("cki,ckj->cij", diff, diff) / (n - ddof)
        out.append(cov)
    return out


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
@pytest.mark.parametrize("n", [4, 12])
def test_expected_sigma_ratio_monte_carlo(estimator: str, n: int) -> None:
    rng = np.random.default_rng(1)
    t, chains = 6, 40_000
    covs = _simulate_refits(n, 1, t, estimator, chains, rng)
    for s in (1, 3, 6):
        ratio = np.sqrt(covs[s][:, 0, 0])
        se = ratio.std(ddof=1) / math.sqrt(chains)
        assert abs(ratio.mean() - gaussian.expected_sigma_ratio(n, s, estimator)) < K_SE * se
        # and the log walk's exact mean and variance
        m, v = gaussian.log_sigma_moments(n, s, estimator)
        lr = np.log(ratio)
        assert abs(lr.mean() - m) < K_SE * lr.std() / math.sqrt(chains)
        assert abs(lr.var() - v) < K_SE * v * math.sqrt(2.0 / chains) * 2  # heavy-ish tails: 2x


def test_expected_sigma_ratio_unbiased_is_c4_power() -> None:
    assert gaussian.expected_sigma_ratio(7, 5, "unbiased") == pytest.approx(gaussian.c4(7) ** 5, rel=1e-13)
    assert gaussian.expected_sigma_ratio(7, 5, "mle") == pytest.approx(gaussian.c4(7) ** 5 * (6 / 7) ** 2.5, rel=1e-13)
    assert gaussian.expected_sigma_ratio(7, 0) == 1.0


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
@pytest.mark.parametrize("n", [2, 5, 50, 5000])
def test_log_gv_cdf_is_exact_chi_square_at_t1(estimator: str, n: int) -> None:
    c = n if estimator == "mle" else n - 1
    x = np.log(scipy.stats.chi2.ppf(np.linspace(1e-4, 1 - 1e-4, 11), n - 1) / c)
    F = gaussian.log_generalized_variance_cdf(x, n, 1, 1, estimator)
    exact = scipy.stats.chi2.cdf(c * np.exp(x), n - 1)
    np.testing.assert_allclose(F, exact, atol=1e-9)


@pytest.mark.parametrize("n,d,t", [(4, 1, 6), (6, 3, 3)])
def test_log_gv_cdf_matches_monte_carlo(n: int, d: int, t: int) -> None:
    # Bartlett: log det S/det Σ is a sum of log χ²_{n-i}; simulate the full refits instead.
    rng = np.random.default_rng(2)
    chains = 30_000
    covs = _simulate_refits(n, d, t, "mle", chains, rng)
    logdet = np.linalg.slogdet(covs[t])[1]
    qs = np.quantile(logdet, [0.05, 0.25, 0.5, 0.75, 0.95])
    F = gaussian.log_generalized_variance_cdf(qs, n, d, t, "mle")
    emp = np.array([(logdet <= q).mean() for q in qs])
    se = np.sqrt(emp * (1 - emp) / chains)
    assert np.all(np.abs(F - emp) < K_SE * se)


def test_quantiles_invert_cdf_and_band_is_ordered() -> None:
    n, t = 6, 9
    for q in (0.01, 0.3, 0.5, 0.9):
        x = gaussian.log_generalized_variance_quantile(q, n, 1, t, "unbiased")
        assert gaussian.log_generalized_variance_cdf(x, n, 1, t, "unbiased")[0] == pytest.approx(q, abs=1e-9)
    lo, med, hi = gaussian.sigma_ratio_band(n, t, "unbiased", level=0.8)
    assert lo < med < hi
    assert gaussian.sigma_ratio_cdf(med, n, t, "unbiased")[0] == pytest.approx(0.5, abs=1e-9)
    assert gaussian.sigma_ratio_cdf(hi, n, t, "unbiased")[0] == pytest.approx(0.9, abs=1e-9)
    # collapse: the median falls below E[σ_t] (right-skewed law) and below 1
    assert med < gaussian.expected_sigma_ratio(n, t, "unbiased") < 1.0


def test_normal_approximation_converges_with_t() -> None:
    n = 5
    errs = []
    for t in (1, 10, 100):
        x = gaussian.log_generalized_variance_quantile(0.9, n, 1, t, "mle")
        errs.append(abs(gaussian.log_generalized_variance_cdf(x, n, 1, t, "mle", method="normal")[0] - 0.9))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 5e-3


@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
def test_covariance_ratio_and_generalized_variance_monte_carlo(estimator: str) -> None:
    rng = np.random.default_rng(3)
    n, d, t, chains = 7, 3, 4, 40_000
    covs = _simulate_refits(n, d, t, estimator, chains, rng)
    S = covs[t]
    r = gaussian.expected_covariance_ratio(n, t, estimator)
    mean, se = S.mean(0), S.std(0, ddof=1) / math.sqrt(chains)
    assert np.all(np.abs(mean - r * np.eye(d)) < K_SE * se)
    det = np.linalg.det(S)
    for power in (1.0, 0.5):
        vals = det**power
        m = gaussian.generalized_variance_moment(n, d, t, estimator, r=power)
        assert abs(vals.mean() - m) < K_SE * vals.std(ddof=1) / math.sqrt(chains)
    # d = 1, r = 1/2 is the expected sigma ratio
    assert gaussian.generalized_variance_moment(9, 1, 4, estimator, r=0.5) == pytest.approx(
        gaussian.expected_sigma_ratio(9, 4, estimator), rel=1e-12
    )


def test_gaussian_bad_input() -> None:
    with pytest.raises(ConfigError, match="n"):
        gaussian.c4(1)
    with pytest.raises(ConfigError, match="estimator"):
        gaussian.expected_sigma_ratio(5, 2, "ols")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n \\(samples"):
        gaussian.generalized_variance_moment(3, 3, 1)
    with pytest.raises(ConfigError, match="quantile"):
        gaussian.sigma_ratio_quantile(1.5, 5, 2)


# ============================================================ exponential families
def test_expfam_trajectory_solves_the_recursion() -> None:
    eta_data, eta0, lam = np.array([1.0, -2.0]), np.array([4.0, 3.0]), 0.7
    traj = expfam.expfam_mean_trajectory(eta_data, eta0, lam, 12)
    eta = eta0.copy()
    for t in range(13):
        np.testing.assert_allclose(traj[t], eta, rtol=1e-13)
        eta = (eta_data + lam * eta) / (1 + lam)
    assert expfam.expfam_rate(lam) == pytest.approx(lam / (1 + lam))
    assert expfam.expfam_rate(math.inf) == 1.0
    assert expfam.replace_contraction(10, 0.5) == pytest.approx(1 / 3)
    assert expfam.replace_contraction(10, 0.29) == pytest.approx(2 / 12)  # ⌊2.9⌋ = 2


@pytest.mark.parametrize("n,m", [(10, 5), (20, 40)])
def test_known_variance_stationary_variance_monte_carlo(n: int, m: int) -> None:
    # μ_{t+1} = (n μ_real + Σ synth)/(n+m), synth ~ N(μ_t, s²): simulate many chains at once.
    rng = np.random.default_rng(4)
    chains, s2 = 50_000, 2.0
    mu = np.zeros(chains)
    for t in range(1, 41):
        synth_mean = mu + math.sqrt(s2 / m) * rng.standard_normal(chains)
        mu = m * synth_mean / (n + m)
        if t in (2, 40):
            v = expfam.known_variance_mean_variance(n, m, s2, t=t)
            assert abs(mu.var() - v) < K_SE * v * math.sqrt(2.0 / chains)
    lam = m / n
    assert expfam.known_variance_mean_variance(n, m, s2) == pytest.approx(lam * s2 / (n * (1 + 2 * lam)))


@pytest.mark.parametrize("n,m", [(8, 4), (15, 30)])
def test_gaussian_mle_mean_covariance_monte_carlo(n: int, m: int) -> None:
    # Full MLE Gaussian refits (mean and variance) on n fixed real + m synthetic points.
    rng = np.random.default_rng(5)
    chains = 40_000
    real = rng.normal(1.0, 1.5, size=n)
    mu_r, var_r = real.mean(), real.var()
    mu = np.full(chains, mu_r)
    var = np.full(chains, var_r)
    for t in range(1, 26):
        synth = mu[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((chains, m))
        X = np.concatenate([np.broadcast_to(real, (chains, n)), synth], axis=1)
        mu, var = X.mean(1), X.var(1)
        if t in (1, 25):
            V = float(expfam.gaussian_mle_mean_covariance(n, m, np.array([[var_r]]), t=t)[0, 0])
            e = mu - mu_r
            assert abs(e.mean()) < K_SE * math.sqrt(V / chains)  # E[μ_t] = μ_real exactly
            assert abs(e.var() - V) < K_SE * V * math.sqrt(2.0 / chains) * 1.5
    # exact E[σ²_t] = σ²_real - Var(μ_t)
    V = float(expfam.gaussian_mle_mean_covariance(n, m, np.array([[var_r]]), t=25)[0, 0])
    assert abs(var.mean() - (var_r - V)) < K_SE * var.std() / math.sqrt(chains)
    # the first-order formula is within O(1/n) of the exact one
    approx = expfam.stationary_covariance_approx(m / n, n, np.array([[var_r]]))[0, 0]
    exact = expfam.gaussian_mle_mean_covariance(n, m, np.array([[var_r]]))[0, 0]
    assert approx == pytest.approx(exact * (n * (n + 2 * m) + m) / (n * (n + 2 * m)), rel=1e-12)


@pytest.mark.parametrize("estimator", [None, "mle", "unbiased"])
def test_fully_synthetic_mean_variance_monte_carlo(estimator: str | None) -> None:
    rng = np.random.default_rng(6)
    n, t, chains = 5, 8, 60_000
    mu = np.zeros(chains)
    var = np.ones(chains)
    for _ in range(t):
        x = mu[:, None] + np.sqrt(var)[:, None] * rng.standard_normal((chains, n))
        mu = x.mean(1)
        if estimator is not None:
            var = x.var(1, ddof=0 if estimator == "mle" else 1)
    V = float(expfam.fully_synthetic_mean_covariance(n, t, np.eye(1), estimator)[0, 0])
    assert abs(mu.var() - V) < K_SE * V * math.sqrt(2.0 / chains) * 1.5
    if estimator == "mle":
        assert V == pytest.approx(1 - (4 / 5) ** 8)
    else:
        assert V == pytest.approx(t / n)


def test_expfam_bad_input() -> None:
    with pytest.raises(ConfigError, match="lambda"):
        expfam.expfam_rate(-1.0)
    with pytest.raises(ConfigError, match="lambda"):
        expfam.replace_contraction(10, float("nan"))
    with pytest.raises(ConfigError, match="n must"):
        expfam.known_variance_mean_variance(0, 3, 1.0)


# ============================================================ the Jacobian and adapters
def _random_spd(p: int, rng: np.random.Generator) -> np.ndarray:
    M = rng.standard_normal((p, p))
    return M @ M.T + 0.3 * np.eye(p)


def test_jacobian_eigenvalues_formula_and_radius_below_one() -> None:
    rng = np.random.default_rng(7)
    A, B = _random_spd(4, rng), _random_spd(4, rng)
    for lam in (0.01, 0.5, 3.0, 1e4):
        J = jacobian.retraining_jacobian(A, B, lam)
        direct = np.sort(np.linalg.eigvals(J).real)[::-1]
        np.testing.assert_allclose(jacobian.jacobian_eigenvalues(A, B, lam), direct, rtol=1e-9, atol=1e-12)
        assert jacobian.spectral_radius(A, B, lam) < 1.0
    np.testing.assert_array_equal(jacobian.retraining_jacobian(A, B, math.inf), np.eye(4))
    # exponential family: A = B gives λ/(1+λ) in every direction
    np.testing.assert_allclose(jacobian.jacobian_eigenvalues(A, A, 2.0), np.full(4, 2 / 3), rtol=1e-12)


def test_exact_rate_is_invariant_under_reparametrisation_paper_alpha_is_not() -> None:
    rng = np.random.default_rng(8)
    A, B = _random_spd(3, rng), _random_spd(3, rng)
    P = rng.standard_normal((3, 3)) + 2 * np.eye(3)  # θ = P φ
    A2, B2 = P.T @ A @ P, P.T @ B @ P
    for lam in (0.3, 5.0):
        np.testing.assert_allclose(
            jacobian.jacobian_eigenvalues(A, B, lam), jacobian.jacobian_eigenvalues(A2, B2, lam), rtol=1e-9
        )
    assert abs(np.linalg.eigvalsh(A)[0] - np.linalg.eigvalsh(A2)[0]) > 1e-3


def test_paper_condition_iff_rate_below_one() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        lam, alpha, L, eps = rng.uniform(0, 1), rng.uniform(0.1, 3), rng.uniform(0, 5), rng.uniform(0, 0.5)
        rho = jacobian.paper_rate(lam, alpha, L, eps)
        assert jacobian.paper_condition(lam, alpha, L, eps) == (rho < 1)
        den = alpha - lam * (alpha + eps * L)
        assert (rho == math.inf) == (den <= 0)
    # well-specified (ε = 0): threshold 1/2 and ρ = λ/(1-λ)
    assert jacobian.paper_rate(0.25, 1.0, 7.0, 0.0) == pytest.approx(1 / 3)
    assert not jacobian.paper_condition(0.5, 1.0, 7.0, 0.0)


def test_gaussian_density_log_prob_fit_and_exact_fisher() -> None:
    rng = np.random.default_rng(10)
    d = 3
    model = GaussianDensity(d)
    cov = _random_spd(d, rng)
    x = rng.multivariate_normal([1.0, -1.0, 0.5], cov, size=400)
    theta = model.fit(x)
    mu, L = model.unpack(theta)
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose((L @ L.T).numpy(), np.cov(x.T, ddof=0), rtol=1e-10)
    ref = scipy.stats.multivariate_normal(x.mean(0), np.cov(x.T, ddof=0)).logpdf(x)
    np.testing.assert_allclose(model.log_prob(torch.as_tensor(x), theta).numpy(), ref, rtol=1e-10)
    # the MLE is a stationary point of the mean log-likelihood
    grad = torch.autograd.functional.jacobian(lambda th: model.log_prob(torch.as_tensor(x), th).mean(), theta)
    assert float(grad.abs().max()) < 1e-10
    # exponential family at its moment-matching fit: A = B, all κ = 1
    A = jacobian.expected_neg_hessian(model, theta, x)
    B = model.fisher(theta)
    np.testing.assert_allclose(A, B, atol=1e-9)
    np.testing.assert_allclose(jacobian.generalized_eigenvalues(A, B), 1.0, atol=1e-9)
    # the quadrature Fisher agrees with the score outer product by Monte Carlo
    xs = model.sample(theta, 100_000, rng)
    g = torch.func.vmap(torch.func.grad(lambda th, xi: model.log_prob(xi[None], th)[0]), in_dims=(None, 0))(
        theta, torch.as_tensor(xs)
    ).numpy()
    mc = g.T @ g / len(g)
    se = np.sqrt((g[:, :, None] * g[:, None, :]).var(0) / len(g))
    assert np.all(np.abs(mc - B) < K_SE * se + 1e-12)


@pytest.mark.parametrize("nu", [3.0, 10.0])
def test_student_t_log_prob_and_closed_form_fisher(nu: float) -> None:
    model = StudentTDensity(dof=nu)
    theta = torch.tensor([0.4, -0.3], dtype=torch.float64)
    x = np.linspace(-6, 6, 13)[:, None]
    ref = scipy.stats.t(nu, loc=0.4, scale=math.exp(-0.3)).logpdf(x[:, 0])
    np.testing.assert_allclose(model.log_prob(torch.as_tensor(x), theta).numpy(), ref, rtol=1e-12)
    B = model.fisher(theta)
    sigma = math.exp(-0.3)
    closed = np.diag([(nu + 1) / ((nu + 3) * sigma**2), 2 * nu / (nu + 3)])
    np.testing.assert_allclose(B, closed, rtol=1e-10, atol=1e-12)


def test_student_t_fit_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    x = 1.0 + 2.0 * rng.standard_t(4.0, size=3000)
    model = StudentTDensity(dof=4.0)
    theta = model.fit(x[:, None]).numpy()
    df, loc, scale = scipy.stats.t.fit(x, f0=4.0)
    assert theta[0] == pytest.approx(loc, abs=1e-4)
    assert math.exp(theta[1]) == pytest.approx(scale, rel=1e-4)


def _mixture_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes/weights of p_data = 0.6 N(-0.5, 0.8²) + 0.4 N(1, 2.5²) (error < 1e-15)."""
    h = 0.01
    x = np.arange(-30.0, 30.0 + h / 2, h)
    p = 0.6 * scipy.stats.norm.pdf(x, -0.5, 0.8) + 0.4 * scipy.stats.norm.pdf(x, 1.0, 2.5)
    return x[:, None], p * h


def _mixture3_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes/weights of 0.5 N(-2, 0.6²) + 0.3 N(0.5, 0.8²) + 0.2 N(2.5, 1.5²)."""
    h = 0.01
    x = np.arange(-25.0, 25.0 + h / 2, h)
    p = (0.5 * scipy.stats.norm.pdf(x, -2.0, 0.6) + 0.3 * scipy.stats.norm.pdf(x, 0.5, 0.8)
         + 0.2 * scipy.stats.norm.pdf(x, 2.5, 1.5))
    return x[:, None], p * h


@pytest.mark.parametrize(
    "model,data",
    [
        (StudentTDensity(dof=4.0), _mixture_quadrature),
        (StudentTDensity(dof=4.0, learn_dof=True), _mixture_quadrature),
        (GaussianDensity(1), _mixture_quadrature),
        (jacobian.GMMDensity(2, 1), _mixture3_quadrature),
    ],
    ids=["student_t", "student_t_free_dof", "gaussian", "gmm2_on_3_modes"],
)
def test_exact_jacobian_matches_finite_differences_of_retraining_map(model: jacobian.ParametricDensity, data) -> None:
    # Misspecified fits to a Gaussian mixture; G_λ computed by Newton on the quadrature
    # objective E_data[log p_θ] + λ E_{p_θ'}[log p_θ]; central differences with step 1e-4.
    x, w = data()
    theta = model.fit(x, w)
    A = jacobian.expected_neg_hessian(model, theta, x, w)
    B = model.fisher(theta)
    p = model.n_params
    for lam in (0.5, 2.0):
        G0 = jacobian.retraining_map(model, theta, x, lam, data_weights=w)
        assert float((G0 - theta).abs().max()) < 1e-9  # θ* is a fixed point of G_λ
        J = jacobian.retraining_jacobian(A, B, lam)
        J_fd = np.zeros((p, p))
        for j in range(p):
            e = torch.zeros(p, dtype=torch.float64)
            e[j] = 1e-4
            up = jacobian.retraining_map(model, theta + e, x, lam, data_weights=w)
            down = jacobian.retraining_map(model, theta - e, x, lam, data_weights=w)
            J_fd[:, j] = ((up - down) / 2e-4).numpy()
        np.testing.assert_allclose(J, J_fd, atol=1e-3)
        assert np.max(np.abs(J - J_fd)) < 1e-6  # measured ~1e-9
        if model.exponential_family:
            np.testing.assert_allclose(J, lam / (1 + lam) * np.eye(p), atol=1e-8)
        else:  # genuinely not λ/(1+λ): misspecified non-exponential models have κ ≠ 1
            assert abs(jacobian.spectral_radius(A, B, lam) - lam / (1 + lam)) > 1e-3


def test_per_sample_hessians_and_lipschitz_estimate_gaussian() -> None:
    # 1-D Gaussian in (μ, s = log σ): ∂²/∂μ² = -1/σ², ∂²/∂μ∂s = -2u/σ, ∂²/∂s² = -2u² (u = (x-μ)/σ)
    rng = np.random.default_rng(12)
    model = GaussianDensity(1)
    mu, s = 0.5, math.log(1.3)
    theta = torch.tensor([mu, s], dtype=torch.float64)
    x = rng.normal(mu, 1.3, size=(50, 1))
    H = jacobian.per_sample_hessians(model, theta, x)
    u = (x[:, 0] - mu) / 1.3
    ref = np.stack([np.stack([np.full_like(u, -1 / 1.3**2), -2 * u / 1.3], -1), np.stack([-2 * u / 1.3, -2 * u**2], -1)], -2)
    np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-12)
    Lhat = jacobian.estimate_lipschitz(model, theta, x, rng=rng, n_points=100)
    # every secant is an average of ∂_x H = [[0, -2/σ²], [-2/σ², -4u/σ²]] along a segment:
    # its norm is ≥ 2/σ² (off-diagonal) and ≤ sup over the points' range
    assert Lhat >= 2 / 1.3**2 - 1e-9
    umax = 12.0  # far beyond any of 100 normal draws
    assert Lhat <= np.linalg.norm(np.array([[0, -2], [-2, -4 * umax]]) / 1.3**2, 2)


def test_w1_estimate_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(13)
    model = GaussianDensity(1)
    theta = torch.tensor([0.0, 0.0], dtype=torch.float64)
    data = rng.normal(0.5, 1.0, size=(20_000, 1))  # W1(N(0,1), N(0.5,1)) = 0.5
    assert jacobian.estimate_w1(model, theta, data, rng=rng) == pytest.approx(0.5, abs=0.03)
    model2 = GaussianDensity(2)
    theta2 = model2.pack(np.zeros(2), np.eye(2))
    data2 = rng.normal(size=(800, 2)) + np.array([3.0, 4.0])  # W1 = 5 (pure shift)
    assert jacobian.estimate_w1(model2, theta2, data2, rng=rng, n_samples=800) == pytest.approx(5.0, abs=0.25)


def test_bootstrap_constants_give_calibrated_radius() -> None:
    # Fit (a, b) by bootstrap on one data set, then check the radius a sqrt(log(b/δ))/sqrt(n)
    # covers about 1-δ of fits on fresh data sets from the same law.
    rng = np.random.default_rng(14)
    model = GaussianDensity(1)
    n, delta = 200, 0.1
    real = rng.normal(0.0, 2.0, size=(n, 1))
    a, b = jacobian.bootstrap_constants(model, real, rng=rng, n_boot=400)
    radius = jacobian.theorem2_radius(a, b, n, delta, rho=0.0)
    truth = model.pack(np.zeros(1), np.eye(1) * 4.0).numpy()
    hits = [
        np.linalg.norm(model.fit(rng.normal(0.0, 2.0, size=(n, 1))).numpy() - truth) <= radius for _ in range(400)
    ]
    cover = float(np.mean(hits))
    assert 0.78 <= cover <= 0.98  # nominal 0.9; bootstrap error in (a, b) plus 400-trial noise
    assert jacobian.theorem2_radius(a, b, n, delta, rho=0.5) == pytest.approx(2 * radius)
    assert jacobian.theorem2_radius(a, b, n, delta, rho=1.0) == math.inf


def test_linearized_stationary_covariance_exp_family_exact() -> None:
    rng = np.random.default_rng(15)
    B = _random_spd(3, rng)
    n, m = 50, 120
    S = jacobian.linearized_stationary_covariance(B, B, n, m)
    np.testing.assert_allclose(S, m / (n * (n + 2 * m)) * np.linalg.inv(B), rtol=1e-10)
    np.testing.assert_array_equal(jacobian.linearized_stationary_covariance(B, B, n, 0), 0.0)


def test_generalized_eigenvalues_reject_non_concave_fit() -> None:
    with pytest.raises(ConfigError, match="positive definite"):
        jacobian.generalized_eigenvalues(np.diag([1.0, -1.0]), np.eye(2))


# ============================================================ report
def test_theory_rows_gaussian_and_student_t() -> None:
    rng = np.random.default_rng(16)
    real = np.concatenate([rng.normal(-2, 0.7, 300), rng.normal(1.5, 1.0, 300)])[:, None]
    lams = [0.1, 1.0, 10.0, 0.255, math.inf]
    rows = theory_rows("gaussian", {"estimator": "mle"}, real, lams, 100, rng=rng)
    assert [r["lam"] for r in rows] == lams
    var = real.var()
    for r in rows:
        assert r["exact_rate"] == pytest.approx(r["expfam_rate"], abs=1e-9)
        assert r["paper_condition"] == (r["paper_rho"] < 1)
        if math.isfinite(r["lam"]):
            m = r["m"]
            assert m == math.floor(r["lam"] * 100)
            assert r["exact_rate"] == pytest.approx(m / (100 + m), abs=1e-12)  # m/(n+m), not λ/(1+λ)
            # exact stationary covariance of the MLE mean: m Σ/(n(n+2m) + m)
            assert r["stationary_sd"] == pytest.approx(math.sqrt(m * var / (100 * (100 + 2 * m) + m)), rel=1e-8)
            # an exponential family: J = rate·I, no transient growth, ‖J‖₂ = rate
            assert r["norm2"] == pytest.approx(r["rate"], abs=1e-9)
            assert r["free_condition"] == (r["lam_eff"] < 0.5)
    assert rows[3]["m"] == 25 and rows[3]["rate"] == pytest.approx(0.2)
    assert rows[-1]["exact_rate"] == 1.0 and rows[-1]["stationary_sd"] == math.inf
    rows_t = theory_rows("student_t", {"dof": 4.0}, real, [0.5], 100, rng=rng)
    assert rows_t[0]["expfam_rate"] is None
    assert 0 < rows_t[0]["exact_rate"] < 1
    # no law for a non-exponential model with an accumulating pool: say so, print no rate
    none = theory_rows("student_t", {"dof": 4.0}, real, [0.5], 100, rng=rng, scheme="accumulate")[0]
    assert none["rate"] is None and none["sd_T"] is None and "no prediction" in none["verdict"]
    table = format_theory_table(rows + rows_t)
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows) + 1 and "rate" in lines[0] and "student_t" in lines[-1]
    assert "λ" in lines[0] and "lambda" in format_theory_table(rows, unicode=False).splitlines()[0]


def test_theory_rows_bad_input() -> None:
    rng = np.random.default_rng(17)
    real = rng.normal(size=(50, 1))
    with pytest.raises(ConfigError) as err:
        theory_rows("kde", {}, real, [0.5], 50, rng=rng)
    for name in SUPPORTED_MODELS:
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="estimatr"):
        theory_rows("gaussian", {"estimatr": "mle"}, real, [0.5], 50, rng=rng)
    with pytest.raises(ConfigError, match="lambda"):
        theory_rows("gaussian", {}, real, [-0.5], 50, rng=rng)
    with pytest.raises(ConfigError, match="1-D"):
        theory_rows("student_t", {}, rng.normal(size=(50, 2)), [0.5], 50, rng=rng)


# ============================================================ mixtures and the Monte Carlo Fisher
class _StudentTNoQuadrature(StudentTDensity):
    def quadrature(self, theta: torch.Tensor) -> None:  # type: ignore[override]
        return None


def test_monte_carlo_fisher_matches_closed_form() -> None:
    nu, n_mc = 5.0, 100_000
    model = _StudentTNoQuadrature(dof=nu)
    theta = torch.tensor([0.2, 0.5], dtype=torch.float64)
    B = model.fisher(theta, rng=np.random.default_rng(18), n_mc=n_mc)
    sigma = math.exp(0.5)
    closed = np.diag([(nu + 1) / ((nu + 3) * sigma**2), 2 * nu / (nu + 3)])
    # score outer product: per-entry sd of s_i s_j is at most ~3x the entry for ν = 5
    assert np.all(np.abs(B - closed) < K_SE * 3.0 * np.sqrt(np.outer(np.diag(closed), np.diag(closed)) / n_mc))
    with pytest.raises(ConfigError, match="rng"):
        model.fisher(theta)


def test_gmm_density_log_prob_fit_and_analysis() -> None:
    rng = np.random.default_rng(19)
    model = jacobian.GMMDensity(2, 1)
    x = np.concatenate([rng.normal(-2.0, 0.5, 400), rng.normal(1.0, 1.0, 600)])[:, None]
    theta = model.fit(x)
    log_w, mus, Ls = (a.detach().numpy() for a in model.unpack(theta))
    ref = np.log(
        sum(np.exp(log_w[k]) * scipy.stats.norm.pdf(x[:, 0], mus[k, 0], Ls[k, 0, 0]) for k in range(2))
    )
    np.testing.assert_allclose(model.log_prob(torch.as_tensor(x), theta).numpy(), ref, rtol=1e-10)
    grad = torch.autograd.functional.jacobian(lambda th: model.log_prob(torch.as_tensor(x), th).mean(), theta)
    assert float(grad.abs().max()) < 1e-8  # EM polished by Newton: a stationary point
    assert sorted(np.round(mus[:, 0], 0).tolist()) == [-2.0, 1.0]
    # pack/unpack round trip
    covs = np.einsum("kij,klj->kil", Ls, Ls)
    np.testing.assert_allclose(model.pack(np.exp(log_w), mus, covs).numpy(), theta.numpy(), atol=1e-12)
    rows = theory_rows("gmm", {"n_components": 2}, x, [0.5, 2.0], 1000, rng=rng)
    for r in rows:
        assert 0 < r["exact_rate"] < 1 and r["expfam_rate"] is None
    assert rows[0]["exact_rate"] < rows[1]["exact_rate"]
    with pytest.raises(ConfigError, match="full"):
        theory_rows("gmm", {"n_components": 2, "covariance_type": "diag"}, x, [0.5], 1000, rng=rng)


def test_theory_text_for_a_config() -> None:
    from genloop.config import parse_config
    from genloop.theory.config_theory import theory_text

    doc = {
        "data": {"name": "gaussian", "n": 60, "mean": [0.0]},
        "model": {"name": "gaussian", "estimator": "mle"},
        "loop": {"generations": 3, "lambdas": [0.5, 2, "inf"], "scheme": "replace"},
    }
    text = theory_text(parse_config(doc), unicode=False)
    table = [line for line in text.splitlines() if line.startswith("| gaussian")]
    assert len(table) == 3
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0][3] == "0.3333" and cells[1][3] == "0.6667" and cells[2][3] == "1"  # m/(n+m)
    assert "stable: contracts at 0.333/generation" in cells[0][-1] and "drifts" in cells[2][-1]
    expect = gaussian.expected_sigma_ratio(60, 3, "mle")
    assert f"E[sigma_T]/sigma_0 = {expect:.4g}" in text  # the collapse line at λ = ∞
    assert "rate " in text and "Thm 2 radius" in text  # the legend
    assert text.isascii()
    doc["loop"]["scheme"] = "accumulate"
    text = theory_text(parse_config(doc), unicode=True)
    assert "bounded: the pool remembers" in text and "λ" in text
    doc["model"] = {"name": "kde"}  # no closed form: one "no prediction" row per λ with the reason and the probe
    rows = [line for line in theory_text(parse_config(doc)).splitlines() if line.startswith("| kde")]
    assert len(rows) == 3 and all("no prediction: model 'kde'" in r and "genloop probe CONFIG" in r for r in rows)


# ============================================================ torch modules (generic adapter)
class _GaussModule(torch.nn.Module):
    """log N(x; loc, exp(log_scale)²) as a module: the same θ = (μ, log σ) as GaussianDensity(1)."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(1))
        self.log_scale = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x[:, 0] - self.loc) * torch.exp(-self.log_scale)
        return -0.5 * u * u - self.log_scale - 0.5 * math.log(2 * math.pi)


def _gauss_module_density(ridge: float = 0.0) -> jacobian.TorchModuleDensity:
    return jacobian.TorchModuleDensity(
        _GaussModule(),
        lambda mod, x: mod(x),
        lambda mod, n, gen: mod.loc + torch.exp(mod.log_scale) * torch.randn(n, 1, generator=gen, dtype=torch.float64),
        1,
        ridge=ridge,
    )


def test_torch_module_adapter_agrees_with_gaussian_density() -> None:
    rng = np.random.default_rng(20)
    x = np.concatenate([rng.normal(-2, 0.7, 300), rng.normal(1.5, 1.0, 300)])[:, None]
    tm, gd = _gauss_module_density(), GaussianDensity(1)
    th_m, th_g = tm.fit(x), gd.fit(x)
    np.testing.assert_allclose(th_m.numpy(), th_g.numpy(), atol=1e-9)
    np.testing.assert_allclose(
        jacobian.expected_neg_hessian(tm, th_m, x), jacobian.expected_neg_hessian(gd, th_g, x), atol=1e-8
    )
    np.testing.assert_allclose(
        jacobian.per_sample_hessians(tm, th_m, x[:20]), jacobian.per_sample_hessians(gd, th_g, x[:20]), atol=1e-8
    )
    a = tm.sample(th_m, 5, np.random.default_rng(3))
    np.testing.assert_array_equal(a, tm.sample(th_m, 5, np.random.default_rng(3)))  # rng-driven
    assert tm.n_params == 2 and tm.param_names() == ["loc[0]", "log_scale[0]"]


def test_ridge_jacobian_matches_finite_differences() -> None:
    # With weight decay r in every retraining, J = λ(A + rI + λB)^{-1}B exactly; the synthetic
    # term uses the exact Gaussian points of p_θ' (same θ as GaussianDensity(1)).
    x, w = _mixture_quadrature()
    r, lam = 0.3, 1.5
    tm, gd = _gauss_module_density(ridge=r), GaussianDensity(1)
    theta = tm.fit(x, w)
    A = jacobian.expected_neg_hessian(tm, theta, x, w) + r * np.eye(2)
    B = gd.fisher(theta)
    J = jacobian.retraining_jacobian(A, B, lam)

    def G(th: torch.Tensor) -> np.ndarray:
        return jacobian.retraining_map(tm, th, x, lam, data_weights=w, synthetic=gd.quadrature(th)).numpy()

    np.testing.assert_allclose(G(theta), theta.numpy(), atol=1e-8)  # the penalised fit is a fixed point
    J_fd = np.zeros((2, 2))
    for j in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[j] = 1e-4
        J_fd[:, j] = (G(theta + e) - G(theta - e)) / 2e-4
    np.testing.assert_allclose(J, J_fd, atol=1e-6)
    # and the ridge matters: without it the rate would be λ/(1+λ)
    assert jacobian.spectral_radius(A, B, lam) < lam / (1 + lam) - 1e-3


def test_zuko_flow_analysis() -> None:
    zuko = pytest.importorskip("zuko")
    rng = np.random.default_rng(21)
    x = np.stack([rng.normal(0, 1, 300), rng.normal(0, 1, 300) ** 2 * 0.5], axis=1)
    flow = zuko.flows.MAF(features=2, transforms=1, hidden_features=(8,), activation=torch.nn.Tanh)
    model = jacobian.TorchModuleDensity.from_zuko_flow(flow, 2, ridge=1e-2)
    an = jacobian.analyze(model, x, rng=rng, n_fisher=5000, lipschitz_points=24, w1_samples=300)
    theta = torch.as_tensor(an.theta_star)
    grad = torch.autograd.functional.jacobian(
        lambda th: model.log_prob(torch.as_tensor(x), th).mean() - 0.5e-2 * (th * th).sum(), theta
    )
    assert float(grad.abs().max()) < 1e-7  # L-BFGS + Newton reached a stationary point
    assert an.alpha > 0  # A + r·I is positive definite at the penalised maximum
    for lam in (0.1, 1.0, 10.0):
        rate = an.spectral_radius(lam)
        assert 0.0 <= rate < 1.0
        assert rate == pytest.approx(jacobian.spectral_radius(an.A, an.B, lam), rel=1e-9)
    x_draw = model.sample(theta, 7, np.random.default_rng(1))
    assert x_draw.shape == (7, 2) and np.all(np.isfinite(x_draw))
