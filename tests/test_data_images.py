"""Image data sources (digits, MNIST, CIFAR-10 batches, folders, .npy) and the sample grid writer."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest

from genloop.data import make_data, split_real
from genloop.data.images import load_cifar_batch, scale_to_signed_unit
from genloop.errors import ConfigError, DataError
from genloop.report.grids import make_grid, save_sample_grid

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def _uint8_images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ---- packaged data ------------------------------------------------------------------------------
def test_digits_images_shape_range_and_values() -> None:
    from sklearn.datasets import load_digits

    src = make_data("digits_images")
    X = src.load()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert X.min() == -1.0 and X.max() == 1.0
    # pixel value v in 0..16 maps to v / 8 - 1
    np.testing.assert_allclose(X[:, 0], load_digits().images / 8.0 - 1.0, atol=1e-6)
    split = split_real(src, 1000, 500, rng=np.random.default_rng(0))
    assert split.train.shape == (1000, 1, 8, 8) and split.heldout.shape == (500, 1, 8, 8)


def test_mnist_shape_and_range() -> None:
    X = make_data("mnist").load()
    assert X.shape == (5000, 1, 28, 28) and X.dtype == np.float32
    assert X.min() == -1.0 and X.max() == 1.0
    # MNIST is mostly background: the median pixel is black (-1)
    assert np.median(X) == -1.0


def test_scale_to_signed_unit() -> None:
    np.testing.assert_allclose(scale_to_signed_unit(np.array([0, 127.5, 255]), 0, 255, what="x"), [-1, 0, 1])
    with pytest.raises(DataError, match="outside the declared range"):
        scale_to_signed_unit(np.array([0.0, 2.0]), 0, 1, what="x")
    with pytest.raises(DataError, match="NaN"):
        scale_to_signed_unit(np.array([0.0, np.nan]), 0, 1, what="x")


# ---- CIFAR-10 --------------------------------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as cPickle did for the
    official CIFAR-10 batches."""

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
    dispatch[bytes] = save_bytes


def _write_batch(path, data: np.ndarray, protocol: int | str = "py2") -> None:
    """A CIFAR-10 batch: ``"py2"`` mimics the official files (Python 2 strings, numpy 1
    module names); an int is a plain Python 3 pickle of that protocol."""
    batch = {b"batch_label": b"test", b"labels": [int(i % 10) for i in range(len(data))], b"data": data,
             b"filenames": [b"f%d.png" % i for i in range(len(data))]}
    if protocol == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(batch)
        raw = buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"numpy.core.multiarray" in raw
        path.write_bytes(raw)
        return
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=protocol)


def _cifar_folder(tmp_path, rng, n_per_batch: int = 4):
    raw = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        raw[name] = _uint8_images(rng, n_per_batch, (3072,))
        # batches 1-4 in the official Python 2 format; others as Python 3 pickles (protocols 2, 5)
        protocol = {"data_batch_5": 2, "test_batch": 5}.get(name, "py2")
        _write_batch(tmp_path / name, raw[name], protocol=protocol)
    return raw


def test_cifar10_reads_official_layout(tmp_path) -> None:
    raw = _cifar_folder(tmp_path, np.random.default_rng(0))
    train = make_data("cifar10", path=str(tmp_path)).load()
    assert train.shape == (20, 3, 32, 32) and train.dtype == np.float32
    # row-major 3072 = 3 x 32 x 32 (red plane, green plane, blue plane), batches in order
    first = raw["data_batch_1"][0].reshape(3, 32, 32)
    np.testing.assert_allclose(train[0], first / 127.5 - 1.0, atol=1e-6)
    last = raw["data_batch_5"][-1].reshape(3, 32, 32)
    np.testing.assert_allclose(train[-1], last / 127.5 - 1.0, atol=1e-6)
    test = make_data("cifar10", path=str(tmp_path), split="test").load()
    np.testing.assert_allclose(test[1], raw["test_batch"][1].reshape(3, 32, 32) / 127.5 - 1.0, atol=1e-6)
    with pytest.raises(ConfigError, match="split"):
        make_data("cifar10", path=str(tmp_path), split="validation")


def test_cifar10_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        make_data("cifar10", path=str(tmp_path / "nope")).load()
    _cifar_folder(tmp_path, np.random.default_rng(1))
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        make_data("cifar10", path=str(tmp_path)).load()
    # malformed: wrong array shape, missing key, not a dict, not a pickle
    bad = tmp_path / "bad"
    _write_batch(bad, np.zeros((2, 100), dtype=np.uint8))
    with pytest.raises(DataError, match=r"\(n, 3072\)"):
        load_cifar_batch(bad)
    with open(bad, "wb") as fh:
        pickle.dump({b"labels": [1]}, fh, protocol=2)
    with pytest.raises(DataError, match="no 'data' array"):
        load_cifar_batch(bad)
    with open(bad, "wb") as fh:
        pickle.dump([1, 2, 3], fh, protocol=2)
    with pytest.raises(DataError, match="expected a dict"):
        load_cifar_batch(bad)
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="not a valid batch pickle"):
        load_cifar_batch(bad)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_cifar10_refuses_code_in_pickles(tmp_path) -> None:
    """A pickle that names any callable other than numpy's array reconstructors is refused."""
    evil = tmp_path / "evil"
    with open(evil, "wb") as fh:
        pickle.dump({b"data": _Exploit()}, fh, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar_batch(evil)


# ---- folders -----------------------------------------------------------------------------------------
def test_image_folder_png_and_jpeg(tmp_path) -> None:
    rng = np.random.default_rng(2)
    imgs = _uint8_images(rng, 3, (6, 6, 3))
    (tmp_path / "sub").mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im, mode="RGB").save(tmp_path / ("sub" if i == 2 else ".") / f"img{i}.png")
    X = make_data("image_folder", path=str(tmp_path)).load()
    assert X.shape == (3, 3, 6, 6) and X.dtype == np.float32
    np.testing.assert_allclose(X[0], imgs[0].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)  # PNG is lossless
    np.testing.assert_allclose(X[2], imgs[2].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)  # sub/img2.png sorts third
    grey = make_data("image_folder", path=str(tmp_path), channels=1).load()
    assert grey.shape == (3, 1, 6, 6)
    # a JPEG of a flat grey image reads back close to its value
    Image.fromarray(np.full((6, 6, 3), 200, np.uint8)).save(tmp_path / "z.jpg", quality=95)
    X = make_data("image_folder", path=str(tmp_path), max_images=10).load()
    assert X.shape == (4, 3, 6, 6)
    np.testing.assert_allclose(X[-1], 200 / 127.5 - 1, atol=0.03)  # z.jpg sorts after sub/img2.png


def test_image_folder_resolution_and_errors(tmp_path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((10, 12), 255, np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="mixed sizes"):
        make_data("image_folder", path=str(tmp_path), channels=1).load()
    X = make_data("image_folder", path=str(tmp_path), channels=1, resolution=4).load()
    assert X.shape == (2, 1, 4, 4)
    np.testing.assert_allclose(X[0], -1.0) and np.testing.assert_allclose(X[1], 1.0, atol=1e-6)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match="no PNG or JPEG"):
        make_data("image_folder", path=str(empty)).load()
    with pytest.raises(DataError, match="does not exist"):
        make_data("image_folder", path=str(tmp_path / "missing")).load()
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        make_data("image_folder", path=str(empty)).load()


# ---- .npy arrays --------------------------------------------------------------------------------------
def test_npy_images_layouts_and_ranges(tmp_path) -> None:
    rng = np.random.default_rng(3)
    chw = _uint8_images(rng, 5, (3, 4, 4))
    np.save(tmp_path / "chw.npy", chw)
    np.save(tmp_path / "hwc.npy", chw.transpose(0, 2, 3, 1))
    np.save(tmp_path / "hw.npy", chw[:, 0] / 255.0)
    a = make_data("npy_images", path=str(tmp_path / "chw.npy"), value_range=[0, 255]).load()
    b = make_data("npy_images", path=str(tmp_path / "hwc.npy"), value_range=[0, 255], channels_last=True).load()
    c = make_data("npy_images", path=str(tmp_path / "hw.npy"), value_range=[0, 1]).load()
    np.testing.assert_allclose(a, chw / 127.5 - 1, atol=1e-6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c[:, 0], a[:, 0], atol=1e-6)
    assert c.shape == (5, 1, 4, 4)
    with pytest.raises(DataError, match="channels_last"):
        make_data("npy_images", path=str(tmp_path / "hwc.npy"), value_range=[0, 255]).load()
    with pytest.raises(DataError, match="outside the declared range"):
        make_data("npy_images", path=str(tmp_path / "chw.npy"), value_range=[0, 1]).load()
    with pytest.raises(DataError, match="does not exist"):
        make_data("npy_images", path=str(tmp_path / "none.npy"), value_range=[0, 1]).load()
    np.save(tmp_path / "flat.npy", np.zeros((5, 16)))
    with pytest.raises(DataError, match="expected"):
        make_data("npy_images", path=str(tmp_path / "flat.npy"), value_range=[0, 1]).load()
    with pytest.raises(ConfigError, match="value_range"):
        make_data("npy_images", path=str(tmp_path / "chw.npy"))


# ---- grids ----------------------------------------------------------------------------------------------
def test_make_grid_layout() -> None:
    imgs = np.stack([np.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])  # 3 images 2x3
    g = make_grid(imgs, nrow=2, padding=1, pad_value=1.0)
    assert g.shape == (1 + 2 * 3, 1 + 2 * 4, 1)
    assert g[1, 1, 0] == 0 and g[1, 5, 0] == 128 and g[4, 1, 0] == 255  # tiles in row-major order
    assert g[0, :, 0].min() == 255  # padding is white
    assert g[4, 5, 0] == 255  # the missing 4th tile stays padding
    with pytest.raises(DataError):
        make_grid(np.zeros((2, 2, 4, 4)), nrow=2)


def test_save_sample_grid_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(4)
    imgs = rng.uniform(-1.2, 1.2, size=(6, 3, 5, 5))  # out-of-range values are clipped
    path = save_sample_grid(imgs, tmp_path / "runs" / "grid.png", nrow=3, padding=0, scale=2)
    assert path.exists()
    back = np.asarray(Image.open(path))
    assert back.shape == (2 * 5 * 2, 3 * 5 * 2, 3)
    expected = np.rint((np.clip(imgs[4], -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(back[10:20:2, 10:20:2], expected)  # row 1, column 1, upscaled 2x
    grey = save_sample_grid(imgs[:, :1], tmp_path / "g.png", nrow=6)
    assert Image.open(grey).mode == "L"
