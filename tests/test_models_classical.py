"""Closed-form and statistical checks of the classical families: gaussian, gmm, kde.

Tolerances on Monte Carlo quantities are stated in standard errors (SE) of the estimate;
every random quantity has a fixed seed, so the tests are deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

from genloop.errors import ConfigError, DataError
from genloop.models import make_model
from genloop.models.gaussian import GaussianModel
from genloop.models.gmm import GMMModel
from genloop.models.io import load_model, save_model
from genloop.models.kde import KDEModel, bandwidth_rule, cosine_log_norm

KERNELS = ["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]
_PROFILES = {
    "gaussian": (lambda r: np.exp(-0.5 * r * r), np.inf),
    "tophat": (lambda r: 1.0, 1.0),
    "epanechnikov": (lambda r: 1.0 - r * r, 1.0),
    "linear": (lambda r: 1.0 - r, 1.0),
    "exponential": (lambda r: np.exp(-r), np.inf),
    "cosine": (lambda r: np.cos(0.5 * np.pi * r), 1.0),
}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _state_copy(model):
    arrays, meta = model.get_state()
    return {k: np.array(v, copy=True) for k, v in arrays.items()}, dict(meta)


def _assert_state_equal(a, b):
    assert a[0].keys() == b[0].keys()
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    assert a[1] == b[1]


# ============================== gaussian ==================================================
@pytest.mark.parametrize("estimator, divisor", [("mle", 0), ("unbiased", 1)])
def test_gaussian_estimators_match_formulas(estimator, divisor):
    X = _rng(0).normal(size=(37, 3)) @ np.array([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, -1.0, 0.3]]) + 4.0
    n = X.shape[0]
    m = GaussianModel(estimator=estimator).fit(X, rng=_rng(1))
    mean = X.sum(axis=0) / n
    centred = X - mean
    np.testing.assert_allclose(m.mean_, mean, rtol=1e-13)
    np.testing.assert_allclose(m.covariance_, centred.T @ centred / (n - divisor), rtol=1e-12)
    assert m.event_shape_ == (3,)
    reg = GaussianModel(estimator=estimator, reg_covar=0.25).fit(X, rng=_rng(1))
    np.testing.assert_allclose(reg.covariance_, m.covariance_ + 0.25 * np.eye(3), rtol=1e-12)


def test_gaussian_log_prob_matches_scipy():
    X = _rng(2).normal(size=(50, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    m = GaussianModel().fit(X, rng=_rng(0))
    Y = _rng(3).normal(size=(20, 4)) * 2
    expected = stats.multivariate_normal(m.mean_, m.covariance_).logpdf(Y)
    np.testing.assert_allclose(m.log_prob(Y), expected, rtol=1e-11)


def test_gaussian_sample_moments():
    mean = np.array([1.0, -2.0])
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    m = GaussianModel()
    m.set_state({"mean": mean, "covariance": cov}, {})
    n = 40_000
    S = m.sample(n, rng=_rng(4))
    assert S.shape == (n, 2)
    # mean: SE = sqrt(diag(cov) / n); allow 4 SE.
    assert np.all(np.abs(S.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / n))
    # covariance entries: SE of a sample covariance = sqrt((s_ii s_jj + s_ij^2) / n); 4 SE.
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(S.T) - cov) < 4 * se)


def test_gaussian_input_errors_and_warm_start_ignored():
    with pytest.raises(DataError, match="at least 2 samples"):
        GaussianModel(estimator="unbiased").fit(np.ones((1, 2)), rng=_rng(0))
    with pytest.raises(DataError, match="2-D"):
        GaussianModel().fit(np.ones(5), rng=_rng(0))
    with pytest.raises(DataError, match="NaN"):
        GaussianModel().fit(np.array([[0.0], [np.nan]]), rng=_rng(0))
    with pytest.raises(ConfigError):
        make_model("gaussian", estimator="median")
    with pytest.raises(ConfigError, match="reg_covar"):
        GaussianModel(reg_covar=-1.0)
    X = _rng(0).normal(size=(30, 2))
    init = GaussianModel().fit(X + 10, rng=_rng(0))
    before = _state_copy(init)
    warm = GaussianModel().fit(X, rng=_rng(0), init=init)
    cold = GaussianModel().fit(X, rng=_rng(0))
    np.testing.assert_array_equal(warm.covariance_, cold.covariance_)
    _assert_state_equal(before, init.get_state())
    # A single point with the MLE gives a zero covariance: sampling still works (the atom).
    atom = GaussianModel().fit(np.array([[1.0, 2.0]]), rng=_rng(0))
    np.testing.assert_allclose(atom.sample(3, rng=_rng(1)), np.tile([1.0, 2.0], (3, 1)))


# ============================== gmm ======================================================
def _blobs(seed: int, n: int = 600) -> np.ndarray:
    rng = _rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    labels = rng.integers(0, 3, size=n)
    return centres[labels] + rng.normal(size=(n, 2)) * np.array([0.6, 1.0])


def _component_covariances(model: GMMModel) -> np.ndarray:
    k, d = model.means_.shape
    cov = model.covariances_
    if model.covariance_type == "full":
        return cov
    if model.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if model.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def _reference_log_prob(model: GMMModel, X: np.ndarray) -> np.ndarray:
    covs = _component_covariances(model)
    comp = np.stack(
        [
            np.log(w) + stats.multivariate_normal(mu, c).logpdf(X)
            for w, mu, c in zip(model.weights_, model.means_, covs)
        ],
        axis=1,
    )
    return logsumexp(comp, axis=1)


def _one_em_step(init: GMMModel, X: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference E-step (responsibilities under init's parameters) and M-step (Bishop 9.24-9.27)."""
    covs = _component_covariances(init)
    log_r = np.stack(
        [np.log(w) + stats.multivariate_normal(mu, c).logpdf(X) for w, mu, c in zip(init.weights_, init.means_, covs)],
        axis=1,
    )
    resp = np.exp(log_r - logsumexp(log_r, axis=1, keepdims=True))
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    d = X.shape[1]
    full = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) / nk[k] for k in range(len(nk))])
    if init.covariance_type == "full":
        cov = full + reg_covar * np.eye(d)
    elif init.covariance_type == "tied":
        cov = np.einsum("k,kij->ij", nk, full) / nk.sum() + reg_covar * np.eye(d)
    elif init.covariance_type == "diag":
        cov = np.stack([np.diag(c) for c in full]) + reg_covar
    else:
        cov = np.stack([np.trace(c) / d for c in full]) + reg_covar
    return nk / X.shape[0], means, cov


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_gmm_warm_start_is_one_em_step_from_init(covariance_type):
    init = GMMModel(n_components=3, covariance_type=covariance_type).fit(_blobs(0), rng=_rng(0))
    before = _state_copy(init)
    X = _blobs(1) + 0.3  # new data: one EM step must move the parameters
    reg = 1e-6
    warm = GMMModel(n_components=3, covariance_type=covariance_type, max_iter=1, reg_covar=reg)
    assert warm.fit(X, rng=_rng(9), init=init) is warm
    weights, means, cov = _one_em_step(init, X, reg)
    np.testing.assert_allclose(warm.weights_, weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(warm.means_, means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(warm.covariances_, cov, rtol=1e-8, atol=1e-10)
    assert np.abs(warm.means_ - init.means_).max() > 0.05  # the step did move
    _assert_state_equal(before, init.get_state())  # init untouched


def test_gmm_warm_start_mismatch_is_a_config_error():
    init = GMMModel(n_components=2).fit(_blobs(0), rng=_rng(0))
    with pytest.raises(ConfigError, match="same n_components"):
        GMMModel(n_components=3).fit(_blobs(1), rng=_rng(0), init=init)
    with pytest.raises(ConfigError, match="fitted GMM"):
        GMMModel(n_components=2).fit(_blobs(1), rng=_rng(0), init=GaussianModel().fit(_blobs(1), rng=_rng(0)))
    with pytest.raises(DataError, match="needs at least"):
        GMMModel(n_components=5).fit(_blobs(0, n=4), rng=_rng(0))


def _separated_gmm(covariance_type: str) -> GMMModel:
    """A fitted-by-state GMM with far-apart components and known weights (0.5, 0.3, 0.2)."""
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
    covs = {
        "full": np.array([[[1.0, 0.5], [0.5, 2.0]], [[0.5, -0.2], [-0.2, 0.3]], [[1.5, 0.0], [0.0, 0.2]]]),
        "tied": np.array([[1.0, 0.4], [0.4, 0.8]]),
        "diag": np.array([[1.0, 2.0], [0.5, 0.3], [1.5, 0.2]]),
        "spherical": np.array([1.0, 0.4, 2.0]),
    }[covariance_type]
    # precision Cholesky factors in scikit-learn's convention (P = U U^T, U = inv(chol(cov)).T)
    if covariance_type == "full":
        prec_chol = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in covs])
    elif covariance_type == "tied":
        prec_chol = np.linalg.inv(np.linalg.cholesky(covs)).T
    else:
        prec_chol = 1.0 / np.sqrt(covs)
    model = GMMModel(n_components=3, covariance_type=covariance_type)
    model.set_state({"weights": weights, "means": means, "covariances": covs, "precisions_cholesky": prec_chol}, {})
    return model


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_gmm_sampling_frequencies_and_moments(covariance_type):
    model = _separated_gmm(covariance_type)
    n = 20_000
    S = model.sample(n, rng=_rng(11))
    np.testing.assert_array_equal(S, model.sample(n, rng=_rng(11)))  # depends only on rng
    assert S.shape == (n, 2)
    labels = np.argmin(((S[:, None, :] - model.means_[None]) ** 2).sum(-1), axis=1)
    # rows are not grouped by component: the labels of consecutive rows change often
    assert np.mean(labels[1:] != labels[:-1]) > 0.5
    counts = np.bincount(labels, minlength=3)
    w = model.weights_
    # binomial: |count - n w| < 4 sqrt(n w (1 - w))
    assert np.all(np.abs(counts - n * w) < 4 * np.sqrt(n * w * (1 - w))), counts
    covs = _component_covariances(model)
    for k in range(3):
        Sk = S[labels == k]
        nk = Sk.shape[0]
        assert np.all(np.abs(Sk.mean(0) - model.means_[k]) < 4 * np.sqrt(np.diag(covs[k]) / nk))
        se = np.sqrt((np.outer(np.diag(covs[k]), np.diag(covs[k])) + covs[k] ** 2) / nk)
        assert np.all(np.abs(np.cov(Sk.T) - covs[k]) < 4 * se)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_gmm_log_prob_and_round_trip(covariance_type, tmp_path):
    X = _blobs(3)
    model = GMMModel(n_components=3, covariance_type=covariance_type).fit(X, rng=_rng(0))
    Y = _blobs(4, n=50)
    np.testing.assert_allclose(model.log_prob(Y), _reference_log_prob(model, Y), rtol=1e-10)
    loaded = load_model(save_model(model, tmp_path / "gmm"))
    assert isinstance(loaded, GMMModel) and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.log_prob(Y), model.log_prob(Y))
    np.testing.assert_array_equal(loaded.sample(100, rng=_rng(5)), model.sample(100, rng=_rng(5)))
    # the rebuilt scikit-learn estimator also predicts like the original
    np.testing.assert_array_equal(loaded._estimator.predict(Y), model._estimator.predict(Y))


def test_gmm_fit_is_reproducible_from_rng():
    X = _blobs(6)
    a = GMMModel(n_components=4, init_params="random").fit(X, rng=_rng(1))
    b = GMMModel(n_components=4, init_params="random").fit(X, rng=_rng(1))
    np.testing.assert_array_equal(a.means_, b.means_)


# ============================== kde ======================================================
def test_kde_gaussian_log_prob_matches_formula():
    X = _rng(0).normal(size=(40, 3))
    h = 0.6
    model = KDEModel(bandwidth=h).fit(X, rng=_rng(0))
    Y = _rng(1).normal(size=(10, 3))
    sq = ((Y[:, None, :] - X[None]) ** 2).sum(-1)
    expected = logsumexp(-0.5 * sq / h**2, axis=1) - np.log(40) - 1.5 * np.log(2 * np.pi * h**2)
    np.testing.assert_allclose(model.log_prob(Y), expected, rtol=1e-12)


def test_kde_gaussian_sample_covariance_is_data_plus_h2():
    """Mixture law: Cov(sample) = Cov_n(X) (ddof 0) + h^2 I for the gaussian kernel."""
    X = _rng(0).normal(size=(300, 2)) @ np.array([[1.0, 0.0], [0.7, 0.5]])
    h = 0.4
    model = KDEModel(bandwidth=h).fit(X, rng=_rng(0))
    m = 100_000
    S = model.sample(m, rng=_rng(1))
    expected = np.cov(X.T, ddof=0) + h**2 * np.eye(2)
    se = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / m)
    assert np.all(np.abs(np.cov(S.T) - expected) < 4 * se), (np.cov(S.T), expected)
    np.testing.assert_array_equal(S, model.sample(m, rng=_rng(1)))


def _radial_second_moment(kernel: str, d: int) -> float:
    k, top = _PROFILES[kernel]
    num, _ = integrate.quad(lambda r: r ** (d + 1) * k(r), 0, top)
    den, _ = integrate.quad(lambda r: r ** (d - 1) * k(r), 0, top)
    return num / den


@pytest.mark.parametrize("kernel", KERNELS)
def test_kde_kernel_noise_second_moment(kernel):
    """One training point at 0: E|x|^2 = h^2 int r^(d+1) k / int r^(d-1) k (quadrature)."""
    d, h, m = 3, 0.5, 40_000
    model = KDEModel(bandwidth=h, kernel=kernel).fit(np.zeros((1, d)), rng=_rng(0))
    S = model.sample(m, rng=_rng(2))
    sq = (S**2).sum(1)
    expected = h**2 * _radial_second_moment(kernel, d)
    assert abs(sq.mean() - expected) < 4 * sq.std(ddof=1) / np.sqrt(m), (sq.mean(), expected)
    # isotropy: the mean is 0 (4 SE per coordinate)
    assert np.all(np.abs(S.mean(0)) < 4 * S.std(0) / np.sqrt(m))


@pytest.mark.parametrize("kernel", KERNELS)
def test_kde_1d_samples_follow_log_prob_and_density_normalises(kernel):
    """In 1-D the density exp(log_prob) integrates to 1 (trapezoid grid, step 5e-4; tolerance
    1e-3 covers the O(step) error at the tophat's jumps) and the samples
    pass a Kolmogorov-Smirnov test against its numerically integrated CDF (p > 1e-3)."""
    X = np.array([[-1.0], [0.0], [0.3], [2.0]])
    h = 0.5
    model = KDEModel(bandwidth=h, kernel=kernel).fit(X, rng=_rng(0))
    grid = np.linspace(-12.0, 14.0, 52_001)
    density = np.exp(model.log_prob(grid[:, None]))
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    assert abs(cdf[-1] - 1.0) < 1e-3, cdf[-1]
    S = model.sample(5_000, rng=_rng(3))[:, 0]
    p = stats.kstest(S, lambda x: np.interp(x, grid, cdf)).pvalue
    assert p > 1e-3, p


@pytest.mark.parametrize("d", [2, 4])
def test_kde_cosine_density_normalises_in_even_dimensions(d):
    """scikit-learn's cosine normaliser is wrong for even d; ours integrates to 1, checked by
    importance sampling: E_q[p / q] = 1 for a wide Gaussian q covering the support (4 SE)."""
    X = _rng(0).normal(size=(5, d)) * 0.5
    model = KDEModel(bandwidth=0.8, kernel="cosine").fit(X, rng=_rng(0))
    q = stats.multivariate_normal(np.zeros(d), 2.0 * np.eye(d))
    Z = q.rvs(size=200_000, random_state=_rng(1))
    w = np.exp(model.log_prob(Z) - q.logpdf(Z))
    assert abs(w.mean() - 1.0) < 4 * w.std(ddof=1) / np.sqrt(w.size), w.mean()
    assert np.isfinite(cosine_log_norm(d))


def test_kde_bandwidth_rules_and_scale_equivariance():
    X = _rng(0).normal(size=(200, 2)) * np.array([1.0, 3.0])
    n, d = X.shape
    sigma_hat = np.sqrt(np.mean(np.var(X, axis=0, ddof=1)))
    assert bandwidth_rule(X, "scott") == pytest.approx(n ** (-1 / (d + 4)) * sigma_hat, rel=1e-12)
    assert bandwidth_rule(X, "silverman") == pytest.approx((n * (d + 2) / 4) ** (-1 / (d + 4)) * sigma_hat, rel=1e-12)
    a = KDEModel(bandwidth="scott").fit(X, rng=_rng(0))
    b = KDEModel(bandwidth="scott").fit(5.0 * X, rng=_rng(0))
    assert b.bandwidth_ == pytest.approx(5.0 * a.bandwidth_, rel=1e-12)
    np.testing.assert_allclose(b.sample(50, rng=_rng(4)), 5.0 * a.sample(50, rng=_rng(4)), rtol=1e-12, atol=1e-12)
    # log density transforms with the Jacobian: log p_b(5x) = log p_a(x) - d log 5
    np.testing.assert_allclose(b.log_prob(5.0 * X[:5]), a.log_prob(X[:5]) - d * np.log(5.0), rtol=1e-10)


def test_kde_errors_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="bandwidth"):
        KDEModel(bandwidth=-1.0)
    with pytest.raises(ConfigError, match="bandwidth"):
        make_model("kde", bandwidth="wide")
    with pytest.raises(ConfigError, match="kernel"):
        make_model("kde", kernel="triangle")
    with pytest.raises(DataError, match="zero variance"):
        KDEModel().fit(np.ones((5, 2)), rng=_rng(0))
    X = _rng(0).normal(size=(60, 2))
    for kernel in ("gaussian", "cosine"):
        model = KDEModel(bandwidth="silverman", kernel=kernel).fit(X, rng=_rng(0))
        init_state = _state_copy(model)
        loaded = load_model(save_model(model, tmp_path / kernel))
        assert loaded.bandwidth_ == model.bandwidth_
        np.testing.assert_array_equal(loaded.sample(30, rng=_rng(1)), model.sample(30, rng=_rng(1)))
        np.testing.assert_array_equal(loaded.log_prob(X), model.log_prob(X))
        # fine-tuning equals fitting from scratch, and init is untouched
        warm = KDEModel(bandwidth="silverman", kernel=kernel).fit(X[:30], rng=_rng(0), init=model)
        cold = KDEModel(bandwidth="silverman", kernel=kernel).fit(X[:30], rng=_rng(0))
        np.testing.assert_array_equal(warm.sample(10, rng=_rng(2)), cold.sample(10, rng=_rng(2)))
        _assert_state_equal(init_state, model.get_state())
