"""Exactness, robustness and noise of the feature metrics.

Oracles: the ``prdc`` package (Naeem et al.'s code), brute-force float64 distance matrices
(scipy ``cdist``, coordinate differences), a scipy ``sqrtm`` FID (pytorch-fid's formula,
re-implemented here), closed forms of Gaussian FIDs, and repeated sampling for standard errors.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

from genloop.errors import ConfigError, DataError
from genloop.metrics import make_metric
from genloop.metrics.frechet import (
    FeatureStats,
    StatsCache,
    fid_infinity,
    frechet_distance,
    frechet_distance_features,
    load_fid_npz,
    save_fid_npz,
    stats_from_moments,
)
from genloop.metrics.images import check_images
from genloop.metrics.prdc import kid, kth_nn_sq_distances, prdc, prdc_real_first

KEYS = ("precision", "recall", "density", "coverage")


def _brute(fake: np.ndarray, real: np.ndarray, k: int, closed: bool = True) -> dict[str, float]:
    """The definition on full float64 matrices of coordinate-difference distances."""
    cmp = np.less_equal if closed else np.less
    rr, ff, rf = (cdist(a, b, "sqeuclidean") for a, b in ((real, real), (fake, fake), (real, fake)))
    r_real, r_fake = np.sort(rr, axis=1)[:, k], np.sort(ff, axis=1)[:, k]
    inside = cmp(rf, r_real[:, None])
    return {
        "precision": float(inside.any(axis=0).mean()),
        "recall": float(cmp(rf, r_fake[None, :]).any(axis=1).mean()),
        "density": (1.0 / k) * (int(inside.sum()) / fake.shape[0]),
        "coverage": float(cmp(rf.min(axis=1), r_real).mean()),
    }


def _values(out: dict[str, float]) -> dict[str, float]:
    return {key: out[key] for key in KEYS}


def _package(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        out = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    return {key: float(out[key]) for key in KEYS}


# ---- P/R/D/C: exact values -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["gaussian", "relu", "ties"])
def test_prdc_equals_the_prdc_package(case: str) -> None:
    rng = np.random.default_rng({"gaussian": 0, "relu": 1, "ties": 2}[case])
    if case == "gaussian":
        real, fake = rng.normal(size=(400, 12)), rng.normal(size=(350, 12)) * 1.1 + 0.1
    elif case == "relu":
        W = rng.normal(size=(8, 200))
        real = np.maximum(rng.normal(size=(300, 8)) @ W, 0)
        fake = np.maximum((rng.normal(size=(320, 8)) + 0.2) @ W, 0)
    else:  # a small lattice: many exact ties and duplicates
        real = rng.integers(0, 3, size=(300, 4)).astype(np.float64)
        fake = rng.integers(0, 3, size=(280, 4)).astype(np.float64)
    for k in (1, 3, 5):
        ref = _package(real, fake, k)
        assert _values(prdc(generated=fake, real=real, k=k, boundary="open", device="cpu")) == ref
        assert _values(prdc_real_first(real, fake, k, boundary="open", device="cpu")) == ref
        assert _values(prdc(generated=fake, real=real, k=k, device="cpu")) == _brute(fake, real, k)
    if case == "ties":  # the two conventions differ exactly on ties
        closed = prdc(generated=fake, real=real, device="cpu")
        assert closed["density"] > _package(real, fake, 3)["density"]


def test_prdc_float32_equals_float64_with_large_offsets() -> None:
    rng = np.random.default_rng(3)
    W = rng.normal(size=(16, 96)) / 4
    base_r = np.maximum(rng.normal(size=(700, 16)) @ W, 0)
    base_f = np.maximum((rng.normal(size=(650, 16)) + 0.1) @ W, 0)
    for offset in (0.0, 100.0, 1000.0):
        real, fake = (base_r + offset).astype(np.float32), (base_f + offset).astype(np.float32)
        expected = _brute(fake.astype(np.float64), real.astype(np.float64), 3)
        for dtype in ("float32", "float64", "bfloat16"):
            got = prdc(generated=fake, real=real, dtype=dtype, device="cpu")
            assert _values(got) == expected, (offset, dtype)
    # the radii themselves are the float64 k-NN distances (up to the order of the d-term sum)
    r2 = kth_nn_sq_distances(base_r + 1000.0, 3, 64, dtype="float32", device="cpu").numpy()
    ref = np.sort(cdist(base_r + 1000.0, base_r + 1000.0, "sqeuclidean"), axis=1)[:, 3]
    np.testing.assert_allclose(r2, ref, rtol=1e-14)


def test_prdc_batch_size_and_dtype_invariance_on_tied_data() -> None:
    rng = np.random.default_rng(4)
    X = rng.integers(0, 4, size=(131, 3)).astype(np.float64)  # many duplicates
    for real, fake in ((X, X.copy()), (X, rng.integers(0, 4, size=(150, 3)).astype(np.float64))):
        for boundary in ("closed", "open"):
            expected = _brute(fake, real, 3, closed=boundary == "closed")
            for bs, dtype in ((7, "float32"), (7, "bfloat16"), (64, "float64"), (64, "float32"), (1000, "float32"),
                              (1000, "bfloat16")):  # fmt: skip
                got = prdc(generated=fake, real=real, batch_size=bs, dtype=dtype, boundary=boundary, device="cpu")
                assert _values(got) == expected, (bs, dtype, boundary)


def test_block_screen_finds_exactly_the_entries_below_each_threshold() -> None:
    import torch

    from genloop.metrics.prdc import _screen

    rng = np.random.default_rng(11)
    for shape in ((130, 200), (64, 64), (5, 3), (200, 130), (1, 70)):
        D = torch.from_numpy(rng.random(shape).astype(np.float32))
        for by_rows in (True, False):
            thr = torch.from_numpy(rng.random(shape[0] if by_rows else shape[1]).astype(np.float32) * 0.05)
            ii, jj, v, fraction = _screen(D, thr, by_rows=by_rows)
            want = (D <= (thr[:, None] if by_rows else thr[None, :])).nonzero().tolist()
            assert sorted(zip(ii.tolist(), jj.tolist())) == sorted(map(tuple, want)), (shape, by_rows)
            assert torch.equal(v, D[ii, jj]) and 0.0 <= fraction <= 1.0


def test_prdc_many_tiles_equal_the_definition_and_auto_dtype_on_any_cpu(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import genloop.metrics.prdc as prdc_module

    rng = np.random.default_rng(12)
    W = rng.normal(size=(6, 40))
    real = np.abs(rng.normal(size=(2300, 6)) @ W).astype(np.float32)
    fake = np.abs((rng.normal(size=(2100, 6)) + 0.2) @ W).astype(np.float32)
    expected = _brute(fake.astype(np.float64), real.astype(np.float64), 3)
    for fast_bf16, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(prdc_module, "_fast_bfloat16_cpu", lambda: fast_bf16)
        assert prdc_module.resolve_dtype("auto", prdc_module.torch.device("cpu")) == want
        for bs in (1024, 300):
            assert _values(prdc(generated=fake, real=real, batch_size=bs, device="cpu")) == expected, (want, bs)


def test_knn_radii_with_tiny_blocks_equal_the_definition() -> None:
    # blocks smaller than k+1 rows: some rows see fewer than k+1 points in the diagonal band and
    # fall back to an infinite bound; ties everywhere (a 3 x 3 lattice)
    rng = np.random.default_rng(13)
    for n, bs, k in ((10, 2, 3), (9, 1, 3), (13, 4, 5), (50, 3, 3), (6, 5, 5)):
        X = rng.integers(0, 3, size=(n, 2)).astype(np.float64)
        ref = np.sort(cdist(X, X, "sqeuclidean"), axis=1)[:, k]
        for dtype in ("float32", "bfloat16", "float64"):
            got = kth_nn_sq_distances(X, k, bs, dtype=dtype, device="cpu").numpy()  # type: ignore[arg-type]
            assert np.array_equal(got, ref), (n, bs, k, dtype)


def test_prdc_order_is_keyword_only_and_swapping_is_visible() -> None:
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) * 0.3  # collapsed generator
    with pytest.raises(TypeError):
        prdc(fake, real)  # type: ignore[misc]
    with pytest.raises(TypeError):
        kid(fake, real, rng=rng)  # type: ignore[misc]
    a = prdc(generated=fake, real=real, device="cpu")
    b = prdc_real_first(real, fake, device="cpu")
    assert _values(a) == _values(b) and a["precision"] > 0.9 and a["recall"] < 0.6


# ---- garbage in ----------------------------------------------------------------------------------


def test_bad_inputs_raise_named_errors() -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(size=(50, 4))
    with pytest.raises(ConfigError, match="float16"):
        prdc(generated=X, real=X, dtype="float16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="boundary"):
        prdc(generated=X, real=X, boundary="half")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="real numeric"):
        prdc(generated=X, real=np.array([["a"] * 4] * 50))
    with pytest.raises(DataError, match="dtype bool"):
        prdc(generated=X, real=X > 0)
    with pytest.raises(DataError, match="2-D"):
        prdc(generated=X, real=X[:, :, None])
    with pytest.raises(DataError, match="subset_size<=50"):
        kid(generated=X, real=rng.normal(size=(80, 4)), subset_size=100, rng=rng)
    images = rng.uniform(-1, 1, size=(8, 3, 16, 16))
    with pytest.raises(DataError, match="127.5"):
        check_images(np.round((images + 1) * 127.5).astype(np.uint8), "generated")
    with pytest.raises(DataError, match="channels-last"):
        check_images(images.transpose(0, 2, 3, 1), "generated")
    with pytest.raises(DataError, match="1 or 3 channels"):
        check_images(rng.uniform(-1, 1, size=(8, 5, 16, 16)), "generated")
    pixels = np.round((images + 1) * 127.5).astype(np.uint8)
    np.testing.assert_allclose(check_images(pixels, "x", "0,255"), pixels / 127.5 - 1.0, atol=1e-6)
    # at metric level the check runs before any network is built (no weights needed)
    for name in ("fid", "prdc", "kid"):
        with pytest.raises(DataError, match="0..255"):
            make_metric(name, features="inception")(pixels, pixels)
        with pytest.raises(DataError, match="channels-last"):
            make_metric(name, features="inception")(images.transpose(0, 2, 3, 1), images)


# ---- Fréchet distance ----------------------------------------------------------------------------


def _pytorch_fid_formula(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (re-implemented: the package pulls torchvision)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))  # pytorch-fid passes disp=False (deprecated in scipy)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@pytest.mark.parametrize(("n1", "n2", "d"), [(300, 400, 20), (30, 50, 100), (80, 40, 100), (101, 101, 100)])
def test_fid_from_features_equals_scipy_sqrtm_including_rank_deficient(n1: int, n2: int, d: int) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) / 3
    Y = rng.normal(size=(n2, d)) + 0.2
    ref = _pytorch_fid_formula(X.mean(0), np.cov(X.T), Y.mean(0), np.cov(Y.T))
    assert frechet_distance_features(generated=X, real=Y) == pytest.approx(ref, rel=1e-6)
    if min(n1, n2) > d:
        a, b = FeatureStats.from_features(X), FeatureStats.from_features(Y)
        assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)


def test_npz_written_by_genloop_reads_in_the_pytorch_fid_formula(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(8)
    G, R = rng.normal(size=(300, 10)), rng.normal(size=(320, 10)) * 1.2 + 0.1
    path = save_fid_npz(tmp_path / "real.npz", FeatureStats.from_features(R))
    with np.load(path) as f:  # what pytorch-fid does with a .npz: f["mu"], f["sigma"]
        mu, sigma = f["mu"][:], f["sigma"][:]
    ours = make_metric("fid", features="raw", disk_cache=False, se_splits=0)(G, R)["fid"]
    assert _pytorch_fid_formula(G.mean(0), np.cov(G.T), mu, sigma) == pytest.approx(ours, rel=1e-9)
    mu2, sigma2, n = load_fid_npz(path)
    assert n == 320 and np.array_equal(mu2, mu)
    np.savez(tmp_path / "plain.npz", mu=mu, sigma=sigma)  # a file from pytorch-fid (no n)
    assert load_fid_npz(tmp_path / "plain.npz")[2] is None
    st = stats_from_moments(mu, sigma, None)
    np.testing.assert_allclose(st.cov, sigma, rtol=1e-12)
    np.savez(tmp_path / "bad.npz", m=mu)
    with pytest.raises(DataError, match="'mu' and 'sigma'"):
        load_fid_npz(tmp_path / "bad.npz")


def test_fid_infinity_recovers_the_population_value() -> None:
    rng = np.random.default_rng(9)
    d, c = 8, 1.44
    real = stats_from_moments(np.zeros(d), np.eye(d), 10**9)  # the exact real Gaussian
    true = d * (math.sqrt(c) - 1) ** 2  # FID between N(0, c I) and N(0, I)
    X = rng.normal(size=(6000, d)) * math.sqrt(c)
    res = fid_infinity(X, real, rng=rng)
    plain = frechet_distance(FeatureStats.from_features(X[:1200]), real)
    assert abs(res["fid_inf"] - true) < 4 * res["fid_inf_se"] + 0.01
    assert res["fid_inf_slope"] > 0 and plain > res["fid_inf"]  # FID_N is biased upward by ~s/N
    with pytest.raises(DataError, match="min_size"):
        fid_infinity(X[:9], real, rng=rng)


def test_fid_metric_records_se_companion_kid_and_warns(caplog) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(10)
    G, R = rng.normal(size=(400, 6)), rng.normal(size=(500, 6))
    out = make_metric("fid", features="raw", disk_cache=False, fid_inf=True)(G, R, rng=rng)
    assert {"fid", "fid_se", "fid_inf", "fid_inf_se", "fid_kid", "fid_kid_se"} <= out.keys()
    assert out["fid_se"] > 0 and math.isfinite(out["fid_kid"])
    with caplog.at_level("WARNING", logger="genloop.metrics.images"):
        make_metric("fid", features="raw", disk_cache=False)(G, R, rng=rng)  # same distribution: se >> fid
    assert "too few for a stable ranking" in caplog.text
    big = make_metric("fid", features="raw", disk_cache=False, kid=False, se_splits=0)(G, R)
    assert set(big) == {"fid"}


# ---- standard errors cover the truth -------------------------------------------------------------


@pytest.mark.slow
def test_prdc_standard_errors_cover_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    real = rng.normal(size=(300, 2))
    r2 = kth_nn_sq_distances(real, 3, device="cpu").numpy()
    # truth given the real set: membership probability and mean count of a generated point
    big = rng.normal(size=(200_000, 2)) * 1.2 + 0.3
    inside = np.concatenate([cdist(c, real, "sqeuclidean") <= r2[None, :] for c in np.array_split(big, 50)])
    p_true, d_true = inside.any(axis=1).mean(), inside.sum(axis=1).mean() / 3
    hits = {"precision": 0, "density": 0}
    reps = 300
    for _ in range(reps):
        out = prdc(generated=rng.normal(size=(200, 2)) * 1.2 + 0.3, real=real, device="cpu")
        hits["precision"] += abs(out["precision"] - p_true) <= 1.96 * out["precision_se"]
        hits["density"] += abs(out["density"] - d_true) <= 1.96 * out["density_se"]
    for key, h in hits.items():
        rate = h / reps
        assert abs(rate - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps) + 0.01, (key, rate)


# ---- statistics cache ----------------------------------------------------------------------------


def test_stats_cache_evicts_least_recently_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    stats = [FeatureStats.from_features(rng.normal(size=(20, 16))) for _ in range(4)]
    one = StatsCache(tmp_path).path("probe")
    StatsCache(tmp_path).put("probe", stats[0])
    entry = one.stat().st_size + one.with_name(one.name + ".json").stat().st_size
    one.unlink()
    one.with_name(one.name + ".json").unlink()
    cache = StatsCache(tmp_path, max_bytes=int(2.5 * entry))
    now = time.time()
    for i, (key, st) in enumerate(zip("abc", stats)):
        cache.put(key, st)
        os.utime(cache.path(key), (now - 100 + i, now - 100 + i))
    assert cache.get("a") is None and cache.get("b") is not None  # 'a' evicted; 'b' now most recent
    cache.put("d", stats[3])
    assert cache.get("c") is None and cache.get("b") is not None and cache.get("d") is not None
    assert sum(size for _, size, _ in cache.entries()) <= cache.max_bytes


# ---- standard errors in the report -----------------------------------------------------------------


def test_report_draws_each_metrics_standard_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from genloop.report.plots import metric_error_bars, plot_metric_curves

    se = np.array([[0.01, 0.02], [0.03, 0.04]])
    np.testing.assert_allclose(metric_error_bars(np.zeros((2, 2)), se), 1.96 * np.sqrt([0.001, 0.002]) / 2)
    assert metric_error_bars(np.zeros((2, 2)), None) is None
    for seed in (0, 1):
        run = tmp_path / "lam=0.5" / f"seed={seed}"
        run.mkdir(parents=True)
        rows = [{"generation": t, "w2": 0.1 + 0.01 * t, "w2_se": 0.005} for t in range(4)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (run / "status.json").write_text(json.dumps({"state": "completed", "last_generation": 3}))
    path = plot_metric_curves(tmp_path, "w2", tmp_path / "w2.png")
    assert path.stat().st_size > 1000


@pytest.mark.slow
def test_fid_split_standard_error_matches_the_repeated_sampling_spread() -> None:
    from genloop.metrics.frechet import split_se

    rng = np.random.default_rng(13)
    d = 8
    real = stats_from_moments(np.zeros(d), np.eye(d), 10**9)
    values, ses = [], []
    for _ in range(300):
        X = rng.normal(size=(400, d)) * 1.2 + 0.1
        values.append(frechet_distance(FeatureStats.from_features(X), real))
        ses.append(split_se(X, real, rng=rng, n_splits=2))
    ratio = math.sqrt(np.mean(np.square(ses))) / np.std(values, ddof=1)
    assert 0.8 < ratio < 1.25  # the estimated SE is the actual spread of FID over repeated draws


def test_gpu_block_sizes_follow_the_device_memory_and_wide_tiles_equal_the_definition(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import types

    import genloop.metrics.prdc as prdc_module

    torch = prdc_module.torch
    cuda = torch.device("cuda")
    assert prdc_module._check_batch(None, torch.device("cpu")) == 1024 and prdc_module._check_batch(None) == 1024
    for total, want in ((141e9, 8192), (8e9, 4096), (2e9, 2048), (1e8, 1024)):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _d, t=total: types.SimpleNamespace(total_memory=t))
        got = prdc_module._check_batch(None, cuda)
        assert got == want and (16 * got * got <= total / 8 or got == 1024), (total, got)
    assert prdc_module._check_batch(300, cuda) == 300  # an explicit size is kept
    assert prdc_module._tile_columns(8192, cuda) == 8192 and prdc_module._tile_columns(8192, torch.device("cpu")) == 2048
    # the GPU's wide tiles (more real columns than 2048 per tile), run here on the CPU
    monkeypatch.setattr(prdc_module, "_tile_columns", lambda bs, dev: 2600)
    rng = np.random.default_rng(13)
    real = rng.normal(size=(2700, 5)).astype(np.float32)
    fake = (rng.normal(size=(900, 5)) + 0.3).astype(np.float32)
    expected = _brute(fake.astype(np.float64), real.astype(np.float64), 3)
    assert _values(prdc(generated=fake, real=real, batch_size=2600, device="cpu", dtype="float32")) == expected
