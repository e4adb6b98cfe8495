"""A demo plugin package: registers a model family, a data source and a metric by entry point.

Used by tests/test_own_model.py, which puts ``tests/plugins`` on ``sys.path``; the entry points
are declared in ``genloop_demo_plugin-0.1.dist-info/entry_points.txt`` as an installed package
would declare them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genloop import GenerativeModel
from genloop.data import DataSource
from genloop.errors import DataError
from genloop.metrics import Metric


class ShrinkGaussian(GenerativeModel):
    """An isotropic Gaussian whose mean moves a step ``rate`` from the previous generation's
    towards the data mean, μ_{t+1} = μ_t + rate · (x̄_t − μ_t); σ² is the data's mean variance."""

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = rate

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> ShrinkGaussian:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise DataError(f"ShrinkGaussian needs finite vectors (n, d), got shape {X.shape}")
        mu = X.mean(axis=0)
        if isinstance(init, ShrinkGaussian):
            mu = init.mu_ + self.rate * (mu - init.mu_)
        self.mu_, self.sigma2_, self.event_shape_ = mu, np.array(X.var(axis=0).mean()), X.shape[1:]
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        return self.mu_ + np.sqrt(self.sigma2_) * rng.standard_normal((n, self.mu_.size))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"mu": self.mu_, "sigma2": self.sigma2_}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.mu_, self.sigma2_ = np.array(arrays["mu"]), np.array(arrays["sigma2"])
        self.event_shape_ = self.mu_.shape


class Ring(DataSource):
    """Points on a circle of ``radius`` with Gaussian noise ``noise`` (an infinite source)."""

    infinite = True

    def __init__(self, radius: float = 1.0, noise: float = 0.1) -> None:
        self.radius = radius
        self.noise = noise

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        angle = rng.uniform(0, 2 * np.pi, size=n)
        ring = self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return ring + self.noise * rng.standard_normal((n, 2))


class MeanRadius(Metric):
    """The mean distance to the origin of the generated samples, and of the real ones."""

    def __call__(self, generated: np.ndarray, real: np.ndarray, *, model: Any = None,
                 rng: np.random.Generator | None = None) -> dict[str, float]:
        return {"mean_radius": float(np.linalg.norm(generated, axis=1).mean()),
                "mean_radius_real": float(np.linalg.norm(real, axis=1).mean())}
