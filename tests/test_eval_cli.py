"""``genloop eval`` (folders, arrays, run folders, statistics files) and the Inception Score.

Oracles: the Python API on the same arrays, pytorch-fid's statistics format read back, and a
direct re-computation of the Inception Score from a random network's logits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genloop.cli import main
from genloop.metrics.frechet import frechet_distance_features
from genloop.metrics.prdc import kid, prdc


def _write_folder(folder: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, img in enumerate(pixels):
        Image.fromarray(img[0]).save(folder / f"{i:04d}.png")


def _run_json(capsys, *argv: str) -> dict:  # type: ignore[no-untyped-def]
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(120, 40, size=(110, 1, 6, 6)), 0, 255).astype(np.uint8)
    b = np.clip(rng.normal(128, 45, size=(130, 1, 6, 6)), 0, 255).astype(np.uint8)
    _write_folder(tmp_path / "A", a)
    _write_folder(tmp_path / "B", b)
    return tmp_path / "A", tmp_path / "B", a / 127.5 - 1.0, b / 127.5 - 1.0


def test_eval_two_image_folders_equals_the_python_api(folders, capsys, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GENLOOP_CACHE_DIR", str(tmp_path / "cache"))
    A, B, a, b = folders
    out = _run_json(capsys, str(A), str(B), "--features", "raw", "--metrics", "fid,kid,prdc", "--batch-size", "16")
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    assert out["fid"] == pytest.approx(frechet_distance_features(generated=fa, real=fb), rel=1e-6)
    kid_rng = np.random.default_rng(0).spawn(2)[1]  # genloop eval's KID stream for --seed 0
    ref_kid = kid(generated=fa, real=fb, subset_size=110, rng=kid_rng, device="cpu")
    assert out["kid"] == pytest.approx(ref_kid["kid"], rel=1e-6)
    ref = prdc(generated=fa, real=fb, device="cpu")
    assert {k: out[k] for k in ("precision", "recall", "density", "coverage")} == {
        k: ref[k] for k in ("precision", "recall", "density", "coverage")
    }
    # statistics written in pytorch-fid's format and read back give the same FID
    stats = tmp_path / "b_stats.npz"
    _run_json(capsys, str(B), str(A), "--features", "raw", "--save-stats", str(stats))
    with np.load(stats) as f:
        assert set(f.files) >= {"mu", "sigma"}
    again = _run_json(capsys, str(A), str(stats), "--features", "raw")
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-9)
    # FID only: image statistics come from the cache the second time
    first = _run_json(capsys, str(A), str(B), "--features", "raw")
    assert list((tmp_path / "cache" / "stats").glob("*.safetensors"))
    assert _run_json(capsys, str(A), str(B), "--features", "raw")["fid"] == first["fid"]
    assert main(["eval", str(A), str(B), "--features", "raw", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "fid" in text and "A (generated)" in text


def test_eval_arrays_features_and_run_folders(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(200, 5)), rng.normal(size=(220, 5)) + 0.3
    np.save(tmp_path / "a.npy", fa)
    np.savez(tmp_path / "b.npz", features=fb)
    out = _run_json(capsys, str(tmp_path / "a.npy"), str(tmp_path / "b.npz"), "--metrics", "fid,prdc")  # raw by default
    assert out["fid"] == pytest.approx(frechet_distance_features(generated=fa, real=fb), rel=1e-9)
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "status.json").write_text('{"state": "completed", "last_generation": 1}')
    np.save(run / "samples" / "gen_0000.npy", fb)
    np.save(run / "samples" / "gen_0001.npy", fa)
    last = _run_json(capsys, str(run), str(tmp_path / "b.npz"))
    assert last["fid"] == pytest.approx(out["fid"], rel=1e-12) and "gen_0001" in last["generated"]
    assert _run_json(capsys, f"{run}:0", str(tmp_path / "b.npz"))["fid"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.npy", "b.npy"], "no such file"),
        (["hwc.npy", "hwc.npy"], "--channels-last"),
        (["b.npy", "stats.npz", "--metrics", "prdc"], "only --metrics fid"),
        (["b.npy", "b.npy", "--metrics", "fid,bogus"], "unknown metrics"),
        (["b.npy", "b.npy", "--features", "inception"], "--features raw"),
    ],
)
def test_eval_bad_input_exits_2_with_a_message(tmp_path: Path, capsys, monkeypatch, argv, message) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    monkeypatch.chdir(tmp_path)
    np.save("b.npy", rng.normal(size=(50, 3)))
    np.save("hwc.npy", rng.integers(0, 255, size=(10, 8, 8, 3)).astype(np.uint8))
    np.savez("stats.npz", mu=np.zeros(3), sigma=np.eye(3))
    assert main(["eval", *argv]) == 2
    assert message in capsys.readouterr().err


def test_eval_module_imports_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, genloop.metrics.sets, genloop.cli.eval; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- Inception Score -------------------------------------------------------------------------------


@pytest.mark.slow
def test_inception_score_equals_a_direct_computation_on_a_random_network() -> None:
    from scipy.special import softmax
    from scipy.stats import entropy

    from genloop.metrics.features.inception import FIDInceptionV3, InceptionFeatures, preprocess
    from genloop.metrics.inception_score import inception_score

    net = FIDInceptionV3()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("conv.weight") or name == "fc.weight":
                torch.nn.init.normal_(p, std=0.05, generator=g)
    net.eval()
    images = np.random.default_rng(3).uniform(-1, 1, size=(6, 3, 40, 40)).astype(np.float32)
    ours = InceptionFeatures(net=net, batch_size=4, device="cpu").logits(images)
    with torch.no_grad():
        pool3 = net(preprocess(torch.from_numpy(images))).double().numpy()
    logits = pool3 @ net.fc.weight.detach().double().numpy().T  # no bias, as the original code
    np.testing.assert_allclose(ours, logits, rtol=1e-4, atol=1e-4)
    scores = []
    for part in np.array_split(logits, 2):  # the original protocol: contiguous splits
        p = softmax(part, axis=1)
        py = p.mean(axis=0)
        scores.append(math.exp(np.mean([entropy(row, py) for row in p])))
    got = inception_score(logits, n_splits=2)
    assert got["is"] == pytest.approx(np.mean(scores), rel=1e-10)
    assert got["is_std"] == pytest.approx(np.std(scores), rel=1e-8, abs=1e-12)
    # one class for all samples scores 1; uniform over C distinct confident classes scores C
    assert inception_score(np.tile([50.0, 0, 0, 0], (8, 1)), n_splits=1)["is"] == pytest.approx(1.0)
    assert inception_score(np.eye(4)[np.arange(8) % 4] * 60.0, n_splits=1)["is"] == pytest.approx(4.0, rel=1e-6)


def test_inception_resize_conventions() -> None:
    from genloop.metrics.features.inception import _resize_tf1, preprocess

    x = torch.arange(4, dtype=torch.float64).reshape(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    up = _resize_tf1(x, 8)[0, 0, 0]
    # TF1 bilinear without half-pixel centres: source position i * 4 / 8, clamped at the edge
    np.testing.assert_allclose(up.numpy(), [0, 0.5, 1, 1.5, 2, 2.5, 3, 3])
    img = torch.full((2, 3, 20, 20), 0.25)
    # a constant image stays constant; each tool scales its pixels 127.5 (x + 1) its own way:
    # pytorch-fid feeds x, torch-fidelity the 8-bit value (159 - 128) / 128, clean-fid (159.375 - 128) / 128
    for resize, value in (("pytorch-fid", 0.25), ("torch-fidelity", 31 / 128), ("clean-fid", 31.375 / 128)):
        out = preprocess(img, resize)
        assert out.shape == (2, 3, 299, 299)
        torch.testing.assert_close(out, torch.full_like(out, value))
    ramp = torch.linspace(-1, 1, 20).expand(1, 1, 20, 20).contiguous()
    a, b = preprocess(ramp, "pytorch-fid"), preprocess(ramp, "torch-fidelity")
    assert float((a - b).abs().max()) > 1e-3  # the conventions differ


@pytest.mark.slow
def test_eval_inception_score_and_fid_with_a_local_weight_file(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from genloop.metrics.features.inception import FIDInceptionV3, InceptionFeatures
    from genloop.metrics.inception_score import inception_score

    monkeypatch.setenv("GENLOOP_CACHE_DIR", str(tmp_path / "cache"))
    net = FIDInceptionV3()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("conv.weight") or name == "fc.weight":
                torch.nn.init.normal_(p, std=0.05, generator=g)
    weights = tmp_path / "random_inception.pth"
    torch.save(net.state_dict(), weights)
    pixels = np.random.default_rng(4).integers(0, 256, size=(4, 24, 24, 3)).astype(np.uint8)
    (tmp_path / "A").mkdir()
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(tmp_path / "A" / f"{i}.png")
    out = _run_json(capsys, str(tmp_path / "A"), str(tmp_path / "A"), "--metrics", "is,fid", "--weights", str(weights),
                    "--device", "cpu")  # fmt: skip
    images = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    ref = inception_score(InceptionFeatures(net=net.eval(), device="cpu").logits(images), n_splits=4)
    assert out["is"] == pytest.approx(ref["is"], rel=1e-5)
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)  # a set against itself (rank-deficient: 4 < 2048)
