"""Input checks and small linear-algebra helpers shared by the classical vector models."""

from __future__ import annotations

import numpy as np

from genloop._validation import check_array
from genloop.errors import ConfigError, DataError


def check_vectors(X: object, *, name: str = "X", min_samples: int = 1, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 ``(n, d)`` array, or a :class:`DataError` saying why not."""
    arr = check_array(X, name=name, min_samples=min_samples)
    if arr.ndim != 2:
        raise DataError(
            f"{name} must be a 2-D array (n samples, d features), got shape {arr.shape}; "
            "reshape 1-D data to (n, 1)"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name} has {arr.shape[1]} features, the model was fitted on {n_features}")
    return np.asarray(arr, dtype=np.float64)


def require_vector_data(model: str, event_shape: tuple[int, ...]) -> None:
    """A :class:`ConfigError` unless samples are vectors (``event_shape == (d,)``)."""
    if len(event_shape) != 1:
        raise ConfigError(
            f"model {model!r} fits vectors (n, d); the data have samples of shape {event_shape} "
            "(for images use a neural family such as edm or ddpm with a U-Net)"
        )


def check_count(n: object) -> int:
    """``n`` as a non-negative int (a number of samples to draw), or a :class:`ConfigError`."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"number of samples must be a non-negative integer, got {n!r}")
    return int(n)


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix ``L`` with ``L @ L.T == cov``.

    The Cholesky factor when ``cov`` is positive definite; otherwise (a collapsed or
    rank-deficient covariance) the eigen-square-root ``V diag(sqrt(w))`` with negative
    round-off eigenvalues clipped to zero.
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(cov)
        return V * np.sqrt(np.clip(w, 0.0, None))
