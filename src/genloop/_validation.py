"""Small input checks shared by models, data sources and metrics: arrays (:func:`check_array`)
and constructor options (:func:`check_option`, :func:`check_positive_int`), in one place."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genloop.errors import ConfigError, DataError


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


def check_option(name: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                 finite: bool = False) -> None:
    """The one check of a numeric constructor option of a model or metric.

    Raises :class:`~genloop.errors.ConfigError` naming the option unless ``value >= ge`` (or
    ``value > gt``) and, with ``finite``, ``value`` is a finite number; NaN always fails.
    Messages: ``"<name> must be >= 1, got 0"``, ``"<name> must be a finite number >= 0, got inf"``.
    """
    try:
        ok = (not finite or math.isfinite(value)) and (ge is None or value >= ge) and (gt is None or value > gt)
    except TypeError:
        ok = False
    if not ok:
        bound = f">= {ge}" if ge is not None else f"> {gt}"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}" if finite
                          else f"{name} must be {bound}, got {value}")


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """A :class:`~genloop.errors.ConfigError` unless ``value`` is an integer >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
