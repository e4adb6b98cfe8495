"""Discrete data: integer tokens, Markov-chain sequences, text tokenised by characters.

Token arrays follow the loop's array contract (the loop converts every training set to a float
array): a source returns float64 arrays whose entries are exact integer codes 0 … V-1, shape
``(n, 1)`` for single tokens and ``(n, L)`` for sequences of length L. Models and metrics of
discrete data convert back with :func:`as_tokens`, which rejects non-integer or negative codes.

* ``categorical``: i.i.d. tokens from a Zipf law p_k ∝ (k+1)^(-s) or a user-given law (the
  true law is known: :meth:`CategoricalSource.true_probs`).
* ``markov``: sequences of a Markov chain with a known transition matrix, started from its
  stationary law, so the true per-token entropy is known exactly
  (:meth:`MarkovSource.sequence_entropy`).
* ``text``: any UTF-8 text file cut into windows of ``seq_len`` characters, each character
  mapped to its index in a character vocabulary (a tokeniser library is not needed for
  character-level models; see docs/discrete.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genloop.data import register_data
from genloop.data.base import DataSource, FiniteDataSource
from genloop.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "as_tokens",
    "zipf_probs",
    "stationary_distribution",
    "entropy",
    "entropy_rate",
    "CategoricalSource",
    "MarkovSource",
    "TextSource",
]


def as_tokens(
    X: object, *, name: str = "X", vocab_size: int | None = None, min_samples: int = 1, hint: str = ""
) -> np.ndarray:
    """``X`` as an int64 array of token codes ``(n, L)``, or a :class:`DataError` saying why not.

    Codes must be exact non-negative integers (stored as floats or ints); with ``vocab_size``
    every code must be < ``vocab_size`` (an *unknown token* otherwise).
    """
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"{name} must hold integer token codes, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of token codes (n, L), got shape {arr.shape}; reshape single tokens to (n, 1)")
    if arr.shape[0] < min_samples:
        raise DataError(f"{name} needs at least {min_samples} sequences, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise DataError(f"{name} has sequences of length 0")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{name} contains NaN or infinite token codes")
        if np.any(arr != np.round(arr)):
            raise DataError(f"{name} must hold integer token codes, found a non-integer value")
    tokens = arr.astype(np.int64)
    if tokens.size and tokens.min() < 0:
        raise DataError(f"{name} contains a negative token code ({int(tokens.min())})")
    if vocab_size is not None and tokens.size and tokens.max() >= vocab_size:
        raise DataError(
            f"{name} contains unknown token {int(tokens.max())}: the vocabulary has {vocab_size} tokens (0 … {vocab_size - 1}){hint}"
        )
    return tokens


def check_probs(probs: object, *, name: str = "probs") -> np.ndarray:
    """A probability vector (finite, >= 0, sums to 1 within 1e-9; renormalised exactly)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size < 1:
        raise ConfigError(f"{name} must be a non-empty list of probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ConfigError(f"{name} must be finite and non-negative")
    total = float(p.sum())
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(f"{name} must sum to 1, sums to {total:.12g}")
    return p / total


def zipf_probs(n_categories: int, exponent: float) -> np.ndarray:
    """The truncated Zipf law p_k = (k+1)^(-s) / Σ_j (j+1)^(-s), k = 0 … K-1."""
    if n_categories < 1:
        raise ConfigError(f"n_categories must be >= 1, got {n_categories}")
    if not np.isfinite(exponent) or exponent < 0:
        raise ConfigError(f"exponent must be a finite number >= 0, got {exponent}")
    w = np.arange(1, n_categories + 1, dtype=np.float64) ** (-float(exponent))
    return w / w.sum()


def entropy(p: np.ndarray) -> float:
    """Shannon entropy H(p) = -Σ p_k log p_k in nats (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-np.sum(nz * np.log(nz)))


def stationary_distribution(P: np.ndarray) -> np.ndarray:
    """The stationary law π = π P of a transition matrix (the left eigenvector of eigenvalue 1)."""
    P = np.asarray(P, dtype=np.float64)
    w, V = np.linalg.eig(P.T)
    k = int(np.argmin(np.abs(w - 1.0)))
    pi = np.abs(np.real(V[:, k]))
    return pi / pi.sum()


def entropy_rate(P: np.ndarray, pi: np.ndarray | None = None) -> float:
    """Entropy rate h = -Σ_i π_i Σ_j P_ij log P_ij of a stationary Markov chain (nats/token)."""
    P = np.asarray(P, dtype=np.float64)
    pi = stationary_distribution(P) if pi is None else np.asarray(pi, dtype=np.float64)
    return float(sum(pi[i] * entropy(P[i]) for i in range(P.shape[0])))


def _check_seq_len(seq_len: int) -> int:
    if isinstance(seq_len, bool) or int(seq_len) != seq_len or seq_len < 1:
        raise ConfigError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    return int(seq_len)


@register_data("categorical")
class CategoricalSource(DataSource):
    """I.i.d. tokens from a categorical law, shape ``(n, 1)``.

    ``law="zipf"``: p_k ∝ (k+1)^(-exponent) over ``n_categories`` categories (heavy tail of
    rare categories, the setting where tails vanish, Shumailov et al. 2024). ``law="given"``:
    the probabilities ``probs``.
    """

    discrete = True
    infinite = True

    def __init__(
        self, law: str = "zipf", n_categories: int = 50, exponent: float = 1.1, probs: list[float] | None = None
    ) -> None:
        if law not in ("zipf", "given"):
            raise ConfigError(f"law must be 'zipf' or 'given', got {law!r}")
        if law == "given" and probs is None:
            raise ConfigError("law 'given' needs probs (a list of probabilities)")
        if law == "zipf" and probs is not None:
            raise ConfigError("probs is only used with law 'given'")
        self.law = law
        self.n_categories = n_categories
        self.exponent = exponent
        self.probs = probs
        self._p = zipf_probs(n_categories, exponent) if law == "zipf" else check_probs(probs)

    def true_probs(self) -> np.ndarray:
        """The true law p (a copy)."""
        return self._p.copy()

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. draws of the law, as float codes ``(n, 1)``."""
        return rng.choice(self._p.size, size=(int(n), 1), p=self._p).astype(np.float64)


@register_data("markov")
class MarkovSource(DataSource):
    """Sequences ``(n, seq_len)`` of a stationary Markov chain with a known transition matrix.

    ``transition`` gives the matrix P (rows sum to 1); otherwise P is drawn once with rows
    ~ Dirichlet(``concentration``) over ``n_states`` states from ``matrix_seed`` (a fixed,
    reproducible chain: part of the source's definition, not of a run's randomness). Each
    sequence starts from the stationary law π, so every position is distributed as π and the
    entropy of a sequence is H(π) + (L-1) h with h the entropy rate.
    """

    discrete = True
    infinite = True

    def __init__(
        self,
        seq_len: int = 32,
        n_states: int = 4,
        transition: list[list[float]] | None = None,
        concentration: float = 0.5,
        matrix_seed: int = 0,
    ) -> None:
        self.seq_len = _check_seq_len(seq_len)
        self.n_states = n_states
        self.transition = transition
        self.concentration = concentration
        self.matrix_seed = matrix_seed
        if transition is not None:
            P = np.asarray(transition, dtype=np.float64)
            if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 1:
                raise ConfigError(f"transition must be a square matrix, got shape {P.shape}")
            for i, row in enumerate(P):
                check_probs(row, name=f"transition row {i}")
            self._P = P / P.sum(axis=1, keepdims=True)
        else:
            if n_states < 1:
                raise ConfigError(f"n_states must be >= 1, got {n_states}")
            if not concentration > 0:
                raise ConfigError(f"concentration must be > 0, got {concentration}")
            self._P = np.random.default_rng(matrix_seed).dirichlet(np.full(n_states, float(concentration)), size=n_states)
        self._pi = stationary_distribution(self._P)

    @property
    def vocab_size(self) -> int:
        return int(self._P.shape[0])

    def transition_matrix(self) -> np.ndarray:
        """The transition matrix P (a copy)."""
        return self._P.copy()

    def true_probs(self) -> np.ndarray:
        """The stationary law π: the law of every position (a copy)."""
        return self._pi.copy()

    def entropy_rate(self) -> float:
        """h = -Σ_i π_i Σ_j P_ij log P_ij (nats per token)."""
        return entropy_rate(self._P, self._pi)

    def sequence_entropy(self, length: int | None = None) -> float:
        """H(x_1 … x_L) = H(π) + (L-1) h in nats: the least expected negative log-likelihood of a
        sequence, reached only by the true chain (per token: divide by L)."""
        L = self.seq_len if length is None else int(length)
        return entropy(self._pi) + (L - 1) * self.entropy_rate()

    def ngram_probs(self, order: int) -> np.ndarray:
        """The true law of ``order`` consecutive tokens, an array of shape ``(V,) * order``:
        π_{x_1} P_{x_1 x_2} ⋯ P_{x_{k-1} x_k} (the same at every position, the chain being stationary)."""
        if order < 1 or order > self.seq_len:
            raise ConfigError(f"order must be in 1 … seq_len={self.seq_len}, got {order}")
        out = self._pi.copy()
        for _ in range(order - 1):
            out = out[..., None] * self._P.reshape((1,) * (out.ndim - 1) + self._P.shape)
        return out

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """The true log-probability of each sequence, ``(n,)``."""
        tokens = as_tokens(X, vocab_size=self.vocab_size)
        with np.errstate(divide="ignore"):
            logP = np.log(self._P)
            out = np.log(self._pi)[tokens[:, 0]]
        return out + logP[tokens[:, :-1], tokens[:, 1:]].sum(axis=1)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` sequences, float codes ``(n, seq_len)``, drawn position by position."""
        n = int(n)
        out = np.empty((n, self.seq_len), dtype=np.int64)
        if n == 0:
            return out.astype(np.float64)
        cdf = np.cumsum(self._P, axis=1)
        out[:, 0] = rng.choice(self._pi.size, size=n, p=self._pi)
        for i in range(1, self.seq_len):
            u = rng.random(n)
            nxt = (u[:, None] > cdf[out[:, i - 1]]).sum(axis=1)
            out[:, i] = np.minimum(nxt, self._P.shape[0] - 1)
        return out.astype(np.float64)


@register_data("text")
class TextSource(FiniteDataSource):
    """A UTF-8 text file cut into windows of ``seq_len`` characters, ``(n, seq_len)`` codes.

    Windows start every ``stride`` characters (default ``seq_len``: non-overlapping). The
    vocabulary is ``vocab`` (a string of characters, code = position in it) or, by default, the
    sorted distinct characters of the file. An empty file, a file shorter than one window, or a
    character outside a given ``vocab`` (an unknown token) is a :class:`DataError`.
    """

    discrete = True

    def __init__(self, path: str, seq_len: int = 64, stride: int | None = None, vocab: str | None = None) -> None:
        self.path = path
        self.seq_len = _check_seq_len(seq_len)
        if stride is not None and (int(stride) != stride or stride < 1):
            raise ConfigError(f"stride must be an integer >= 1, got {stride!r}")
        self.stride = stride
        if vocab is not None and (len(vocab) == 0 or len(set(vocab)) != len(vocab)):
            raise ConfigError("vocab must be a non-empty string of distinct characters")
        self.vocab = vocab
        self._data: np.ndarray | None = None
        self._chars: str | None = None

    def _read(self) -> str:
        p = Path(self.path).expanduser()
        if not p.is_file():
            raise DataError(f"text file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"text file {p} is not UTF-8: {exc}") from None
        if not text:
            raise DataError(f"text file {p} is empty")
        return text

    @property
    def chars(self) -> str:
        """The vocabulary: character of each code."""
        if self._chars is None:
            self._chars = self.vocab if self.vocab is not None else "".join(sorted(set(self._read())))
        return self._chars

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Character codes of ``text`` (int64); an unknown character is a :class:`DataError`."""
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as exc:
            raise DataError(f"unknown token {exc.args[0]!r} in {self.path}: not in the vocabulary {self.chars!r}") from None

    def decode(self, codes: np.ndarray) -> list[str]:
        """The text of each row of ``codes`` ``(n, L)``."""
        tokens = as_tokens(np.atleast_2d(codes), vocab_size=self.vocab_size)
        return ["".join(self.chars[int(c)] for c in row) for row in tokens]

    def load(self) -> np.ndarray:
        if self._data is None:
            codes = self.encode(self._read())
            L, stride = self.seq_len, self.stride or self.seq_len
            if codes.size < L:
                raise DataError(f"text file {self.path} has {codes.size} characters, fewer than one window of seq_len={L}")
            starts = np.arange(0, codes.size - L + 1, stride)
            self._data = codes[starts[:, None] + np.arange(L)[None, :]].astype(np.float64)
            log.info("text %s: %d windows of %d characters, vocabulary of %d", self.path, len(starts), L, self.vocab_size)
        return self._data
