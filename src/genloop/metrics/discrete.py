"""Metrics of discrete data: distances between token laws, support and tail mass, perplexity.

``discrete``
    Compares the law of the generated tokens p (the model's exact law when it exposes one,
    :meth:`~genloop.models.categorical.CategoricalModel.pmf`; else the histogram of the
    generated tokens, all positions pooled) with a reference law q: the true law when the
    metric is given one (``probs``, or a ``data`` source spec whose source has ``true_probs()``),
    else the histogram of the real tokens. Keys: ``tv`` = ½ Σ|p_k − q_k|; ``kl`` = KL(q ‖ p)
    (infinite once a category of the reference is lost); ``kl_reverse`` = KL(p ‖ q);
    ``entropy`` = H(p) in nats; ``support`` = #{k : p_k > 0}; ``tail_mass`` = Σ_{k ∈ tail} p_k
    with the tail the categories whose reference probability is at most the ``tail_quantile``
    quantile of the reference probabilities; ``tail_support`` = tail categories with p_k > 0.
``perplexity``
    exp(−Σ log p̂(x) / #tokens) of the model on the real (held-out) sequences; ``nll_per_token``
    is its logarithm. With a reference entropy per token (``reference``, or a ``data`` source
    spec with ``sequence_entropy()``, such as a Markov chain) ``excess_nll`` is
    nll_per_token − reference ≥ 0 in expectation: KL(true ‖ model) per token.
``ngram_tv``
    ½ Σ |f_gen(w) − f_ref(w)| over k-grams w (``order`` consecutive tokens, all positions), the
    reference the true k-gram law of a ``data`` source with ``ngram_probs(order)`` or the real
    k-gram histogram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from genloop.data.discrete import as_tokens, check_probs, entropy
from genloop.errors import ConfigError, DataError
from genloop.metrics import register_metric
from genloop.metrics.base import Metric

if TYPE_CHECKING:
    from genloop.models.base import GenerativeModel

__all__ = ["total_variation", "kl_divergence", "tail_categories", "Discrete", "Perplexity", "NGramTV"]


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ_k |p_k − q_k| (the laws padded with zeros to a common length)."""
    p, q = _pad(p, q)
    return float(0.5 * np.abs(p - q).sum())


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) = Σ_k p_k log(p_k / q_k) in nats; +inf when p puts mass where q has none."""
    p, q = _pad(p, q)
    nz = p > 0
    if np.any(q[nz] <= 0):
        return float("inf")
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def tail_categories(q: np.ndarray, quantile: float) -> np.ndarray:
    """Indices k with q_k <= the ``quantile`` quantile of the probabilities q (inverted CDF, so
    the set holds at least one category for quantile > 0)."""
    if not 0 < quantile <= 1:
        raise ConfigError(f"tail_quantile must be in (0, 1], got {quantile}")
    threshold = np.quantile(q, quantile, method="inverted_cdf")
    return np.flatnonzero(q <= threshold)


def _pad(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K = max(p.size, q.size)
    return np.pad(np.asarray(p, float), (0, K - p.size)), np.pad(np.asarray(q, float), (0, K - q.size))


def _histogram(X: np.ndarray, K: int | None, name: str) -> np.ndarray:
    tokens = as_tokens(X, name=name).ravel()
    counts = np.bincount(tokens, minlength=K or 0).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _source(spec: dict[str, Any] | None, need: str) -> Any:
    """The data source built from a ``{name: ..., **options}`` spec, checked to provide ``need``."""
    if spec is None:
        return None
    from genloop.data import make_data

    opts = dict(spec)
    name = opts.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"the metric's data spec needs a 'name', got {spec!r}")
    source = make_data(name, **opts)
    if not hasattr(source, need):
        raise ConfigError(f"data source {name!r} has no known {need.replace('_', ' ')}; drop the metric's 'data'")
    return source


@register_metric("discrete")
class Discrete(Metric):
    """TV, KL both ways, entropy, support size and true-tail mass of a token law (see module doc).

    Args:
        probs: the true law q (default: the reference is the real tokens' histogram).
        data: a data-source spec ``{name: ..., **options}`` whose ``true_probs()`` is q.
        tail_quantile: the tail is the categories with q_k at most this quantile of q.
    """

    requires_model = True

    def __init__(self, probs: list[float] | None = None, data: dict[str, Any] | None = None, tail_quantile: float = 0.5) -> None:
        if probs is not None and data is not None:
            raise ConfigError("give the true law as probs or as data, not both")
        self.probs = probs
        self.data = data
        self.tail_quantile = tail_quantile
        tail_categories(np.ones(1), tail_quantile)  # validates the quantile
        source = _source(data, "true_probs")
        self._true = check_probs(probs) if probs is not None else (source.true_probs() if source is not None else None)

    def __call__(
        self, generated: np.ndarray, real: np.ndarray, *, model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        q = self._true if self._true is not None else _histogram(real, None, "real tokens")
        pmf = getattr(model, "pmf", None) if model is not None else None
        p = np.asarray(pmf(), dtype=np.float64) if callable(pmf) else _histogram(generated, q.size, "generated tokens")
        if self._true is not None and p.size > q.size and p[q.size :].sum() > 0:
            raise DataError(f"generated tokens include categories >= {q.size}, outside the true law's support")
        p, q = _pad(p, q)
        tail = tail_categories(q, self.tail_quantile)
        return {
            "tv": total_variation(p, q),
            "kl": kl_divergence(q, p),
            "kl_reverse": kl_divergence(p, q),
            "entropy": entropy(p),
            "support": float(np.count_nonzero(p > 0)),
            "tail_mass": float(p[tail].sum()),
            "tail_support": float(np.count_nonzero(p[tail] > 0)),
        }


@register_metric("perplexity")
class Perplexity(Metric):
    """Per-token perplexity of the model on the real sequences (see module doc).

    Args:
        reference: the true entropy per token in nats (adds ``excess_nll``).
        data: a data-source spec whose ``sequence_entropy()`` / ``seq_len`` give the reference.
    """

    requires_model = True

    def __init__(self, reference: float | None = None, data: dict[str, Any] | None = None) -> None:
        if reference is not None and data is not None:
            raise ConfigError("give the reference entropy as reference or as data, not both")
        self.reference = reference
        self.data = data
        source = _source(data, "sequence_entropy")
        self._reference = reference if source is None else source.sequence_entropy() / source.seq_len

    def __call__(
        self, generated: np.ndarray, real: np.ndarray, *, model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        if model is None or not getattr(model, "has_log_prob", False):
            raise ConfigError("the perplexity metric needs a model with an exact likelihood (log_prob)")
        tokens = as_tokens(real, name="real sequences")
        nll = float(-np.sum(model.log_prob(tokens.astype(np.float64))) / tokens.size)
        out = {"perplexity": float(np.exp(nll)), "nll_per_token": nll}
        if self._reference is not None:
            out["excess_nll"] = nll - float(self._reference)
        return out


@register_metric("ngram_tv")
class NGramTV(Metric):
    """TV between the k-gram laws of the generated and the reference sequences (module doc).

    Args:
        order: k, the number of consecutive tokens (<= the sequence length).
        data: a data-source spec whose ``ngram_probs(order)`` is the true k-gram law.
    """

    def __init__(self, order: int = 2, data: dict[str, Any] | None = None) -> None:
        if order < 1:
            raise ConfigError(f"order must be >= 1, got {order}")
        self.order = order
        self.data = data
        source = _source(data, "ngram_probs")
        self._true = None if source is None else source.ngram_probs(order).ravel()
        self._V = None if source is None else int(source.vocab_size)

    def _freq(self, X: np.ndarray, V: int, name: str) -> np.ndarray:
        tokens = as_tokens(X, name=name, vocab_size=V)
        L = tokens.shape[1]
        if self.order > L:
            raise DataError(f"ngram_tv order {self.order} is larger than the sequences (length {L})")
        code = np.zeros((tokens.shape[0], L - self.order + 1), dtype=np.int64)
        for j in range(self.order):
            code = code * V + tokens[:, j : L - self.order + 1 + j]
        counts = np.bincount(code.ravel(), minlength=V**self.order).astype(np.float64)
        return counts / counts.sum()

    def __call__(
        self, generated: np.ndarray, real: np.ndarray, *, model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        V = self._V or int(max(as_tokens(generated, name="generated tokens").max(), as_tokens(real, name="real tokens").max())) + 1
        ref = self._true if self._true is not None else self._freq(real, V, "real sequences")
        return {f"ngram{self.order}_tv": total_variation(self._freq(generated, V, "generated sequences"), ref)}
