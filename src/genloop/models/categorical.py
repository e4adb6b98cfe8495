"""A categorical model over K tokens: maximum likelihood counts with optional additive smoothing.

Fitted on n tokens with counts c_k, the model is p̂_k = (c_k + α) / (n + α K) (α = 0 is the
maximum-likelihood estimate). With α = 0 the fully synthetic loop is exactly the Wright–Fisher
model of population genetics: the count of a category in generation t+1 is
Binomial(n, p̂_k(t)), its expected mass is a martingale and a category lost once is lost for
ever (see :mod:`genloop.theory.discrete`). The categorical family is an exponential family
(T(x) = one-hot(x), mean parameter p), so the mixed-loop laws of
:mod:`genloop.theory.expfam` hold for it exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Self

from genloop.data.discrete import as_tokens
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count
from genloop.models.base import GenerativeModel


def resolve_vocab(tokens: np.ndarray, given: int | None, init: GenerativeModel | None, attr: str) -> int:
    """The vocabulary size of a fit: the option, else the warm-start model's, else max code + 1.

    A warm start keeps the previous generation's vocabulary, so a token lost in the loop stays a
    category of mass 0 rather than silently shrinking the alphabet.
    """
    if given is not None:
        return int(given)
    inherited = getattr(init, attr, None) if init is not None else None
    found = int(tokens.max()) + 1 if tokens.size else 1
    return max(int(inherited), found) if inherited is not None else found


@register_model("categorical")
class CategoricalModel(GenerativeModel):
    """Categorical law over ``n_categories`` tokens fitted by (smoothed) counts; events ``(1,)``.

    Args:
        n_categories: K, the number of categories; ``None`` takes it from the warm-start model,
            else from the largest code seen + 1.
        smoothing: α >= 0 added to every count (Laplace smoothing when 1); 0 is the MLE.
    """

    has_log_prob = True
    supports_warm_start = False  # closed-form fit: init is not read

    probs_: np.ndarray
    counts_: np.ndarray

    def __init__(self, n_categories: int | None = None, smoothing: float = 0.0) -> None:
        if n_categories is not None and n_categories < 1:
            raise ConfigError(f"n_categories must be >= 1, got {n_categories}")
        if not np.isfinite(smoothing) or smoothing < 0:
            raise ConfigError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
        self.n_categories = n_categories
        self.smoothing = smoothing

    def _tokens(self, X: object, vocab: int | None, hint: str = "") -> np.ndarray:
        tokens = as_tokens(X, vocab_size=vocab, hint=hint)
        if tokens.shape[1] != 1:
            raise DataError(
                f"the categorical model takes single tokens (n, 1), got sequences of length {tokens.shape[1]}; "
                "use the 'ngram' or 'transformer-lm' model for sequences"
            )
        return tokens[:, 0]

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: events must be single tokens ``(1,)``."""
        if tuple(event_shape) != (1,):
            raise ConfigError(
                f"the categorical model takes single tokens (n, 1), the data have events of shape {event_shape}; "
                "use the 'ngram' or 'transformer-lm' model for sequences"
            )

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """p̂_k = (c_k + α)/(n + αK) from the tokens ``X`` ``(n, 1)``; ``rng`` is unused (closed form)."""
        tokens = self._tokens(X, self.n_categories)
        if init is not None and not isinstance(init, CategoricalModel):
            raise ConfigError(f"warm start of the categorical model needs a categorical init, got {type(init).__name__}")
        K = resolve_vocab(tokens[:, None], self.n_categories, init, "n_categories_")
        counts = np.bincount(tokens, minlength=K).astype(np.float64)
        self._set_fitted(counts)
        return self

    def _set_fitted(self, counts: np.ndarray) -> None:
        w = counts + float(self.smoothing)
        total = w.sum()
        if total <= 0:
            raise DataError("cannot fit a categorical law to zero tokens without smoothing")
        self.counts_ = counts
        self.probs_ = w / total
        self.n_categories_ = int(counts.size)
        self._cdf = np.cumsum(self.probs_)
        self.event_shape_ = (1,)

    def pmf(self) -> np.ndarray:
        """The fitted law p̂ (a copy), length K."""
        self._check_fitted()
        return self.probs_.copy()

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. tokens of p̂, float codes ``(n, 1)`` (inverse-CDF of uniforms)."""
        self._check_fitted()
        n = check_count(n)
        idx = np.searchsorted(self._cdf, rng.random(n) * self._cdf[-1], side="right")
        return np.minimum(idx, self.n_categories_ - 1).astype(np.float64)[:, None]

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """log p̂(x) per row (−inf for a category of mass 0); a code >= K is an unknown token."""
        self._check_fitted()
        tokens = self._tokens(X, self.n_categories_, hint="; set n_categories to the size of the data's vocabulary")
        with np.errstate(divide="ignore"):
            return np.log(self.probs_[tokens])

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"counts": self.counts_.copy()}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        counts = np.asarray(arrays["counts"], dtype=np.float64)
        if counts.ndim != 1 or counts.size < 1:
            raise DataError(f"bad categorical state: counts shape {counts.shape}")
        self._set_fitted(counts.copy())
