"""Small input checks shared by models, data sources and metrics."""

from __future__ import annotations

import numpy as np

from genloop.errors import DataError


def check_array(X: object, *, name: str = "X", min_samples: int = 1, ndim: int | None = None) -> np.ndarray:
    """Return ``X`` as a float array after checking it is finite and has enough samples.

    Raises :class:`~genloop.errors.DataError` naming ``name`` and the problem otherwise.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # noqa: BLE001 - anything unconvertible is bad input
        raise DataError(f"{name} cannot be converted to an array: {exc}") from exc
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name} is complex-valued (dtype {arr.dtype}); genloop models real data: "
                        "split real and imaginary parts into separate features")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim == 0:
        raise DataError(f"{name} must have at least one dimension (samples first), got a scalar")
    if ndim is not None and arr.ndim != ndim:
        raise DataError(f"{name} must have {ndim} dimensions (samples first), got shape {arr.shape}")
    if arr.shape[0] < min_samples:
        raise DataError(f"{name} needs at least {min_samples} samples, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr
