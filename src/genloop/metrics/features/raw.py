"""The identity feature map: samples flattened to vectors."""

from __future__ import annotations

import numpy as np

from genloop.metrics._arrays import as_vectors
from genloop.metrics.features.base import FeatureExtractor


class RawFeatures(FeatureExtractor):
    """Features = the samples flattened to ``(n, prod(shape))`` float64 vectors."""

    name = "raw"

    @property
    def id(self) -> str:
        return "raw"

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return as_vectors(X, name="samples")
