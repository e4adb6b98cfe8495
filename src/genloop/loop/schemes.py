"""How each generation's training set is assembled (the paper's Algorithm 1 and its variants).

λ (``lam``) is the ratio of synthetic to real samples (docs/theory.md): with n real samples a
generation t >= 1 draws ⌊λ·n⌋ synthetic samples from the previous model. λ = ∞ (fully
synthetic) means n samples of the previous model and no real data at all.

Schemes:

``replace`` (Bertrand et al. 2024, the paper)
    D_real ∪ D_synth(t), the synthetic set replaced every generation.
``accumulate`` (Gerstgrasser et al. 2024)
    D_real ∪ D_synth(1) ∪ … ∪ D_synth(t): every synthetic set drawn so far is kept.
``accumulate-subsample`` (Kazdan et al. 2024)
    D_real plus ⌊λ·n⌋ samples drawn without replacement from the pool of all synthetic sets,
    so the training size stays fixed.
``fresh`` (Alemohammad et al. 2023)
    n *new* real samples every generation (the source must be able to draw more) plus the
    fresh synthetic set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from genloop.errors import ConfigError

SchemeName = Literal["replace", "accumulate", "accumulate-subsample", "fresh"]
SCHEMES: tuple[str, ...] = ("replace", "accumulate", "accumulate-subsample", "fresh")


def parse_lambda(value: object) -> float:
    """Parse λ from a number or the words ``inf`` / ``fully-synthetic``; reject negatives/NaN."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("inf", "+inf", ".inf", "infinity", "fully-synthetic", "fully_synthetic"):
            return math.inf
        try:
            value = float(word)
        except ValueError:
            raise ConfigError(
                f"lambda must be a number >= 0, 'inf' or 'fully-synthetic', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"lambda must be a number >= 0 or 'inf', got {value!r}")
    lam = float(value)
    if math.isnan(lam) or lam < 0:
        raise ConfigError(f"lambda must be >= 0 (it is the synthetic-to-real ratio), got {value!r}")
    return lam


def synthetic_count(lam: float | Fraction, n: int) -> int:
    """⌊λ·n⌋ computed exactly (λ as the user wrote it: ``0.29 * 100`` gives 29, not 28); n for λ = ∞.

    A :class:`~fractions.Fraction` λ (an exact λ schedule value) is used as it is.
    """
    if isinstance(lam, Fraction):
        return math.floor(lam * n)
    if math.isinf(lam):
        return n
    return math.floor(Fraction(repr(float(lam))) * n)


def real_count(lam: float, n: int) -> int:
    """Number of real samples in a generation >= 1: n, or 0 when fully synthetic."""
    return 0 if math.isinf(lam) else n


@dataclass(frozen=True)
class Mix:
    """One generation's training set and what it is made of."""

    X: np.ndarray
    n_real: int
    n_synthetic: int


def assemble(
    scheme: str,
    *,
    real: np.ndarray,
    synthetic: np.ndarray,
    pool: list[np.ndarray],
    lam: float,
    rng: np.random.Generator,
) -> Mix:
    """Build the training set of a generation t >= 1.

    ``real`` is the real part (the fixed D_real, or the fresh draw for ``fresh``; empty when
    λ = ∞), ``synthetic`` the set just drawn from the previous model, ``pool`` every
    synthetic set drawn so far *including* ``synthetic`` (used by the accumulate schemes),
    ``rng`` the stream for sub-sampling.
    """
    if scheme in ("replace", "fresh"):
        synth = synthetic
    elif scheme == "accumulate":
        synth = np.concatenate(pool, axis=0) if pool else synthetic
    elif scheme == "accumulate-subsample":
        whole = np.concatenate(pool, axis=0)
        k = synthetic.shape[0]
        synth = whole[rng.choice(whole.shape[0], size=k, replace=False)] if k else whole[:0]
    else:
        raise ConfigError(f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    X = np.concatenate([real, synth], axis=0) if real.shape[0] else synth
    return Mix(X=X, n_real=int(real.shape[0]), n_synthetic=int(synth.shape[0]))
