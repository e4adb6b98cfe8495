"""Kernel density estimation (scikit-learn's ``KernelDensity``) behind genloop's contract.

p_h(x) = (1/n) sum_i K_h(x - x_i) with an isotropic radial kernel K_h of bandwidth h. The
model is nonparametric: "fitting" stores the training points, so warm start has no meaning and
fine-tuning equals fitting from scratch (``init`` is accepted, never touched, and ignored).

Sampling is written here rather than taken from ``KernelDensity.sample`` so that it uses the
given ``rng`` (scikit-learn uses its own ``random_state``) and so that every kernel can be
sampled (scikit-learn samples only the gaussian and tophat kernels). A draw is a training point
picked uniformly plus kernel noise h * r * u, where u is uniform on the unit sphere and the
radius r has the density proportional to r^(d-1) k(r) of the kernel profile k(r), r = |x| / h:

- gaussian: profile exp(-r^2 / 2); the noise is h * N(0, I) directly;
- tophat: 1 for r < 1; radius U^(1/d);
- epanechnikov: 1 - r^2 for r < 1; radius sqrt(Beta(d/2, 2));
- linear: 1 - r for r < 1; radius Beta(d, 2);
- exponential: exp(-r); radius Gamma(d, 1);
- cosine: cos(pi r / 2) for r < 1; radius U^(1/d) accepted with probability cos(pi r / 2).

These are exactly the kernels whose density ``KernelDensity.score_samples`` evaluates.
One exception: scikit-learn's normalising constant of the cosine kernel is wrong in even
dimensions (scikit-learn 1.9.1: the 2-D density integrates to 0.363, and it is NaN for even
d >= 4), so the cosine density is evaluated here, by chunked exact distances, with the exact
normaliser Z_d = S_(d-1) int_0^1 r^(d-1) cos(pi r / 2) dr, S_(d-1) = 2 pi^(d/2) / Gamma(d/2).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import integrate, spatial, special
from sklearn.neighbors import KernelDensity
from typing_extensions import Self

from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count, check_vectors, require_vector_data
from genloop.models.base import GenerativeModel

Kernel = Literal["gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine"]
_KERNELS = ("gaussian", "tophat", "epanechnikov", "exponential", "linear", "cosine")
_RULES = ("scott", "silverman")


def bandwidth_rule(X: np.ndarray, rule: Literal["scott", "silverman"]) -> float:
    """Rule-of-thumb bandwidth h = factor(n, d) * sigma_hat for data ``X`` (n, d).

    factor is Scott's n^(-1/(d+4)) or Silverman's (n (d+2) / 4)^(-1/(d+4)) (the factors
    scikit-learn uses), and sigma_hat = sqrt(mean_j Var(X_j)) (ddof = 1) is the root mean
    per-coordinate variance of the data. Data are *not* standardised: the kernel stays
    isotropic and the bandwidth scales with the data, so fitting c * X gives c * h.
    """
    n, d = X.shape
    if n < 2:
        raise DataError(f"the {rule!r} bandwidth rule needs at least 2 samples, got {n}; give a float bandwidth")
    if rule == "scott":
        factor = n ** (-1.0 / (d + 4))
    elif rule == "silverman":
        factor = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))
    else:
        raise ConfigError(f"unknown bandwidth rule {rule!r}; use 'scott', 'silverman' or a positive number")
    sigma_hat = float(np.sqrt(np.mean(np.var(X, axis=0, ddof=1))))
    if not sigma_hat > 0:
        raise DataError(f"the data have zero variance, so the {rule!r} bandwidth is 0; give a float bandwidth")
    return float(factor * sigma_hat)


@register_model("kde")
class KDEModel(GenerativeModel):
    """Kernel density estimate p_h(x) = (1/n) sum_i K_h(x - x_i) with an isotropic kernel.

    Args:
        bandwidth: a positive number (h, in data units), or ``"scott"`` / ``"silverman"`` for
            the rule of thumb of :func:`bandwidth_rule` (scaled by the data's spread; data are
            not standardised).
        kernel: the kernel profile (see the module docstring); all can be evaluated and sampled.

    Fitted attributes: ``X_train_`` (n, d) and ``bandwidth_`` (the resolved h).
    """

    has_log_prob = True
    supports_warm_start = False  # closed-form fit: init is not read

    X_train_: np.ndarray
    bandwidth_: float

    def __init__(
        self,
        bandwidth: float | Literal["scott", "silverman"] = "scott",
        kernel: Kernel = "gaussian",
    ) -> None:
        if isinstance(bandwidth, str):
            if bandwidth not in _RULES:
                raise ConfigError(f"bandwidth must be a positive number, 'scott' or 'silverman'; got {bandwidth!r}")
        elif isinstance(bandwidth, bool) or not np.isfinite(bandwidth) or bandwidth <= 0:
            raise ConfigError(f"bandwidth must be a positive number, 'scott' or 'silverman'; got {bandwidth!r}")
        if kernel not in _KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(_KERNELS)}; got {kernel!r}")
        self.bandwidth = bandwidth
        self.kernel = kernel

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        require_vector_data(self.name, event_shape)

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Store the training points ``X`` (n, d) and resolve the bandwidth. ``rng`` and
        ``init`` are unused (nonparametric; fine-tuning equals fitting from scratch)."""
        X = check_vectors(X, name="X")
        h = bandwidth_rule(X, self.bandwidth) if isinstance(self.bandwidth, str) else float(self.bandwidth)
        self._set_fitted(X.copy(), h)
        return self

    def _set_fitted(self, X: np.ndarray, h: float) -> None:
        self.X_train_ = X
        self.bandwidth_ = h
        # rtol = atol = 0 (the defaults) make score_samples exact, not tree-approximated.
        self._estimator = KernelDensity(bandwidth=h, kernel=self.kernel).fit(X)
        self.event_shape_ = (int(X.shape[1]),)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws x_I + h * noise with I uniform over the training rows (module docstring)."""
        self._check_fitted()
        n = check_count(n)
        d = self.event_shape_[0]
        rows = rng.integers(0, self.X_train_.shape[0], size=n)
        return self.X_train_[rows] + self.bandwidth_ * _kernel_noise(self.kernel, n, d, rng)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log p_h(x) of each row (``KernelDensity.score_samples``, normalised kernel)."""
        self._check_fitted()
        X = check_vectors(X, name="X", n_features=self.event_shape_[0])
        if self.kernel == "cosine":
            return _cosine_log_density(X, self.X_train_, self.bandwidth_)
        return self._estimator.score_samples(X)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"X_train": self.X_train_.copy()}, {"bandwidth": float(self.bandwidth_)}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        X = check_vectors(arrays["X_train"], name="KDE state X_train")
        h = float(meta["bandwidth"])
        if not h > 0:
            raise DataError(f"bad KDE state: bandwidth {h}")
        self._set_fitted(X.copy(), h)


def cosine_log_norm(d: int) -> float:
    """log Z_d of the unit-bandwidth cosine kernel cos(pi r / 2) 1[r < 1] in ``d`` dimensions:
    Z_d = S_(d-1) int_0^1 r^(d-1) cos(pi r / 2) dr with S_(d-1) = 2 pi^(d/2) / Gamma(d/2)."""
    radial, _ = integrate.quad(lambda r: r ** (d - 1) * np.cos(0.5 * np.pi * r), 0.0, 1.0, epsabs=0.0, epsrel=1e-12)
    log_surface = np.log(2.0) + 0.5 * d * np.log(np.pi) - special.gammaln(0.5 * d)
    return float(log_surface + np.log(radial))


def _cosine_log_density(X: np.ndarray, X_train: np.ndarray, h: float, chunk_elems: int = 2**22) -> np.ndarray:
    """log (1/n) sum_i h^-d Z_d^-1 cos(pi |x - x_i| / 2h) 1[|x - x_i| < h] for each row of X."""
    n, d = X_train.shape
    log_const = -np.log(n) - cosine_log_norm(d) - d * np.log(h)
    out = np.empty(X.shape[0])
    step = max(1, chunk_elems // n)
    for start in range(0, X.shape[0], step):
        dist = spatial.distance.cdist(X[start : start + step], X_train)
        total = np.where(dist < h, np.cos(0.5 * np.pi * np.minimum(dist / h, 1.0)), 0.0).sum(axis=1)
        with np.errstate(divide="ignore"):
            out[start : start + step] = np.log(total) + log_const
    return out


def _kernel_noise(kernel: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws (n, d) from the unit-bandwidth kernel density ``K_1`` (module docstring)."""
    if kernel == "gaussian":
        return rng.standard_normal((n, d))
    direction = rng.standard_normal((n, d))
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    direction /= np.where(norms > 0, norms, 1.0)
    if kernel == "tophat":
        radius = rng.random(n) ** (1.0 / d)
    elif kernel == "epanechnikov":
        radius = np.sqrt(rng.beta(d / 2.0, 2.0, size=n))
    elif kernel == "linear":
        radius = rng.beta(d, 2.0, size=n)
    elif kernel == "exponential":
        radius = rng.gamma(d, 1.0, size=n)
    elif kernel == "cosine":
        radius = _cosine_radius(n, d, rng)
    else:
        raise ConfigError(f"cannot sample kernel {kernel!r}; known kernels: {', '.join(_KERNELS)}")
    return direction * radius[:, None]


def _cosine_radius(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """Radii with density proportional to r^(d-1) cos(pi r / 2) on [0, 1], by rejection from
    r^(d-1) (proposal U^(1/d), acceptance cos(pi r / 2))."""
    out = np.empty(n)
    filled = 0
    accept_rate = 0.5  # refined from each batch; keeps the number of rounds small in high d
    while filled < n:
        need = n - filled
        batch = int(need / max(accept_rate, 1e-3) * 1.2) + 16
        r = rng.random(batch) ** (1.0 / d)
        accepted = r[rng.random(batch) < np.cos(0.5 * np.pi * r)]
        accept_rate = max(accepted.shape[0], 1) / batch
        keep = accepted[:need]
        out[filled : filled + keep.shape[0]] = keep
        filled += keep.shape[0]
    return out
