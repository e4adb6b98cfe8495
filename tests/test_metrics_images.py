"""Tests of the feature-space metrics: Fréchet distance, PRDC, KID, feature extractors.

Oracles: POT's Bures–Wasserstein closed form, a scipy ``sqrtm`` FID, brute-force full distance
matrices (scipy ``cdist``) for the k-NN metrics, direct double sums for KID, torchvision's
published Inception-v3 parameter count, and invariances (batch size, channel replication).
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import ot
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from genloop.errors import ConfigError, DataError
from genloop.metrics import make_metric
from genloop.metrics.frechet import FeatureStats, StatsCache, frechet_distance, frechet_distance_from_moments
from genloop.metrics.prdc import kid, kth_nn_distances, prdc


# ---- Fréchet distance -----------------------------------------------------------------------------


def _scipy_fid(mu1: np.ndarray, S1: np.ndarray, mu2: np.ndarray, S2: np.ndarray) -> float:
    covmean = scipy.linalg.sqrtm(S1 @ S2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(S1) + np.trace(S2) - 2 * np.trace(covmean))


def test_feature_stats_streaming_equals_batch_moments() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(503, 6)) * 3 + 100.0  # large offset: tests the centred merge
    ref_mean, ref_cov = X.mean(0), np.cov(X.T)
    for bs in (1, 7, 64, None):
        st = FeatureStats.from_features(X, batch_size=bs)
        assert st.n == 503
        np.testing.assert_allclose(st.mean, ref_mean, rtol=1e-13)
        np.testing.assert_allclose(st.cov, ref_cov, rtol=1e-10, atol=1e-12)


def test_fid_zero_for_identical_sets() -> None:
    X = np.random.default_rng(1).normal(size=(400, 32))
    st = FeatureStats.from_features(X)
    assert frechet_distance(st, st) == pytest.approx(0.0, abs=1e-9)
    assert make_metric("fid", features="raw", disk_cache=False)(X, X)["fid"] == pytest.approx(0.0, abs=1e-9)


def test_fid_equals_bures_wasserstein_squared_and_scipy_sqrtm() -> None:
    rng = np.random.default_rng(2)
    d = 24
    X = rng.normal(size=(600, d)) @ rng.normal(size=(d, d))
    Y = rng.normal(size=(500, d)) * 0.7 + 0.3
    a, b = FeatureStats.from_features(X), FeatureStats.from_features(Y)
    value = frechet_distance(a, b)
    bw = float(ot.gaussian.bures_wasserstein_distance(a.mean, b.mean, a.cov, b.cov)) ** 2
    assert value == pytest.approx(bw, rel=1e-9)
    assert value == pytest.approx(_scipy_fid(a.mean, a.cov, b.mean, b.cov), rel=1e-9)
    # Gaussian features with known parameters: FID between N(m, S) and N(0, I) in closed form
    # for commuting covariances = ||m||^2 + sum (sqrt(s_i) - 1)^2
    s, m = rng.uniform(0.2, 3.0, size=5), rng.normal(size=5)
    expected = float(m @ m + np.sum((np.sqrt(s) - 1) ** 2))
    assert frechet_distance_from_moments(m, np.diag(s), np.zeros(5), np.eye(5)) == pytest.approx(expected)


def test_fid_metric_independent_of_batch_size_and_prepare(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    G, R = rng.normal(size=(300, 1, 4, 4)), rng.normal(size=(350, 1, 4, 4)) * 1.3
    ref = make_metric("fid", features="raw", disk_cache=False)(G, R)["fid"]
    for bs in (1, 13, 1000):
        m = make_metric("fid", features="raw", batch_size=bs, disk_cache=False)
        m.prepare(R)
        assert m(G, R)["fid"] == pytest.approx(ref, rel=1e-10)
    # the statistics of another real set are not served from the in-memory cache
    R2 = R + 1.0
    assert m(G, R2)["fid"] == pytest.approx(
        make_metric("fid", features="raw", disk_cache=False)(G, R2)["fid"], rel=1e-12
    )


def test_fid_disk_cache_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    G, R = rng.normal(size=(100, 8)), rng.normal(size=(120, 8))
    first = make_metric("fid", features="raw", cache_dir=str(tmp_path))(G, R)["fid"]
    files = list((tmp_path / "stats").glob("*.safetensors"))
    assert len(files) == 1 and files[0].with_name(files[0].name + ".json").is_file()
    cached = FeatureStats.load(files[0])
    np.testing.assert_array_equal(cached.mean, FeatureStats.from_features(R.astype(np.float64)).mean)
    second = make_metric("fid", features="raw", cache_dir=str(tmp_path))(G, R)["fid"]
    assert second == first
    assert StatsCache(tmp_path / "stats").get("absent") is None


def test_fid_rank_deficient_error() -> None:
    rng = np.random.default_rng(5)
    G, R = rng.normal(size=(10, 16)), rng.normal(size=(40, 16))
    with pytest.raises(DataError, match="allow_rank_deficient"):
        make_metric("fid", features="raw", disk_cache=False)(G, R)
    value = make_metric("fid", features="raw", disk_cache=False, allow_rank_deficient=True)(G, R)["fid"]
    assert math.isfinite(value) and value > 0


# ---- PRDC -----------------------------------------------------------------------------------------


def _bruteforce_prdc(fake: np.ndarray, real: np.ndarray, k: int) -> dict[str, float]:
    """The full-distance-matrix definition (as the ``prdc`` package, with ``<=``)."""
    rr, ff, rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = np.sort(rr, axis=1)[:, k]
    r_fake = np.sort(ff, axis=1)[:, k]
    return {
        "precision": float((rf <= r_real[:, None]).any(axis=0).mean()),
        "recall": float((rf <= r_fake[None, :]).any(axis=1).mean()),
        "density": (1.0 / k) * (int((rf <= r_real[:, None]).sum()) / fake.shape[0]),  # the prdc package's order
        "coverage": float((rf.min(axis=1) <= r_real).mean()),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_equals_bruteforce_for_any_batch_size(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    real = rng.normal(size=(157, 5))
    fake = rng.normal(size=(131, 5)) * 1.2 + 0.2
    expected = _bruteforce_prdc(fake, real, k)
    for bs in (3, 16, 1000):  # 3 < k + 1 for k = 5: blocks narrower than the neighbour list
        for dtype in ("float64", "float32", "bfloat16"):
            got = prdc(generated=fake, real=real, k=k, batch_size=bs, device="cpu", dtype=dtype)
            assert {key: got[key] for key in expected} == expected  # exact: the same counts
    radii = kth_nn_distances(torch.as_tensor(real), k, batch_size=10)
    np.testing.assert_allclose(radii.numpy(), np.sort(cdist(real, real), axis=1)[:, k], rtol=1e-10)


def test_prdc_mode_collapse_vs_noisy_generator() -> None:
    rng = np.random.default_rng(20)
    centres = 10.0 * np.stack([np.cos(np.arange(10) * 2 * np.pi / 10), np.sin(np.arange(10) * 2 * np.pi / 10)], 1)
    real = centres[rng.integers(0, 10, size=1000)] + 0.5 * rng.normal(size=(1000, 2))
    collapsed = centres[0] + 0.5 * rng.normal(size=(1000, 2))  # one mode of ten
    noisy = 8.0 * rng.normal(size=(1000, 2))  # covers everything, mostly off-manifold
    c = prdc(generated=collapsed, real=real, k=3, device="cpu")
    n = prdc(generated=noisy, real=real, k=3, device="cpu")
    assert c["precision"] > 0.9 and c["recall"] < 0.2 and c["coverage"] < 0.15
    assert n["precision"] < 0.5 and n["recall"] > 0.9
    faithful = prdc(generated=centres[rng.integers(0, 10, size=1000)] + 0.5 * rng.normal(size=(1000, 2)), real=real,
                    device="cpu")
    assert min(faithful["precision"], faithful["recall"], faithful["coverage"]) > 0.85
    assert 0.8 < faithful["density"] < 1.25  # E[density] = 1 for identical distributions


def test_prdc_metric_matches_function_and_prepare() -> None:
    rng = np.random.default_rng(21)
    G, R = rng.normal(size=(200, 1, 3, 3)), rng.normal(size=(220, 1, 3, 3))
    expected = _bruteforce_prdc(G.reshape(200, -1), R.reshape(220, -1), 3)
    m = make_metric("prdc", features="raw", distance_dtype="float64", knn_batch_size=17, device="cpu")
    m.prepare(R)
    assert {key: v for key, v in m(G, R).items() if key in expected} == expected
    fresh = make_metric("prdc", features="raw", device="cpu")(G, R)  # float32 first pass, no prepare
    assert set(fresh) == {"precision", "recall", "density", "coverage", "precision_se", "recall_se", "density_se",
                          "coverage_se"}  # fmt: skip
    assert {key: fresh[key] for key in expected} == expected
    prepared = make_metric("prdc", features="raw", device="cpu")
    prepared.prepare(R)
    assert prepared(G, R) == fresh


# ---- KID ------------------------------------------------------------------------------------------


def test_kid_matches_direct_formula_and_is_unbiased() -> None:
    rng = np.random.default_rng(30)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    with pytest.raises(DataError, match="subset_size=None"):
        kid(generated=X, real=Y, n_subsets=1, subset_size=1000, rng=np.random.default_rng(0), device="cpu")
    got = kid(generated=X, real=Y, n_subsets=1, subset_size=None, rng=np.random.default_rng(0), device="cpu")
    # subset_size None: the smaller set's 30: one subset of 30 rows of X (in some order) and all of Y
    idx = np.random.default_rng(0).choice(40, 30, replace=False)
    x, m, d = X[idx], 30, 3

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / d + 1) ** 3

    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    kyy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(k(a, b) for a in x for b in Y)
    assert got["kid"] == pytest.approx((kxx + kyy) / (m * (m - 1)) - 2 * kxy / m**2, rel=1e-10)
    assert got["kid_std"] == 0.0
    # unbiased: mean over many independent same-distribution pairs is 0 within 4 standard errors
    vals = [
        kid(generated=rng.normal(size=(50, 4)), real=rng.normal(size=(50, 4)), n_subsets=1, subset_size=None, rng=rng,
            device="cpu")["kid"]
        for _ in range(200)
    ]
    assert abs(np.mean(vals)) < 4 * np.std(vals) / math.sqrt(len(vals))
    shifted = kid(generated=rng.normal(size=(200, 4)) + 1, real=rng.normal(size=(200, 4)), n_subsets=10,
                  subset_size=100, rng=rng, device="cpu")
    assert shifted["kid"] > 10 * np.std(vals)


def test_kid_metric_uses_rng() -> None:
    rng = np.random.default_rng(31)
    G, R = rng.normal(size=(120, 5)), rng.normal(size=(130, 5))
    m = make_metric("kid", features="raw", n_subsets=5, subset_size=50, device="cpu")
    a = m(G, R, rng=np.random.default_rng(1))
    assert a == m(G, R, rng=np.random.default_rng(1))
    assert a != m(G, R, rng=np.random.default_rng(2))


def test_bad_feature_options() -> None:
    with pytest.raises(ConfigError, match="features"):
        make_metric("fid", features="vgg")
    with pytest.raises(ConfigError, match="k and knn_batch_size"):
        make_metric("prdc", features="raw", k=0)


# ---- Inception plumbing (random weights; the real file is never needed) ------------------------------


def _random_inception():  # type: ignore[no-untyped-def]
    from genloop.metrics.features.inception import FIDInceptionV3

    net = FIDInceptionV3()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("conv.weight"):
                torch.nn.init.kaiming_normal_(p, generator=g)
    return net.eval()


def test_inception_architecture_matches_reference_layout() -> None:
    from genloop.metrics.features.inception import FIDInceptionV3

    net = FIDInceptionV3()
    # torchvision's inception_v3 has 27,161,264 parameters with AuxLogits (3,326,696) and a
    # 1000-way fc; the FID network has no AuxLogits and a 1008-way fc (+8 * 2049)
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049
    sd = net.state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_var",
                "Mixed_6e.branch7x7dbl_5.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.bias"):  # fmt: skip
        assert key in sd
    assert sd["fc.weight"].shape == (1008, 2048)
    assert sd["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)


def test_inception_preprocess_resizes_and_replicates() -> None:
    from genloop.metrics.features.inception import preprocess

    x = torch.rand(2, 1, 28, 28) * 2 - 1
    out = preprocess(x)
    assert out.shape == (2, 3, 299, 299)
    ref = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.equal(out[:, 1:2], ref) and torch.equal(out[:, 0], out[:, 2])
    big = torch.rand(1, 3, 299, 299)
    assert torch.equal(preprocess(big), big)
    with pytest.raises(DataError, match="C = 1 or 3"):
        preprocess(torch.zeros(1, 2, 8, 8))


@pytest.mark.slow
def test_inception_features_shape_batching_and_weight_file_round_trip(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from genloop.metrics.features.inception import FID_WEIGHTS_FILE, InceptionFeatures

    net = _random_inception()
    rng = np.random.default_rng(40)
    gray = rng.uniform(-1, 1, size=(3, 1, 16, 16)).astype(np.float32)
    f_one = InceptionFeatures(net=net, batch_size=1, device="cpu")(gray)
    f_all = InceptionFeatures(net=net, batch_size=3, device="cpu")(gray)
    assert f_one.shape == (3, 2048) and np.all(np.isfinite(f_one)) and f_one.std() > 0
    np.testing.assert_allclose(f_one, f_all, rtol=1e-4, atol=1e-5)
    # gray input = the same image replicated to 3 channels
    f_rgb = InceptionFeatures(net=net, batch_size=3, device="cpu")(np.repeat(gray, 3, axis=1))
    np.testing.assert_allclose(f_rgb, f_all, rtol=1e-5, atol=1e-6)

    # a weight file in pytorch-fid's format (no num_batches_tracked) loads by option, env, cache
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    (tmp_path / "weights").mkdir()
    path = tmp_path / "weights" / FID_WEIGHTS_FILE
    torch.save(state, path)
    monkeypatch.delenv("GENLOOP_INCEPTION_WEIGHTS", raising=False)
    for kwargs in ({"weights_path": str(path)}, {"cache_dir": str(tmp_path)}):
        loaded = InceptionFeatures(batch_size=3, device="cpu", **kwargs)
        np.testing.assert_array_equal(loaded(gray), f_all)
    monkeypatch.setenv("GENLOOP_INCEPTION_WEIGHTS", str(path))
    assert InceptionFeatures(device="cpu").id.startswith("inception-fid:" + FID_WEIGHTS_FILE)
    # a state dict of another network is refused, naming the keys
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="missing keys"):
        InceptionFeatures(weights_path=str(tmp_path / "bad.pth"), device="cpu")


def test_inception_missing_weights_message(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("GENLOOP_INCEPTION_WEIGHTS", raising=False)
    m = make_metric("fid", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="pt_inception-2015-12-05-6726825d.pth") as info:
        m.prepare(np.zeros((4, 3, 8, 8)))
    assert str(tmp_path / "weights") in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        make_metric("fid", weights_path=str(tmp_path / "nope.pth")).prepare(np.zeros((4, 3, 8, 8)))


# ---- classifier features ------------------------------------------------------------------------------


@pytest.mark.slow
def test_classifier_deterministic_accurate_and_cached(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from genloop.metrics.features.classifier import ClassifierFeatures, load_digit_data

    a = ClassifierFeatures("digits", seed=0, device="cpu", cache_dir=str(tmp_path / "a"))
    b = ClassifierFeatures("digits", seed=0, device="cpu", cache_dir=str(tmp_path / "b"))
    assert a.test_accuracy >= 0.97  # measured 0.983 on the 359 held-out digits (seed 0)
    X, _ = load_digit_data("digits")
    fa, fb = a(X[:300]), b(X[:300])
    assert fa.shape == (300, 64)
    np.testing.assert_array_equal(fa, fb)  # same seed -> bit-identical network and features
    assert (tmp_path / "a" / "classifier" / "digits-seed0-v1.safetensors").is_file()
    again = ClassifierFeatures("digits", seed=0, device="cpu", cache_dir=str(tmp_path / "a"), batch_size=7)
    np.testing.assert_allclose(again(X[:300]), fa, rtol=1e-5, atol=1e-6)  # cached load, other batching
    other = ClassifierFeatures("digits", seed=1, device="cpu", cache_dir=str(tmp_path / "a"))
    assert not np.array_equal(other(X[:300]), fa)
    # Fréchet classifier distance: real digits vs themselves ~0; vs noise large
    fid = make_metric("fid", features="classifier", cache_dir=str(tmp_path / "a"), disk_cache=False, device="cpu")
    half = len(X) // 2
    same = fid(X[:half], X[half:])["fid"]
    noise = fid(np.random.default_rng(0).uniform(-1, 1, size=(half, 1, 8, 8)), X[half:])["fid"]
    assert noise > 10 * same


def test_features_memoised_by_content_across_metrics() -> None:
    from genloop.metrics.features import FeatureExtractor
    from genloop.metrics.images import cached_features

    class Counting(FeatureExtractor):
        name = "counting"
        calls = 0

        @property
        def id(self) -> str:
            return "counting-test"

        def __call__(self, X: np.ndarray) -> np.ndarray:
            Counting.calls += 1
            return X.reshape(len(X), -1) * 2.0

    ex = Counting()
    X = np.random.default_rng(50).normal(size=(6, 1, 2, 2))
    a = cached_features(ex, X)
    b = cached_features(ex, X.copy())  # another object, same content: served from the cache
    assert Counting.calls == 1 and np.array_equal(a, b)
    cached_features(ex, X + 1.0)  # other content: computed
    assert Counting.calls == 2


# ---- Input conventions of the FID tools, against the tools' own preprocessing --------------------------


def _pixels(seed: int, shape: tuple[int, ...] = (2, 3, 13, 17)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


def _tf1_reference(u: np.ndarray, size: int) -> np.ndarray:
    """TF1 ``resize_bilinear`` (no half-pixel centres) written from TensorFlow's kernel, in float64."""
    h, w = u.shape[-2:]
    out = np.empty(u.shape[:-2] + (size, size))
    for i in range(size):
        y = i * h / size
        y0 = min(int(math.floor(y)), h - 1)
        y1, dy = min(y0 + 1, h - 1), y - y0
        for j in range(size):
            x = j * w / size
            x0 = min(int(math.floor(x)), w - 1)
            x1, dx = min(x0 + 1, w - 1), x - x0
            top = u[..., y0, x0] * (1 - dx) + u[..., y0, x1] * dx
            bottom = u[..., y1, x0] * (1 - dx) + u[..., y1, x1] * dx
            out[..., i, j] = top * (1 - dy) + bottom * dy
    return out


def test_torch_fidelity_convention_follows_its_published_steps() -> None:
    from genloop.metrics.features.inception import preprocess

    u = _pixels(60)
    x = torch.from_numpy(u.astype(np.float32) / 127.5 - 1.0)  # how genloop reads 8-bit images
    ref = (_tf1_reference(u.astype(np.float64), 299) - 128) / 128  # uint8 -> float -> TF1 resize -> (x-128)/128
    np.testing.assert_allclose(preprocess(x, "torch-fidelity").double().numpy(), ref, rtol=0, atol=2e-6)
    # floats between pixel values are quantised as torch-fidelity's uint8 input requires
    fine = torch.full((1, 3, 299, 299), 0.25)
    assert torch.equal(preprocess(fine, "torch-fidelity"), torch.full_like(fine, (159 - 128) / 128))
    assert float(preprocess(torch.full((1, 1, 299, 299), 1.7), "torch-fidelity").max()) == (255 - 128) / 128


def test_clean_fid_convention_follows_its_published_steps() -> None:
    from PIL import Image

    from genloop.metrics.features.inception import preprocess

    u = _pixels(61).astype(np.float32)
    u[0, 0, :4, :4] = 0.0  # dark corner next to bright pixels: bicubic overshoots below 0, clean-fid clips
    u[0, 0, 4:8, 4:8] = 255.0
    ref = np.empty((2, 3, 299, 299))
    for n in range(2):
        for c in range(3):  # clean-fid's "clean" resizer: each channel a 32-bit float PIL image, BICUBIC
            img = Image.fromarray(u[n, c], mode="F").resize((299, 299), resample=Image.BICUBIC)
            ref[n, c] = (np.asarray(img).clip(0, 255) - 128) / 128  # clip, then InceptionV3W's (x - 128) / 128
    out = preprocess(torch.from_numpy(u / 127.5 - 1.0), "clean-fid").double().numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)  # float32 filter sums: 2e-5 of 1 = 0.003 of a pixel
    assert out.min() >= -1.0 and out.max() <= 127 / 128  # clipped to [0, 255] pixels
    # the overshoot is there before clipping, so the clip is what the test exercises
    raw = torch.nn.functional.interpolate(torch.from_numpy(u), size=(299, 299), mode="bicubic", antialias=True)
    assert float(raw.min()) < -1.0


def test_clean_fid_convention_equals_clean_fid_resizer() -> None:
    resize_mod = pytest.importorskip("cleanfid.resize")  # imports without torchvision
    from genloop.metrics.features.inception import preprocess

    u = _pixels(62, (3, 3, 20, 24))
    tool = np.stack([resize_mod.build_resizer("clean")(img.transpose(1, 2, 0)).transpose(2, 0, 1) for img in u])
    ours = preprocess(torch.from_numpy(u.astype(np.float32) / 127.5 - 1.0), "clean-fid").numpy()
    np.testing.assert_allclose(ours, (tool - 128) / 128, rtol=0, atol=2e-5)


def _torch_fidelity_inception_module():  # type: ignore[no-untyped-def]
    """torch-fidelity's Inception module, imported without its package ``__init__`` (which needs torchvision)."""
    import importlib
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("torch_fidelity")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch-fidelity is not installed (pip install --no-deps torch-fidelity)")
    saved = {k: v for k, v in sys.modules.items() if k == "torch_fidelity" or k.startswith("torch_fidelity.")}
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = pkg
    try:
        return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    finally:
        for k in [k for k in sys.modules if k == "torch_fidelity" or k.startswith("torch_fidelity.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.slow
def test_torch_fidelity_convention_equals_torch_fidelity_features(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from genloop.metrics.features.inception import InceptionFeatures

    tf_inception = _torch_fidelity_inception_module()
    net = _random_inception()
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    tool = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    u = _pixels(63, (2, 3, 16, 16))
    with torch.no_grad():
        ref = tool(torch.from_numpy(u))[0].double().numpy()  # the tool end to end: uint8 in, pool3 out
    images = u.astype(np.float32) / 127.5 - 1.0
    ours = InceptionFeatures(weights_path=str(path), device="cpu", resize="torch-fidelity")(images)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6 * scale)
    other = InceptionFeatures(net=net, device="cpu", resize="pytorch-fid")(images)
    assert np.abs(other - ref).max() > 1e-3 * scale  # the conventions differ by far more than the tolerance


# ---- Caches keyed by the weights' content --------------------------------------------------------------


@pytest.mark.slow
def test_same_name_same_size_weights_never_share_cached_numbers(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from genloop.metrics.features.inception import FID_WEIGHTS_FILE, InceptionFeatures, weights_digest
    from genloop.metrics.features import make_extractor
    from genloop.metrics.images import cached_features

    monkeypatch.delenv("GENLOOP_INCEPTION_WEIGHTS", raising=False)
    net_a = _random_inception()
    net_b = _random_inception()
    with torch.no_grad():  # another network of identical shapes (so the file has the same size)
        for p in net_b.parameters():
            p.mul_(1.5)
    for folder, net in (("a", net_a), ("b", net_b)):
        (tmp_path / folder).mkdir()
        torch.save(net.state_dict(), tmp_path / folder / FID_WEIGHTS_FILE)
    path_a, path_b = tmp_path / "a" / FID_WEIGHTS_FILE, tmp_path / "b" / FID_WEIGHTS_FILE
    assert path_a.stat().st_size == path_b.stat().st_size
    real = np.random.default_rng(64).uniform(-1, 1, size=(3, 3, 8, 8))
    truth = {"a": InceptionFeatures(net=net_a, device="cpu")(real), "b": InceptionFeatures(net=net_b, device="cpu")(real)}
    assert np.abs(truth["a"] - truth["b"]).max() > 1e-2 * np.abs(truth["a"]).max()
    cache = tmp_path / "cache"

    def check(path, expected: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        # in-process features (memoised by extractor id and content) ...
        extractor = make_extractor("inception", weights_path=str(path), device="cpu")
        np.testing.assert_allclose(cached_features(extractor, real), expected, rtol=1e-5, atol=1e-6)
        # ... and the real statistics that fid keeps on disk
        m = make_metric("fid", weights_path=str(path), device="cpu", cache_dir=str(cache))
        m.prepare(real)
        np.testing.assert_allclose(m._real_side(real)[0].mean, expected.mean(0), rtol=1e-5, atol=1e-6)

    # same name and size in two folders: neither the features nor the statistics are shared
    check(path_a, truth["a"])
    check(path_b, truth["b"])
    assert len(list((cache / "stats").glob("*.safetensors"))) == 2
    # one path whose file is replaced by another of the same size (new content, same name)
    digest_a = weights_digest(path_a)
    tmp = tmp_path / "swap.pth"
    shutil.copyfile(path_b, tmp)
    tmp.replace(path_a)
    assert weights_digest(path_a) == weights_digest(path_b) != digest_a
    check(path_a, truth["b"])
    # the digest is computed once per (path, size, mtime, inode)
    import hashlib

    calls: list[int] = []
    real_sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real_sha256(*a))
    assert weights_digest(path_a) == weights_digest(path_b) and calls == []


# ---- one preparation path and one set of shared options for the feature metrics -------------------------


def test_feature_metrics_share_their_options_and_one_preparation_path() -> None:
    from genloop.metrics.images import FeatureMetric
    from genloop.registry import constructor_options

    shared = [name for name, _, _ in constructor_options(FeatureMetric)]
    assert shared[:2] == ["features", "weights_path"] and "resize" in shared
    for name, own in (("fid", "se_splits"), ("prdc", "k"), ("kid", "n_subsets")):
        options = make_metric(name, features="raw", batch_size=8)
        names = [n for n, _, _ in constructor_options(type(options))]
        assert own in names and set(shared) <= set(names)  # declared once, validated for each metric
        params = options.get_params()  # the resolved config keeps the shared options
        assert params["features"] == "raw" and params["batch_size"] == 8 and own in params
    with pytest.raises(ConfigError, match="unknown option 'featurez'.*features"):
        make_metric("kid", featurez="raw")
    with pytest.raises(ConfigError, match="option 'resize'"):
        make_metric("fid", resize="bilinear")
    # pixels in 0..255 are converted once (before this path, a second conversion refused every
    # 0..255 set): the same values as the [-1, 1] images, through a network-style extractor
    from genloop.metrics.features.base import FeatureExtractor

    class Flat(FeatureExtractor):
        name = "flat"
        id = "flat-test"  # type: ignore[assignment]

        def __call__(self, X: np.ndarray) -> np.ndarray:
            return np.asarray(X, dtype=np.float64).reshape(X.shape[0], -1)

    rng = np.random.default_rng(65)
    pixels = rng.integers(0, 256, size=(40, 1, 4, 4)).astype(np.float64)
    real = rng.integers(0, 256, size=(50, 1, 4, 4)).astype(np.float64)
    for name in ("fid", "kid", "prdc"):
        values = []
        for pixel_range, g, r in (("0,255", pixels, real), ("-1,1", pixels / 127.5 - 1, real / 127.5 - 1)):
            metric = make_metric(name, features="classifier", pixel_range=pixel_range, device="cpu")
            metric._extractor = Flat()  # no classifier is trained: the path, not the network, is tested
            values.append(metric(g, r, rng=np.random.default_rng(1)))
        assert values[0].keys() == values[1].keys()
        for key in values[1]:
            assert values[0][key] == pytest.approx(values[1][key], rel=1e-6, abs=1e-9), (name, key)
