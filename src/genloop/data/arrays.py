"""Finite vector data sets: scikit-learn's digits and user arrays from ``.npy`` / ``.csv`` files.

All return float64 arrays with samples on axis 0. Files are read once, on first use, and
checked: a missing file, non-numeric or ragged content, NaN / infinite values or a wrong number
of dimensions raise :class:`~genloop.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from genloop._validation import check_array
from genloop.data import register_data
from genloop.data.base import FiniteDataSource
from genloop.errors import ConfigError, DataError


@register_data("digits")
class DigitsSource(FiniteDataSource):
    """scikit-learn's ``load_digits``: 1,797 8 x 8 digit images as 64-d float64 vectors in [0, 1]
    (pixel counts 0..16 divided by 16). Shipped with scikit-learn: nothing is downloaded."""

    n_features: ClassVar[int] = 64

    def __init__(self) -> None:
        self._data: np.ndarray | None = None

    def load(self) -> np.ndarray:
        if self._data is None:
            from sklearn.datasets import load_digits

            self._data = np.asarray(load_digits().data, dtype=np.float64) / 16.0
        return self._data

    def __repr__(self) -> str:
        return "DigitsSource()"


class _FileSource(FiniteDataSource):
    """A data set read from one file (``path``), cached after the first :meth:`load`."""

    kind: ClassVar[str] = ""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._data: np.ndarray | None = None
        if not Path(os.path.expanduser(self.path)).is_file():
            raise DataError(f"{self.kind} data file not found: {self.path}")

    def load(self) -> np.ndarray:
        if self._data is None:
            file = Path(os.path.expanduser(self.path))
            if not file.is_file():
                raise DataError(f"{self.kind} data file not found: {self.path}")
            try:
                raw = self._read(file)
            except PermissionError as exc:
                raise DataError(f"{self.kind} file {self.path} cannot be read: {exc.strerror}") from None
            except IsADirectoryError:
                raise DataError(f"{self.kind} data path {self.path} is a folder, not a file") from None
            arr = check_array(raw, name=f"{self.kind} file {self.path}")
            if arr.ndim < 2:
                raise DataError(
                    f"{self.kind} file {self.path} must hold samples on axis 0 and at least 2 dimensions "
                    f"(n, d), got shape {arr.shape}; reshape 1-D data to (n, 1)"
                )
            self._data = np.ascontiguousarray(arr, dtype=np.float64)
        return self._data

    def _read(self, file: Path) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"


@register_data("npy")
class NpySource(_FileSource):
    """A ``.npy`` array (loaded with ``allow_pickle=False``), samples on axis 0: ``(n, d)`` or
    ``(n, *event_shape)``, returned as float64."""

    kind: ClassVar[str] = "npy"

    def _read(self, file: Path) -> np.ndarray:
        try:
            # Memory-mapped first: a header that claims more data than the file holds fails
            # here, at once, instead of allocating what the header claims.
            mapped = np.load(file, allow_pickle=False, mmap_mode="r")
        except PermissionError as exc:
            raise DataError(f"npy file {self.path} cannot be read: {exc.strerror}") from None
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(
                f"npy file {self.path} cannot be read as a numeric array (allow_pickle=False): {exc}"
            ) from None
        if not isinstance(mapped, np.ndarray):
            raise DataError(f"npy file {self.path} holds no array")
        return np.array(mapped)


@register_data("csv")
class CsvSource(_FileSource):
    """A numeric delimited text file, one sample per row: shape ``(n, d)`` float64.

    Args:
        path: the file.
        skip_header: number of leading lines to skip (e.g. 1 for a header row).
        delimiter: the column separator.
    """

    kind: ClassVar[str] = "csv"

    def __init__(self, path: str, skip_header: int = 0, delimiter: str = ",") -> None:
        if skip_header < 0:
            raise ConfigError(f"skip_header must be >= 0, got {skip_header}")
        if not delimiter:
            raise ConfigError("delimiter must be a non-empty string")
        self.skip_header = skip_header
        self.delimiter = delimiter
        super().__init__(path)

    def _read(self, file: Path) -> np.ndarray:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                arr = np.loadtxt(file, delimiter=self.delimiter, skiprows=self.skip_header, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DataError(
                f"csv file {self.path} is not a rectangular numeric table with delimiter {self.delimiter!r} "
                f"after skipping {self.skip_header} line(s): {exc}"
            ) from None
        if arr.size == 0:
            raise DataError(f"csv file {self.path} holds no data rows")
        return arr
