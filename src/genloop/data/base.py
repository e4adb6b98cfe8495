"""The protocol of real-data sources, and the train / held-out split.

A source is either *infinite* (it can draw fresh i.i.d. samples: toy sets, Gaussians; needed by
the ``fresh`` scheme) or *finite* (a fixed array: digits, MNIST, files). Both return float
arrays of shape ``(n, *event_shape)``; image sources return ``(n, C, H, W)`` scaled to [-1, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from genloop.errors import DataError


class DataSource(ABC):
    """A source of real data."""

    name: ClassVar[str] = ""
    #: True when :meth:`sample` can draw unlimited fresh i.i.d. samples.
    infinite: ClassVar[bool] = False
    #: True when the samples are token codes (exact integers 0 … V-1 stored as floats), which
    #: averaging corrections and vector rewards must not be applied to.
    discrete: ClassVar[bool] = False
    #: True when the samples are vectors of shape (n, d); False for images (n, C, H, W)
    vector: ClassVar[bool] = True

    @abstractmethod
    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples. Infinite sources draw fresh i.i.d. samples; finite sources draw
        ``n`` distinct rows of their data set without replacement (error when too few)."""

    def load(self) -> np.ndarray:
        """The whole data set of a finite source."""
        raise NotImplementedError(f"data source {self.name!r} is infinite; use sample()")

    def __len__(self) -> int:
        if self.infinite:
            raise TypeError(f"data source {self.name!r} is infinite")
        return int(self.load().shape[0])


class FiniteDataSource(DataSource):
    """A fixed data set; subclasses implement :meth:`load` (cached by the subclass)."""

    infinite: ClassVar[bool] = False

    @abstractmethod
    def load(self) -> np.ndarray: ...

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        data = self.load()
        if n > data.shape[0]:
            raise DataError(f"data set {self.name!r} has {data.shape[0]} samples, {n} were requested")
        return data[rng.permutation(data.shape[0])[:n]]


@dataclass(frozen=True)
class RealSplit:
    """The real data of a run: ``train`` (the n samples D_real) and ``heldout`` (evaluation)."""

    train: np.ndarray
    heldout: np.ndarray


def split_real(source: DataSource, n: int, n_heldout: int, *, rng: np.random.Generator) -> RealSplit:
    """Draw the training set D_real (``n`` samples) and a disjoint held-out set.

    Infinite sources draw both independently; finite sources shuffle once and split, so the
    two never share a row.
    """
    if n < 1:
        raise DataError(f"n must be at least 1, got {n}")
    if n_heldout < 0:
        raise DataError(f"n_heldout must be >= 0, got {n_heldout}")
    if source.infinite:
        return RealSplit(source.sample(n, rng=rng), source.sample(n_heldout, rng=rng))
    data = source.load()
    if n + n_heldout > data.shape[0]:
        raise DataError(
            f"data set {source.name!r} has {data.shape[0]} samples; n={n} plus "
            f"n_heldout={n_heldout} do not fit (lower one of them)"
        )
    perm = rng.permutation(data.shape[0])
    return RealSplit(data[perm[:n]], data[perm[n : n + n_heldout]])
