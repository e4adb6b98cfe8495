"""The interface every feature extractor implements (the package's one shared base)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np

FeatureName = Literal["inception", "classifier", "raw"]


class FeatureExtractor(ABC):
    """Maps samples ``(n, *shape)`` to features ``(n, dim)``, in batches."""

    name: ClassVar[str] = ""

    @property
    @abstractmethod
    def id(self) -> str:
        """A string that identifies this extractor exactly (keys caches of real statistics)."""

    @abstractmethod
    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Features of the samples ``X``: an array ``(n, dim)``."""


__all__ = ["FeatureExtractor", "FeatureName"]
