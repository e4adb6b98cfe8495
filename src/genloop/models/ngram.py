"""An n-gram model of token sequences: counts of each token after each context of k-1 tokens.

For a sequence x_0 … x_{L-1}, position i is predicted from its context c_i = x_{max(0,i-k+1)} …
x_{i-1} (the k-1 previous tokens, fewer at the start): p̂(x_i = v | c) = (N(c, v) + α) /
(N(c) + α V), with N(c, v) the number of times v follows c in the training sequences, pooled over
positions (context length j counts every position i >= j). A context never seen in training
backs off to its longest seen suffix (the unigram at worst); each prediction is therefore a
normalised law over the next token and the sequence probability is exact.

Order k = 2 (a bigram model) is the maximum-likelihood estimate of a Markov chain's transition
matrix, with the first token drawn from the pooled unigram law (the stationary law for data of a
stationary chain).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from typing_extensions import Self

from genloop._validation import check_option
from genloop.data.discrete import as_tokens
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count
from genloop.models.base import GenerativeModel
from genloop.models.categorical import resolve_vocab


def _codes(windows: np.ndarray, V: int) -> np.ndarray:
    """Base-V integer code of each row of a context array ``(m, j)`` (0 for j = 0)."""
    code = np.zeros(windows.shape[0], dtype=np.int64)
    for col in range(windows.shape[1]):
        code = code * V + windows[:, col]
    return code


@register_model("ngram")
class NGramModel(GenerativeModel):
    """n-gram model of order ``order`` (context of ``order - 1`` tokens) over sequences ``(n, L)``.

    Args:
        order: k >= 1 (1 = i.i.d. unigram, 2 = bigram / Markov chain, ...); must be <= L.
        smoothing: α >= 0 added to every (context, token) count of a seen context.
        vocab_size: V; ``None`` takes it from the warm-start model, else max code + 1.
    """

    has_log_prob = True
    supports_warm_start = False  # closed-form fit: init is not read

    def __init__(self, order: int = 2, smoothing: float = 0.0, vocab_size: int | None = None) -> None:
        if isinstance(order, bool) or int(order) != order or order < 1:
            raise ConfigError(f"order must be an integer >= 1, got {order!r}")
        check_option("smoothing", smoothing, ge=0, finite=True)
        if vocab_size is not None and vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        if vocab_size is not None and float(vocab_size) ** max(order - 1, 1) >= 2.0**62:
            raise ConfigError(f"vocab_size ** (order - 1) is too large for context codes (V={vocab_size}, order={order})")
        self.order = int(order)
        self.smoothing = smoothing
        self.vocab_size = vocab_size

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: sequences ``(L,)`` with L >= order."""
        if len(event_shape) != 1:
            raise ConfigError(f"the n-gram model takes token sequences (n, L), the data have events of shape {event_shape}")
        if self.order > event_shape[0]:
            raise ConfigError(f"n-gram order {self.order} is larger than the sequences (length {event_shape[0]}); use order <= {event_shape[0]}")

    # ---- fit ---------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Count every (context, next token) pair of ``X`` ``(n, L)``; ``rng`` is unused."""
        tokens = as_tokens(X, vocab_size=self.vocab_size)
        L = tokens.shape[1]
        if self.order > L:
            raise DataError(f"n-gram order {self.order} is larger than the sequences (length {L}); use order <= {L}")
        if init is not None and not isinstance(init, NGramModel):
            raise ConfigError(f"warm start of the n-gram model needs an n-gram init, got {type(init).__name__}")
        V = resolve_vocab(tokens, self.vocab_size, init, "vocab_size_")
        if float(V) ** max(self.order - 1, 1) >= 2.0**62:
            raise ConfigError(f"vocab_size ** (order - 1) is too large for context codes (V={V}, order={self.order})")
        tables: dict[str, np.ndarray] = {}
        for j in range(self.order):  # context length j, pooled over positions i >= j
            ctx = np.concatenate([tokens[:, i - j : i] for i in range(j, L)], axis=0)
            nxt = np.concatenate([tokens[:, i] for i in range(j, L)], axis=0)
            code = _codes(ctx, V)
            uniq, inv = np.unique(code, return_inverse=True)
            counts = np.zeros((uniq.size, V), dtype=np.float64)
            np.add.at(counts, (inv, nxt), 1.0)
            tables[f"codes.{j}"] = uniq
            tables[f"counts.{j}"] = counts
        self._set_fitted(tables, V, L)
        return self

    def _set_fitted(self, tables: dict[str, np.ndarray], V: int, L: int) -> None:
        self.tables_ = tables
        self.vocab_size_ = int(V)
        self.seq_len_ = int(L)
        self._cond: list[np.ndarray] = []
        for j in range(self.order):
            w = tables[f"counts.{j}"] + float(self.smoothing)
            self._cond.append(w / w.sum(axis=1, keepdims=True))
        self.event_shape_ = (int(L),)

    # ---- conditional laws --------------------------------------------------------------------
    def conditional(self, context: np.ndarray) -> np.ndarray:
        """p̂(· | context) for each row of ``context`` ``(m, j)``, ``(m, V)``, backing off to the
        longest seen suffix of each context."""
        self._check_fitted()
        m, j = context.shape
        j = min(j, self.order - 1)
        out = np.empty((m, self.vocab_size_))
        todo = np.ones(m, dtype=bool)
        for jj in range(j, -1, -1):
            if not todo.any():
                break
            rows = np.flatnonzero(todo)
            codes_tab = self.tables_[f"codes.{jj}"]
            code = _codes(context[rows, context.shape[1] - jj :], self.vocab_size_)
            pos = np.searchsorted(codes_tab, code)
            pos_c = np.minimum(pos, codes_tab.size - 1)
            found = codes_tab[pos_c] == code
            out[rows[found]] = self._cond[jj][pos_c[found]]
            todo[rows[found]] = False
        return out

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` sequences ``(n, L)`` drawn left to right, float codes."""
        self._check_fitted()
        n = check_count(n)
        out = np.zeros((n, self.seq_len_), dtype=np.int64)
        for i in range(self.seq_len_):
            p = self.conditional(out[:, max(0, i - self.order + 1) : i])
            cdf = np.cumsum(p, axis=1)
            u = rng.random(n)[:, None] * cdf[:, -1:]
            out[:, i] = np.minimum((u >= cdf).sum(axis=1), self.vocab_size_ - 1)
        return out.astype(np.float64)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """log p̂(x_0 … x_{L-1}) = Σ_i log p̂(x_i | c_i) per sequence (−inf for an impossible one)."""
        self._check_fitted()
        tokens = as_tokens(X, vocab_size=self.vocab_size_, hint="; set the model's vocab_size to the size of the data's vocabulary")
        if tokens.shape[1] != self.seq_len_:
            raise DataError(f"sequences have length {tokens.shape[1]}, the model was fitted on length {self.seq_len_}")
        total = np.zeros(tokens.shape[0])
        with np.errstate(divide="ignore"):
            for i in range(self.seq_len_):
                p = self.conditional(tokens[:, max(0, i - self.order + 1) : i])
                total += np.log(p[np.arange(tokens.shape[0]), tokens[:, i]])
        return total

    # ---- state ---------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {k: v.copy() for k, v in self.tables_.items()}, {"vocab_size": self.vocab_size_, "seq_len": self.seq_len_}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        V, L = int(meta["vocab_size"]), int(meta["seq_len"])
        tables: dict[str, np.ndarray] = {}
        for j in range(self.order):
            try:
                codes = np.asarray(arrays[f"codes.{j}"], dtype=np.int64)
                counts = np.asarray(arrays[f"counts.{j}"], dtype=np.float64)
            except KeyError:
                raise DataError(f"bad n-gram state: no table for context length {j} (order {self.order})") from None
            if counts.shape != (codes.size, V):
                raise DataError(f"bad n-gram state: counts.{j} has shape {counts.shape}, expected {(codes.size, V)}")
            tables[f"codes.{j}"], tables[f"counts.{j}"] = codes.copy(), counts.copy()
        self._set_fitted(tables, V, L)
