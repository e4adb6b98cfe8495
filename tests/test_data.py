"""Vector data sources: 2-D toy sets, Gaussian source, digits, npy / csv files."""

from __future__ import annotations

import numpy as np
import pytest

from genloop.data import make_data, split_real
from genloop.data.toy import TOY_SETS
from genloop.errors import ConfigError, DataError

TOY = sorted(TOY_SETS)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ============================== toy sets ==================================================
@pytest.mark.parametrize("name", TOY)
def test_toy_shape_reproducibility_and_noise(name):
    source = make_data(name)
    assert source.infinite
    a = source.sample(500, rng=_rng(0))
    assert a.shape == (500, 2) and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, source.sample(500, rng=_rng(0)))
    assert not np.allclose(a, source.sample(500, rng=_rng(1)))
    assert source.sample(0, rng=_rng(0)).shape == (0, 2)
    # noise is additive N(0, noise^2 I): same rng, the difference of two noise levels is
    # (noise_b - noise_a) * z for the same z, so its per-coordinate std is |noise_b - noise_a|
    clean = make_data(name, noise=0.0).sample(20_000, rng=_rng(2))
    noisy = make_data(name, noise=0.3).sample(20_000, rng=_rng(2))
    diff = noisy - clean
    np.testing.assert_allclose(diff.std(0), 0.3, rtol=0.03)  # std of a std estimate: 0.5 %
    with pytest.raises(ConfigError, match="noise"):
        make_data(name, noise=-0.1)
    with pytest.raises(ConfigError, match="noise"):
        make_data(name, noise=float("nan"))
    with pytest.raises(ConfigError, match="unknown option"):
        make_data(name, nois=0.1)


def _mean_se(x: np.ndarray) -> np.ndarray:
    return x.std(0, ddof=1) / np.sqrt(x.shape[0])


def test_two_moons_geometry():
    x = make_data("two_moons", noise=0.0).sample(40_000, rng=_rng(3))
    # mean (0.5, 0.25) exactly (E[cos t] = 0, E[sin t] = 2 / pi on each moon), 4 SE
    assert np.all(np.abs(x.mean(0) - [0.5, 0.25]) < 4 * _mean_se(x))
    upper = np.isclose(np.hypot(x[:, 0], x[:, 1]), 1.0) & (x[:, 1] >= 0)
    lower = np.isclose(np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5), 1.0) & (x[:, 1] <= 0.5)
    assert np.all(upper | lower)
    assert abs(upper.mean() - 0.5) < 4 * 0.5 / np.sqrt(x.shape[0])


def test_eight_gaussians_moments():
    noise = 0.2
    x = make_data("eight_gaussians", noise=noise).sample(40_000, rng=_rng(4))
    assert np.all(np.abs(x.mean(0)) < 4 * _mean_se(x))
    # covariance (radius^2 / 2 + noise^2) I = 2.04 I, within 4 empirical SE of each entry
    # (SE of mean(xc_i xc_j) = std(xc_i xc_j) / sqrt(n); the mixture is far from Gaussian)
    xc = x - x.mean(0)
    products = xc[:, :, None] * xc[:, None, :]
    se = products.std(0) / np.sqrt(x.shape[0])
    assert np.all(np.abs(products.mean(0) - (2.0 + noise**2) * np.eye(2)) < 4 * se)
    clean = make_data("eight_gaussians", noise=0.0).sample(1000, rng=_rng(4))
    angles = np.round(np.arctan2(clean[:, 1], clean[:, 0]) / (2 * np.pi / 8)) % 8
    centres = 2.0 * np.stack([np.cos(angles * np.pi / 4), np.sin(angles * np.pi / 4)], axis=1)
    np.testing.assert_allclose(clean, centres, atol=1e-12)


def test_circles_checkerboard_swiss_roll_pinwheel_supports():
    c = make_data("circles", noise=0.0).sample(5000, rng=_rng(5))
    r = np.hypot(c[:, 0], c[:, 1])
    assert np.all(np.isclose(r, 1.0) | np.isclose(r, 0.5))
    assert abs(np.isclose(r, 1.0).mean() - 0.5) < 4 * 0.5 / np.sqrt(5000)

    b = make_data("checkerboard").sample(20_000, rng=_rng(6))
    assert np.all(np.abs(b) <= 2.0)
    assert np.all((np.floor(b[:, 0]) + np.floor(b[:, 1])) % 2 == 0)  # black squares only
    squares = np.floor(b[:, 0]) * 10 + np.floor(b[:, 1])
    _, counts = np.unique(squares, return_counts=True)
    assert counts.size == 8  # uniform over 8 squares: each count within 4 binomial SE of n/8
    assert np.all(np.abs(counts - 20_000 / 8) < 4 * np.sqrt(20_000 * (1 / 8) * (7 / 8)))

    s = make_data("swiss_roll", noise=0.0).sample(5000, rng=_rng(7))
    radius = np.hypot(s[:, 0], s[:, 1])
    assert radius.min() >= 1.5 * np.pi / 5 - 1e-12 and radius.max() <= 4.5 * np.pi / 5 + 1e-12
    # on the spiral: the angle of the point equals its radius-derived parameter t = 5 r (mod 2 pi)
    t = 5.0 * radius
    np.testing.assert_allclose(np.cos(np.arctan2(s[:, 1], s[:, 0]) - t), 1.0, atol=1e-9)

    p = make_data("pinwheel").sample(20_000, rng=_rng(8))
    # five arms: the mean is 0 by the 5-fold rotational symmetry (4 SE)
    assert np.all(np.abs(p.mean(0)) < 4 * _mean_se(p))


# ============================== gaussian source ============================================
def test_gaussian_source_moments_and_validation():
    mean = [1.0, -2.0, 0.5]
    cov = [[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]]
    source = make_data("gaussian", mean=mean, cov=cov)
    n = 50_000
    x = source.sample(n, rng=_rng(9))
    assert x.shape == (n, 3) and source.infinite
    C = np.asarray(cov)
    assert np.all(np.abs(x.mean(0) - mean) < 4 * np.sqrt(np.diag(C) / n))
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / n)
    assert np.all(np.abs(np.cov(x.T) - C) < 4 * se)
    # default covariance: identity
    y = make_data("gaussian", mean=[0.0, 0.0]).sample(n, rng=_rng(10))
    assert np.all(np.abs(np.cov(y.T) - np.eye(2)) < 4 * np.sqrt(2 / n))
    # a singular PSD covariance gives samples on a line
    z = make_data("gaussian", mean=[0.0, 0.0], cov=[[1.0, 1.0], [1.0, 1.0]]).sample(100, rng=_rng(0))
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-12)
    with pytest.raises(ConfigError, match="match mean"):
        make_data("gaussian", mean=[0.0, 0.0], cov=[[1.0]])
    with pytest.raises(ConfigError, match="symmetric"):
        make_data("gaussian", mean=[0.0, 0.0], cov=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ConfigError, match="positive semi-definite"):
        make_data("gaussian", mean=[0.0, 0.0], cov=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ConfigError, match="mean"):
        make_data("gaussian", mean=[])
    with pytest.raises(ConfigError, match="missing option 'mean'"):
        make_data("gaussian")


# ============================== finite sources ===========================================
def test_digits_shape_range_and_split():
    source = make_data("digits")
    x = source.load()
    assert x.shape == (1797, 64) and x.dtype == np.float64 and not source.infinite
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.allclose(x * 16, np.round(x * 16))  # pixel counts 0..16, scaled by 1/16
    split = split_real(source, 1000, 500, rng=_rng(0))
    assert split.train.shape == (1000, 64) and split.heldout.shape == (500, 64)
    # disjoint as rows of the data set: map each split row back to a data-set index
    used = _indices(np.concatenate([split.train, split.heldout]), x)
    assert len(set(used)) == 1500
    with pytest.raises(DataError, match="do not fit"):
        split_real(source, 1500, 500, rng=_rng(0))


def _indices(rows: np.ndarray, data: np.ndarray) -> list[int]:
    """The data-set index of each row; the split must use each data-set row at most once, so
    duplicated images (digits has a few) are matched to distinct indices greedily."""
    free: dict[bytes, list[int]] = {}
    for i, r in enumerate(data):
        free.setdefault(r.tobytes(), []).append(i)
    out = []
    for r in rows:
        candidates = free[r.tobytes()]
        assert candidates, "a row was used more often than it occurs in the data set"
        out.append(candidates.pop())
    return out


def test_npy_round_trip_and_errors(tmp_path):
    data = _rng(0).normal(size=(40, 3)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, data)
    source = make_data("npy", path=str(path))
    loaded = source.load()
    assert loaded.dtype == np.float64 and len(source) == 40
    np.testing.assert_array_equal(loaded, data.astype(np.float64))
    s = source.sample(10, rng=_rng(1))
    np.testing.assert_array_equal(s, source.sample(10, rng=_rng(1)))
    assert len({r.tobytes() for r in s}) == 10  # without replacement
    split = split_real(source, 25, 15, rng=_rng(2))
    assert {r.tobytes() for r in split.train}.isdisjoint({r.tobytes() for r in split.heldout})
    images = tmp_path / "img.npy"
    np.save(images, np.zeros((5, 1, 4, 4)))
    assert make_data("npy", path=str(images)).load().shape == (5, 1, 4, 4)

    with pytest.raises(DataError, match=r"file not found: .*missing\.npy"):
        make_data("npy", path=str(tmp_path / "missing.npy"))
    bad = data.astype(np.float64)
    bad[3, 1] = np.nan
    bad[7, 0] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(DataError, match=r"bad\.npy contains 2 NaN or infinite"):
        make_data("npy", path=str(tmp_path / "bad.npy")).load()
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(DataError, match=r"flat\.npy must hold samples on axis 0"):
        make_data("npy", path=str(tmp_path / "flat.npy")).load()
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="allow_pickle=False"):
        make_data("npy", path=str(tmp_path / "obj.npy")).load()
    with pytest.raises(DataError, match="40 samples, 41 were requested"):
        source.sample(41, rng=_rng(0))


def test_csv_round_trip_and_errors(tmp_path):
    data = np.round(_rng(0).normal(size=(30, 4)), 6)
    path = tmp_path / "x.csv"
    np.savetxt(path, data, delimiter=";", header="a;b;c;d", comments="")
    source = make_data("csv", path=str(path), skip_header=1, delimiter=";")
    np.testing.assert_array_equal(source.load(), data)
    one_col = tmp_path / "col.csv"
    one_col.write_text("1.5\n2.5\n")
    assert make_data("csv", path=str(one_col)).load().shape == (2, 1)

    with pytest.raises(DataError, match="not a rectangular numeric table"):
        make_data("csv", path=str(path), delimiter=";").load()  # header not skipped
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    with pytest.raises(DataError, match="ragged.csv is not a rectangular"):
        make_data("csv", path=str(ragged)).load()
    nan = tmp_path / "nan.csv"
    nan.write_text("1,2\nnan,4\n5,inf\n")
    with pytest.raises(DataError, match=r"nan\.csv contains 2 NaN"):
        make_data("csv", path=str(nan)).load()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="no data rows"):
        make_data("csv", path=str(empty)).load()
    with pytest.raises(DataError, match="file not found"):
        make_data("csv", path=str(tmp_path / "none.csv"))
    with pytest.raises(ConfigError, match="skip_header"):
        make_data("csv", path=str(path), skip_header=-1)
