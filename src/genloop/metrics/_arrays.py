"""Input helpers shared by the metrics: flattening to vectors, subsampling, content hashes."""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from typing import TYPE_CHECKING

import numpy as np

from genloop._validation import check_array
from genloop.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pathlib import Path

    import torch


def as_vectors(X: object, *, name: str, min_samples: int = 1, dtype: type = np.float64) -> np.ndarray:
    """``X`` as an ``(n, d)`` array: ``(n,)`` becomes ``(n, 1)``, ``(n, *shape)`` is flattened.

    Images ``(n, C, H, W)`` therefore become vectors of length ``C*H*W``. Raises
    :class:`~genloop.errors.DataError` (naming ``name``) for non-finite or too few samples.
    """
    arr = check_array(X, name=name, min_samples=min_samples)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_same_dim(generated: np.ndarray, real: np.ndarray) -> None:
    """Raise :class:`DataError` unless both ``(n, d)`` arrays have the same ``d``."""
    if generated.shape[1] != real.shape[1]:
        raise DataError(
            f"generated and real samples have different dimensions: "
            f"{generated.shape[1]} vs {real.shape[1]} (after flattening)"
        )


#: the first bytes of a zip archive (a local file header, or the end record of an empty one)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def load_npz(path: str | os.PathLike[str], *, what: str | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, read with ``allow_pickle=False``.

    A file that is not a zip archive is refused as "not a valid .npz archive" (``np.load``
    would otherwise try it as a pickle and report "pickled data"), a damaged archive or member
    as "cannot be read", an object array as holding pickled objects; all :class:`DataError`
    naming ``what`` (default: the path).
    """
    name = what or str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DataError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if head not in _ZIP_MAGIC:
        raise DataError(f"{name}: not a valid .npz archive (a zip file of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{name}: the .npz holds object arrays (pickled data), which genloop never loads") from None
        raise DataError(f"{name}: cannot be read as .npz: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{name}: cannot be read as .npz (a damaged archive): {exc}") from None


def vector_pair(generated: object, real: object, min_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as ``(n, d)`` float64 vectors (:func:`as_vectors`) of one dimension ``d``."""
    g = as_vectors(generated, name="generated", min_samples=min_samples)
    r = as_vectors(real, name="real", min_samples=min_samples)
    check_same_dim(g, r)
    return g, r


def default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` itself, or a fixed stream (seed 0) when ``None`` so metric values are reproducible."""
    return rng if rng is not None else np.random.default_rng(0)


def subsample(X: np.ndarray, max_n: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_n`` rows of ``X`` drawn uniformly without replacement (``X`` if it fits)."""
    if max_n is None or X.shape[0] <= max_n:
        return X
    idx = rng.choice(X.shape[0], size=max_n, replace=False)
    return X[np.sort(idx)]


def content_hash(X: np.ndarray, *extra: str) -> str:
    """A hex digest of the array's dtype, shape and bytes (and ``extra`` strings).

    Used to key cached statistics of the real data: equal content gives an equal key whatever
    the array object, so a cache never serves statistics of different data.
    """
    arr = np.ascontiguousarray(X)
    h = hashlib.blake2b(digest_size=20)
    h.update(str(arr.dtype.str).encode())
    h.update(str(arr.shape).encode())
    h.update(memoryview(arr).cast("B"))
    for e in extra:
        h.update(b"\x00" + e.encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """genloop's cache folder: ``$GENLOOP_CACHE_DIR`` if set, else ``~/.cache/genloop``.

    Holds cached feature statistics of real data sets (``stats/``), trained feature
    classifiers (``classifier/``) and user-provided weights (``weights/``). Nothing is
    downloaded into it.
    """
    import os
    from pathlib import Path

    env = os.environ.get("GENLOOP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genloop"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; any other string is passed to ``torch.device``."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
