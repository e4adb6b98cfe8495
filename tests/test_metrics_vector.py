"""Tests of the vector metrics (w2, sw2, mmd, nll, moments) and the Gaussian closed forms.

References: brute-force assignment (scipy linear_sum_assignment), POT's Bures–Wasserstein,
1-D closed forms, Monte Carlo estimates with stated tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.stats
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from genloop.errors import ConfigError, DataError
from genloop.metrics import available_metrics, make_metric
from genloop.metrics.gaussian import (
    bures_wasserstein,
    bures_wasserstein_squared,
    gaussian_kl,
    mean_cov,
    sqrtm_psd,
    trace_sqrt_product,
)
from genloop.metrics.vector import mmd2_multiscale, mmd2_unbiased, moment_drift, wasserstein2
from genloop.models.base import GenerativeModel


def _spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    A = rng.normal(size=(d, rank or d))
    return A @ A.T + (0.0 if rank else 0.1) * np.eye(d)


def test_all_part1_metrics_registered() -> None:
    names = set(available_metrics())
    assert {"w2", "sw2", "mmd", "nll", "moments", "gaussian_w2", "gaussian_kl"} <= names


# ---- W2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3])
def test_w2_equals_bruteforce_assignment(d: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, d))
    Y = rng.normal(size=(40, d)) * 1.5 + 0.3
    C = cdist(X, Y, "sqeuclidean")
    row, col = linear_sum_assignment(C)
    expected = math.sqrt(C[row, col].mean())  # equal sizes: an optimal plan is a permutation
    assert make_metric("w2")(X, Y)["w2"] == pytest.approx(expected, rel=1e-10)


def test_w2_zero_on_identical_and_duplicated_sets() -> None:
    X = np.random.default_rng(2).normal(size=(50, 4))
    assert make_metric("w2")(X, X)["w2"] == pytest.approx(0.0, abs=1e-7)
    # the empirical measure of X repeated twice is the same measure
    assert wasserstein2(np.concatenate([X, X]), X) == pytest.approx(0.0, abs=1e-7)


def test_w2_translation_gives_norm_of_shift() -> None:
    X = np.random.default_rng(3).normal(size=(60, 3))
    c = np.array([0.5, -2.0, 1.0])
    assert make_metric("w2")(X + c, X)["w2"] == pytest.approx(np.linalg.norm(c), rel=1e-9)


def test_w2_1d_unequal_sizes_matches_quantile_formula() -> None:
    # in 1-D, W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du between the empirical quantile functions
    rng = np.random.default_rng(4)
    x = np.sort(rng.normal(size=30))
    y = np.sort(rng.normal(size=45) + 1.0)
    u = np.union1d(np.arange(31) / 30, np.arange(46) / 45)
    mid = (u[:-1] + u[1:]) / 2
    qx = x[np.minimum((mid * 30).astype(int), 29)]
    qy = y[np.minimum((mid * 45).astype(int), 44)]
    expected = math.sqrt(np.sum(np.diff(u) * (qx - qy) ** 2))
    assert wasserstein2(x[:, None], y[:, None]) == pytest.approx(expected, rel=1e-9)


def test_w2_flattens_images_and_subsamples_with_rng() -> None:
    rng = np.random.default_rng(5)
    imgs_g = rng.normal(size=(30, 1, 2, 2))
    imgs_r = rng.normal(size=(30, 1, 2, 2))
    w2 = make_metric("w2")
    assert w2(imgs_g, imgs_r)["w2"] == pytest.approx(wasserstein2(imgs_g.reshape(30, 4), imgs_r.reshape(30, 4)))
    small = make_metric("w2", max_exact=10)
    a = small(imgs_g, imgs_r, rng=np.random.default_rng(7))["w2"]
    b = small(imgs_g, imgs_r, rng=np.random.default_rng(7))["w2"]
    c = small(imgs_g, imgs_r, rng=np.random.default_rng(8))["w2"]
    assert a == b and a != c
    # subsampled X vs X is generally not zero: the two sides draw different rows
    assert small(imgs_g, imgs_g, rng=np.random.default_rng(7))["w2"] > 0


# ---- sliced W2 ------------------------------------------------------------------------------------


def test_sw2_in_one_dimension_equals_exact_w2() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(50, 1)), rng.normal(size=(70, 1)) * 2
    assert make_metric("sw2", n_projections=5)(x, y)["sw2"] == pytest.approx(wasserstein2(x, y), rel=1e-9)


def test_sw2_translation_law() -> None:
    # for identical shapes shifted by c, SW2^2 = E[(theta.c)^2] = ||c||^2 / d
    X = np.random.default_rng(7).normal(size=(200, 2))
    c = np.array([3.0, 0.0])
    value = make_metric("sw2", n_projections=4000)(X + c, X, rng=np.random.default_rng(0))["sw2"]
    # Var(cos^2) = 1/8 for a uniform angle: with 4000 directions the std of SW2^2 is 9*0.0056;
    # 5 standard deviations on SW2^2 = 4.5 is about 5.6 % in SW2^2, 2.8 % in SW2
    assert value == pytest.approx(3.0 / math.sqrt(2.0), rel=0.03)


# ---- Gaussian closed forms ------------------------------------------------------------------------


def test_bures_matches_pot_and_1d_closed_form() -> None:
    rng = np.random.default_rng(8)
    for d in (2, 5, 10):
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        S1, S2 = _spd(rng, d), _spd(rng, d)
        ref = float(ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2))
        assert bures_wasserstein(m1, S1, m2, S2) == pytest.approx(ref, rel=1e-8)
    # 1-D: W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1-m2)^2 + (s1-s2)^2)
    assert bures_wasserstein([1.0], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(math.sqrt(4 + 1.5**2))


def test_bures_stable_on_singular_covariances() -> None:
    rng = np.random.default_rng(9)
    S = _spd(rng, 20, rank=3)  # rank 3 in 20 dimensions
    m = rng.normal(size=20)
    assert bures_wasserstein(m, S, m, S) == pytest.approx(0.0, abs=1e-6)
    # 17 zero eigenvalues carry round-off ~1e-15 * scale, whose square roots add ~1e-7 in total
    assert trace_sqrt_product(S, S) == pytest.approx(np.trace(S), rel=1e-7)
    R = sqrtm_psd(S)
    np.testing.assert_allclose(R @ R, S, atol=1e-9 * np.abs(S).max())
    # commuting (diagonal) case: tr sqrt(S1 S2) = sum sqrt(a_i b_i)
    a, b = rng.uniform(0.1, 2, size=6), rng.uniform(0.1, 2, size=6)
    assert trace_sqrt_product(np.diag(a), np.diag(b)) == pytest.approx(np.sum(np.sqrt(a * b)))
    assert bures_wasserstein_squared(np.zeros(6), np.diag(a), np.zeros(6), np.diag(b)) == pytest.approx(
        np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    )


def test_gaussian_kl_1d_closed_form_and_monte_carlo() -> None:
    m1, s1, m2, s2 = 0.3, 0.7, -0.5, 1.9
    expected = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert gaussian_kl([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(expected, rel=1e-12)

    rng = np.random.default_rng(10)
    d = 3
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    S1, S2 = _spd(rng, d), _spd(rng, d)
    p, q = scipy.stats.multivariate_normal(mu1, S1), scipy.stats.multivariate_normal(mu2, S2)
    x = p.rvs(size=200_000, random_state=rng)
    llr = p.logpdf(x) - q.logpdf(x)
    mc, se = llr.mean(), llr.std() / math.sqrt(len(llr))
    assert abs(gaussian_kl(mu1, S1, mu2, S2) - mc) < 5 * se


def test_gaussian_kl_singular_is_infinite() -> None:
    S = np.diag([1.0, 0.0])
    assert gaussian_kl(np.zeros(2), S, np.zeros(2), np.eye(2)) == math.inf
    assert gaussian_kl(np.zeros(2), np.eye(2), np.zeros(2), S) == math.inf


def test_gaussian_metrics_order_generated_first_real_second() -> None:
    rng = np.random.default_rng(11)
    G = rng.normal(size=(500, 2)) * 0.5
    R = rng.normal(size=(400, 2)) * 2.0 + 1.0
    kl = make_metric("gaussian_kl")
    forward = kl(G, R)["gaussian_kl"]
    assert forward == pytest.approx(gaussian_kl(*mean_cov(G), *mean_cov(R)), rel=1e-12)
    assert forward != pytest.approx(kl(R, G)["gaussian_kl"], rel=0.1)  # KL is asymmetric
    w2 = make_metric("gaussian_w2")
    assert w2(G, R)["gaussian_w2"] == pytest.approx(bures_wasserstein(*mean_cov(G), *mean_cov(R)), rel=1e-12)


def test_gaussian_metric_prepare_caches_without_changing_results() -> None:
    rng = np.random.default_rng(12)
    G, R, R2 = rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + 1, rng.normal(size=(100, 3)) - 1
    fresh = make_metric("gaussian_w2")(G, R)
    m = make_metric("gaussian_w2")
    m.prepare(R)
    assert m(G, R) == fresh
    # a different real set is not served from the cache
    assert m(G, R2) == make_metric("gaussian_w2")(G, R2)


def test_gaussian_metric_ridge_makes_degenerate_kl_finite() -> None:
    rng = np.random.default_rng(13)
    R = rng.normal(size=(50, 3))
    R[:, 2] = 0.0  # a constant coordinate: singular covariance
    G = rng.normal(size=(50, 3))
    assert make_metric("gaussian_kl")(G, R)["gaussian_kl"] == math.inf
    assert math.isfinite(make_metric("gaussian_kl", ridge=1e-3)(G, R)["gaussian_kl"])
    with pytest.raises(ConfigError, match="ridge"):
        make_metric("gaussian_kl", ridge=-1.0)


# ---- MMD ------------------------------------------------------------------------------------------


def test_mmd_matches_bruteforce_u_statistic() -> None:
    rng = np.random.default_rng(14)
    X, Y = rng.normal(size=(12, 2)), rng.normal(size=(9, 2)) + 0.5
    h = 0.8

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-np.sum((a - b) ** 2) / (2 * h * h))

    kxx = sum(k(X[i], X[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    kyy = sum(k(Y[i], Y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    kxy = sum(k(x, y) for x in X for y in Y) / (12 * 9)
    value, used = mmd2_unbiased(X, Y, bandwidth=h)
    assert used == h
    assert value == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    # median heuristic on the pooled sample
    Z = np.concatenate([X, Y])
    iu = np.triu_indices(len(Z), 1)
    _, h_med = mmd2_unbiased(X, Y)
    assert h_med == pytest.approx(math.sqrt(np.median(cdist(Z, Z, "sqeuclidean")[iu])), rel=1e-12)


def test_mmd_unbiased_under_null_and_positive_under_shift() -> None:
    rng = np.random.default_rng(15)
    mmd = make_metric("mmd")
    same = np.array([mmd(rng.normal(size=(60, 2)), rng.normal(size=(60, 2)))["mmd"] for _ in range(300)])
    # zero mean under H0 (exchangeability of the pooled sample); 4 standard errors
    assert abs(same.mean()) < 4 * same.std(ddof=1) / math.sqrt(len(same))
    assert np.any(same < 0)  # a U-statistic, not a biased V-statistic
    shifted = np.array(
        [mmd(rng.normal(size=(60, 2)) + 1.0, rng.normal(size=(60, 2)))["mmd"] for _ in range(30)]
    )
    assert shifted.mean() > 10 * same.std(ddof=1) and np.all(shifted > 0)


def test_mmd_subsampling_option() -> None:
    rng = np.random.default_rng(16)
    X, Y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    m = make_metric("mmd", max_samples=50)
    assert m(X, Y, rng=np.random.default_rng(1)) == m(X, Y, rng=np.random.default_rng(1))
    full = make_metric("mmd", max_samples=300)(X, Y)
    assert full["mmd"] == pytest.approx(mmd2_multiscale(X, Y)[0], rel=1e-12)
    median = make_metric("mmd", max_samples=300, kernel="median")(X, Y)
    assert median["mmd"] == pytest.approx(mmd2_unbiased(X, Y)[0], rel=1e-12)


@pytest.mark.slow
def test_multiscale_mmd_ranks_a_worse_model_worse_on_two_moons() -> None:
    def moons(n: int, noise: float, rng: np.random.Generator) -> np.ndarray:  # i.i.d. two moons
        t, upper = rng.uniform(0, np.pi, n), rng.random(n) < 0.5
        xy = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        return xy + noise * rng.normal(size=(n, 2))

    rng = np.random.default_rng(0)
    diffs: dict[str, list[float]] = {"multiscale": [], "median": []}
    for _ in range(6):
        real, good, worse = moons(1000, 0.05, rng), moons(1000, 0.05, rng), moons(1000, 0.15, rng)  # blurrier model
        for kernel, d in diffs.items():
            m = make_metric("mmd", kernel=kernel)
            d.append(m(worse, real)["mmd"] - m(good, real)["mmd"])
    multi, median = np.array(diffs["multiscale"]), np.array(diffs["median"])
    assert np.all(multi > 0) and multi.mean() > 3 * multi.std(ddof=1)  # ranked worse on every draw
    assert abs(median.mean()) < 2 * median.std(ddof=1)  # the median-heuristic kernel alone does not see it


@pytest.mark.slow
def test_mmd_standard_error_covers_the_closed_form_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(17)
    d, delta, scales, h = 2, 0.6, (0.5, 1.0, 2.0), 1.0

    def truth() -> float:  # Gaussian kernels between N(0, I) and N(delta e1, I), in closed form
        out = 0.0
        for c in scales:
            s2 = (c * h) ** 2
            f = (s2 / (s2 + 2.0)) ** (d / 2)
            out += 2 * f * (1 - math.exp(-(delta**2) / (2 * (s2 + 2.0))))
        return out / len(scales)

    mu = np.array([delta, 0.0])
    reps, hits = 300, 0
    for _ in range(reps):
        value, se, _ = mmd2_multiscale(rng.normal(size=(150, d)), rng.normal(size=(150, d)) + mu, scales=scales,
                                       bandwidth=h)  # fmt: skip
        hits += abs(value - truth()) <= 1.96 * se
    assert abs(hits / reps - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps) + 0.01


def test_w2_subsample_repeats_and_standard_error() -> None:
    rng = np.random.default_rng(18)
    X, Y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 0.2
    one = make_metric("w2", max_exact=100)(X, Y, rng=np.random.default_rng(0))
    assert set(one) == {"w2"}
    rep = make_metric("w2", max_exact=100, n_repeats=8)
    out = rep(X, Y, rng=np.random.default_rng(0))
    assert out["w2_se"] > 0 and out == rep(X, Y, rng=np.random.default_rng(0))
    # the SE describes the spread of single-subsample values: their std / sqrt(8)
    singles = [make_metric("w2", max_exact=100)(X, Y, rng=np.random.default_rng(s))["w2"] for s in range(40)]
    assert out["w2_se"] == pytest.approx(np.std(singles, ddof=1) / math.sqrt(8), rel=0.6)
    assert set(make_metric("w2", n_repeats=8)(X, Y)) == {"w2"}  # no subsampling: exact, no repeats


# ---- NLL ------------------------------------------------------------------------------------------


class _StdNormal(GenerativeModel):
    """A fixed N(mu, I) density for testing (not fitted from data)."""

    has_log_prob = True

    def __init__(self, mu: float = 0.0) -> None:
        self.mu = mu
        self.event_shape_ = (2,)

    def fit(self, X, *, rng, init=None):  # type: ignore[no-untyped-def]
        return self

    def sample(self, n, *, rng):  # type: ignore[no-untyped-def]
        return rng.normal(size=(n, 2)) + self.mu

    def log_prob(self, X):  # type: ignore[no-untyped-def]
        return scipy.stats.multivariate_normal(np.full(2, self.mu), np.eye(2)).logpdf(X)

    def get_state(self):  # type: ignore[no-untyped-def]
        return {}, {}

    def set_state(self, arrays, meta):  # type: ignore[no-untyped-def]
        pass


class _NoDensity(_StdNormal):
    has_log_prob = False


def test_nll_is_mean_negative_log_prob_of_real() -> None:
    rng = np.random.default_rng(17)
    R, G = rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 5
    model = _StdNormal(mu=0.5)
    nll = make_metric("nll")
    assert nll.requires_model
    expected = -np.mean(model.log_prob(R))
    assert nll(G, R, model=model)["nll"] == pytest.approx(expected, rel=1e-12)
    # only the real samples matter
    assert nll(G + 100, R, model=model)["nll"] == pytest.approx(expected, rel=1e-12)


def test_nll_nan_without_density(caplog: pytest.LogCaptureFixture) -> None:
    R = np.zeros((5, 2))
    nll = make_metric("nll")
    with caplog.at_level("INFO", logger="genloop.metrics.vector"):
        assert math.isnan(nll(R, R, model=_NoDensity())["nll"])
    assert "no log_prob" in caplog.text
    assert math.isnan(make_metric("nll")(R, R)["nll"])


# ---- moments --------------------------------------------------------------------------------------


def test_moments_affine_map_exact() -> None:
    rng = np.random.default_rng(18)
    R = rng.normal(size=(500, 3)) @ np.array([[1.0, 0.3, 0], [0, 2.0, 0], [0, 0.5, 0.7]])
    a, c = 0.3, np.array([1.0, -1.0, 2.0])
    G = a * R + c
    out = make_metric("moments")(G, R)
    mu_r = R.mean(0)
    S_r = np.cov(R.T)
    assert out["mean_drift"] == pytest.approx(np.linalg.norm((a - 1) * mu_r + c), rel=1e-10)
    assert out["cov_drift"] == pytest.approx((1 - a**2) * np.linalg.norm(S_r, "fro"), rel=1e-10)
    assert out["std_ratio"] == pytest.approx(a, rel=1e-12)


def test_moments_skip_constant_real_coordinates() -> None:
    rng = np.random.default_rng(19)
    R = rng.normal(size=(100, 2))
    R[:, 1] = 3.0
    G = R * 2.0
    assert moment_drift(G, R)["std_ratio"] == pytest.approx(2.0)


# ---- input checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["w2", "sw2", "mmd", "moments", "gaussian_w2", "gaussian_kl"])
def test_bad_inputs_raise_data_error(name: str) -> None:
    m = make_metric(name)
    rng = np.random.default_rng(20)
    with pytest.raises(DataError, match="dimensions"):
        m(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)))
    bad = rng.normal(size=(10, 2))
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="generated contains 1 NaN"):
        m(bad, rng.normal(size=(10, 2)))


def test_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="max_exact"):
        make_metric("w2", max_exact=0)
    with pytest.raises(ConfigError, match="unknown option 'n_proj'"):
        make_metric("sw2", n_proj=3)
