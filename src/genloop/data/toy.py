"""Infinite 2-D toy data sets and Gaussian sources (fresh i.i.d. samples on every call).

Every toy set is a clean shape plus isotropic Gaussian noise of standard deviation ``noise``
(``noise >= 0``, 0 gives the clean shape). Shapes and scales (all float64, shape ``(n, 2)``):

- ``two_moons``: the geometry of ``sklearn.datasets.make_moons`` with angles drawn uniformly:
  the upper half unit circle and the lower one shifted by (1, 0.5); x in [-1, 2],
  y in [-0.5, 1], mean (0.5, 0.25).
- ``eight_gaussians``: 8 equally weighted Gaussians centred on the circle of radius 2 at angles
  2 pi k / 8; ``noise`` is their standard deviation (covariance (2 + noise^2) I, mean 0).
- ``circles``: two concentric circles of radius 1 and 0.5 (``make_circles`` with factor 0.5),
  each point on either with probability 1/2.
- ``checkerboard``: uniform on the 8 "black" unit squares of a 4 x 4 board covering [-2, 2]^2
  (those with floor(x) + floor(y) even), as in FFJORD.
- ``swiss_roll``: the 2-D Swiss roll (t cos t, t sin t) / 5 with t uniform on [1.5 pi, 4.5 pi];
  radius from about 0.94 to 2.83.
- ``pinwheel``: 5 curved arms (radial std 0.3, tangential std 0.1, rate 0.25, scaled by 2), as
  after FFJORD; spans about [-4, 4]^2.

The ``gaussian`` source draws from N(mean, cov) in any dimension (cov defaults to identity).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np

from genloop.data import register_data
from genloop.data.base import DataSource
from genloop.errors import ConfigError


def _check_n(n: object) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"number of samples must be a non-negative integer, got {n!r}")
    return int(n)


class ToyDataSource(DataSource):
    """A 2-D toy distribution: clean shape (``_shape``) plus N(0, noise^2 I) noise."""

    infinite: ClassVar[bool] = True
    event_shape: ClassVar[tuple[int, ...]] = (2,)

    def __init__(self, noise: float) -> None:
        if isinstance(noise, bool) or not np.isfinite(noise) or noise < 0:
            raise ConfigError(f"noise of data set {self.name!r} must be a finite number >= 0, got {noise!r}")
        self.noise = float(noise)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` fresh i.i.d. samples, shape ``(n, 2)``, float64."""
        n = _check_n(n)
        clean = self._shape(n, rng)
        return clean + self.noise * rng.standard_normal((n, 2))

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise={self.noise!r})"


@register_data("two_moons")
class TwoMoons(ToyDataSource):
    """Two interleaving half circles (``make_moons`` geometry, uniform angles), default noise 0.05."""

    def __init__(self, noise: float = 0.05) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = rng.uniform(0.0, np.pi, size=n)
        lower = rng.random(n) < 0.5
        x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
        y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
        return np.stack([x, y], axis=1)


@register_data("eight_gaussians")
class EightGaussians(ToyDataSource):
    """Eight Gaussians on the circle of radius 2 (``noise`` = their std, default 0.1)."""

    radius: ClassVar[float] = 2.0

    def __init__(self, noise: float = 0.1) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        angle = 2.0 * np.pi * rng.integers(0, 8, size=n) / 8.0
        return self.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


@register_data("circles")
class Circles(ToyDataSource):
    """Two concentric circles of radius 1 and 0.5, default noise 0.05."""

    def __init__(self, noise: float = 0.05) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = rng.uniform(0.0, 2.0 * np.pi, size=n)
        r = np.where(rng.random(n) < 0.5, 1.0, 0.5)
        return r[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)


@register_data("checkerboard")
class Checkerboard(ToyDataSource):
    """Uniform on the 8 black squares of a 4 x 4 board on [-2, 2]^2, default noise 0."""

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.uniform(-2.0, 2.0, size=n)
        # y's square row has the parity of x's column: floor(x) + floor(y) is even
        y = rng.random(n) - 2.0 * rng.integers(0, 2, size=n) + np.mod(np.floor(x), 2.0)
        return np.stack([x, y], axis=1)


@register_data("swiss_roll")
class SwissRoll(ToyDataSource):
    """The 2-D Swiss roll (t cos t, t sin t) / 5, t ~ U[1.5 pi, 4.5 pi], default noise 0.05."""

    def __init__(self, noise: float = 0.05) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
        return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0


@register_data("pinwheel")
class Pinwheel(ToyDataSource):
    """Five curved arms (after FFJORD's pinwheel), default extra noise 0 (the arms have their own
    radial std 0.3 and tangential std 0.1 before the scale 2)."""

    radial_std: ClassVar[float] = 0.3
    tangential_std: ClassVar[float] = 0.1
    num_arms: ClassVar[int] = 5
    rate: ClassVar[float] = 0.25

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__(noise)

    def _shape(self, n: int, rng: np.random.Generator) -> np.ndarray:
        features = rng.standard_normal((n, 2)) * np.array([self.radial_std, self.tangential_std])
        features[:, 0] += 1.0
        arm = rng.integers(0, self.num_arms, size=n)
        angle = 2.0 * np.pi * arm / self.num_arms + self.rate * np.exp(features[:, 0])
        c, s = np.cos(angle), np.sin(angle)
        rotated = np.stack([c * features[:, 0] - s * features[:, 1], s * features[:, 0] + c * features[:, 1]], axis=1)
        return 2.0 * rotated


TOY_SETS: dict[str, Callable[..., ToyDataSource]] = {
    "two_moons": TwoMoons,
    "eight_gaussians": EightGaussians,
    "circles": Circles,
    "checkerboard": Checkerboard,
    "swiss_roll": SwissRoll,
    "pinwheel": Pinwheel,
}


@register_data("gaussian")
class GaussianSource(DataSource):
    """Fresh i.i.d. samples of N(mean, cov) in d = len(mean) dimensions, shape ``(n, d)``.

    ``cov`` defaults to the identity; it must be a symmetric positive semi-definite d x d
    matrix (a singular one gives a degenerate Gaussian). This is p_data of the paper's
    Gaussian collapse experiment (Section 2.2).
    """

    infinite: ClassVar[bool] = True

    def __init__(self, mean: list[float], cov: list[list[float]] | None = None) -> None:
        mu = np.asarray(mean, dtype=np.float64)
        if mu.ndim != 1 or mu.size == 0:
            raise ConfigError(f"gaussian data: mean must be a non-empty list of numbers, got {mean!r}")
        if not np.all(np.isfinite(mu)):
            raise ConfigError(f"gaussian data: mean has non-finite entries: {mean!r}")
        d = mu.size
        if cov is None:
            sigma = np.eye(d)
        else:
            try:
                sigma = np.asarray(cov, dtype=np.float64)
            except ValueError as exc:
                raise ConfigError(f"gaussian data: cov must be a {d} x {d} list of lists of numbers ({exc})") from None
            if sigma.shape != (d, d):
                raise ConfigError(
                    f"gaussian data: cov must be {d} x {d} to match mean of length {d}, got shape {sigma.shape}"
                )
            if not np.all(np.isfinite(sigma)):
                raise ConfigError("gaussian data: cov has non-finite entries")
            if not np.allclose(sigma, sigma.T, rtol=1e-10, atol=1e-12):
                raise ConfigError("gaussian data: cov must be symmetric")
            eig = np.linalg.eigvalsh(sigma)
            if eig.min() < -1e-10 * max(1.0, float(np.abs(eig).max())):
                raise ConfigError(
                    f"gaussian data: cov must be positive semi-definite, its smallest eigenvalue is {eig.min():.3g}"
                )
        self.mean = [float(v) for v in mu]
        self.cov = None if cov is None else sigma.tolist()
        self.mean_ = mu
        self.cov_ = 0.5 * (sigma + sigma.T)
        w, V = np.linalg.eigh(self.cov_)
        self._factor = V * np.sqrt(np.clip(w, 0.0, None))  # factor @ factor.T == cov, PSD-safe
        self.event_shape = (d,)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` fresh draws mean + A z, z ~ N(0, I), A A^T = cov; shape ``(n, d)``."""
        n = _check_n(n)
        return self.mean_ + rng.standard_normal((n, self.mean_.size)) @ self._factor.T

    def __repr__(self) -> str:
        return f"GaussianSource(mean={self.mean!r}, cov={self.cov!r})"
