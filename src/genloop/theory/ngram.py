"""KL drift of a bigram language model retrained on its own samples from a Markov source.

Setting (genloop's ``markov`` data and ``ngram`` model with ``order: 2``, no smoothing): the
real data are n sequences x_0 … x_{L−1} of a stationary chain with transition matrix P and
stationary law π; the bigram model fits the first-token law q̂ (the unigram pooled over all
positions) and the transition rows P̂_i (the successor frequencies of state i, pooled over
positions). Its KL per token to the true sequence law is

    KL_t = [KL(π ‖ q̂_t) + (L−1) Σ_i π_i KL(P_i ‖ P̂_{t,i})] / L,                         (1)

which is what the ``perplexity`` metric's ``excess_nll`` estimates on held-out real text.

**Generation 0.** The successors of the visits to state i are i.i.d. P_i (whatever the path),
so P̂_{0,i} is a frequency over N_i ≈ n(L−1)π_i draws: Cov(P̂_{0,i}) ≈ (diag P_i − P_i P_iᵀ)/N_i
and, to second order, E KL(P_i ‖ P̂_{0,i}) ≈ ½ Σ_j Var(P̂_{ij})/P_ij = (K_i − 1)/(2N_i), K_i the
number of possible successors of i. The pooled unigram is an average of L correlated
positions: n·Cov(q̂_0) = L⁻² Σ_{a,b} Cov(e_{x_a}, e_{x_b}) with Cov(e_{x_a}, e_{x_b}) =
diag(π) P^{b−a} − ππᵀ for a ≤ b (:func:`unigram_covariance`), and E KL(π ‖ q̂_0) ≈
½ Σ_j Var(q̂_j)/π_j. Hence

    E[KL_0] ≈ [½ Σ_j Var(q̂_{0,j})/π_j + Σ_i (K_i − 1)/(2n)] / L.                      (2)

**Generation t.** Every fitted quantity is a pooled frequency, so its error follows the
pooled-frequency recursion of :mod:`genloop.theory.pooled`: Cov(θ̂_t − θ) = c_t Cov(θ̂_0 − θ)
to first order, and (1) being quadratic in the error,

    E[KL_t] ≈ c_t E[KL_0],                                                               (3)

* replace, fully synthetic: c_t = t + 1 — the KL grows (t+1)-fold (a random walk of the rows);
* replace with m = ⌊λn⌋ synthetic sequences: c_t = 1 + s(1 − a^{2t})/(1+2s), s = m/n,
  a = m/(n+m) — it settles at 1 + s/(1+2s) times generation 0's (4/3 at λ = 1);
* accumulate: c_t → Σ 1/k² (π²/6 at λ = 1); fully synthetic: 1 + Σ_{k≤t} 1/k²;
* fresh: c_t → (1+s)/(1+2s).

Validity: (2)–(3) are the delta method. They need every possible transition to be seen, i.e.
counts N_i P_ij ≫ c_t. In the fully synthetic loop a transition lost is lost for ever
(Wright–Fisher, :mod:`genloop.theory.discrete`): from then on the KL and the perplexity are
infinite. :func:`expected_lost_transitions` gives the expected number of transitions lost by
generation t, treating each row as a Wright–Fisher chain with N_i = round(n(L−1)π_i) draws.
"""

from __future__ import annotations

import math

import numpy as np

from genloop.errors import ConfigError
from genloop.theory.discrete import loss_probability
from genloop.theory.pooled import pooled_variance_factor

__all__ = [
    "bigram_kl_drift",
    "bigram_kl_generation0",
    "expected_lost_transitions",
    "sequence_kl_per_token",
    "stationary_law",
    "unigram_covariance",
]


def _check_chain(P: object) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or np.any(P < 0) or not np.allclose(P.sum(axis=1), 1.0):
        raise ConfigError("P must be a square transition matrix with rows summing to 1")
    return P


def stationary_law(P: np.ndarray) -> np.ndarray:
    """π = πP (the left eigenvector of eigenvalue 1, normalised)."""
    w, V = np.linalg.eig(np.asarray(P, dtype=np.float64).T)
    pi = np.abs(np.real(V[:, int(np.argmin(np.abs(w - 1.0)))]))
    return pi / pi.sum()


def unigram_covariance(P: object, seq_len: int) -> np.ndarray:
    """n·Cov(q̂) of the unigram pooled over the L positions of n stationary sequences (exact):
    L⁻² [L (diag π − ππᵀ) + Σ_{k=1}^{L−1} (L−k)(diag(π)P^k + (diag(π)P^k)ᵀ − 2ππᵀ)]."""
    P = _check_chain(P)
    L = int(seq_len)
    pi = stationary_law(P)
    D = np.diag(pi)
    outer = np.outer(pi, pi)
    total = L * (D - outer)
    Pk = np.eye(P.shape[0])
    for k in range(1, L):
        Pk = Pk @ P
        M = D @ Pk
        total += (L - k) * (M + M.T - 2.0 * outer)
    return total / L**2


def bigram_kl_generation0(P: object, n: int, seq_len: int) -> float:
    """E[KL_0] per token of the bigram fit of n real sequences of length L, eq. (2)."""
    P = _check_chain(P)
    L = int(seq_len)
    if L < 2 or n < 1:
        raise ConfigError(f"the bigram law needs sequences of length >= 2 and n >= 1, got L={L}, n={n}")
    pi = stationary_law(P)
    var_q = np.diag(unigram_covariance(P, L)) / n
    seen = pi > 0
    unigram = 0.5 * float(np.sum(var_q[seen] / pi[seen]))
    successors = (P > 0).sum(axis=1)
    rows = float(np.sum((successors - 1)[seen])) / (2.0 * n)
    return (unigram + rows) / L


def bigram_kl_drift(P: object, n: int, seq_len: int, generations: int, *, m: int, scheme: str = "replace",
                    fully_synthetic: bool = False) -> np.ndarray:
    """E[KL_t] per token, t = 0 … generations, eq. (3): c_t · E[KL_0] (module docstring)."""
    c = pooled_variance_factor(int(n), int(m), int(generations), scheme=scheme, fully_synthetic=fully_synthetic)
    return c * bigram_kl_generation0(P, n, seq_len)


def expected_lost_transitions(P: object, n: int, seq_len: int, generation: int) -> float:
    """E[#transitions (i, j) with P_ij > 0 lost by ``generation``] in the fully synthetic replace
    loop (generation 0: unseen in the real data). Each row is a Wright–Fisher chain of
    N_i = round(n(L−1)π_i) draws started from the real data — an approximation: N_i is random
    in the loop; rows with N_i > 400 use Kimura's diffusion solution)."""
    P = _check_chain(P)
    pi = stationary_law(P)
    total = 0.0
    for i in range(P.shape[0]):
        N = max(1, round(n * (int(seq_len) - 1) * pi[i]))
        probs = P[i][P[i] > 0]
        method = "exact" if N <= 400 else "diffusion"  # Kimura's diffusion is O(1/N) off; the exact chain costs N²
        total += float(np.sum(loss_probability(probs, N, int(generation), from_real=True, method=method)))
    return total


def sequence_kl_per_token(P: object, first: np.ndarray, Q: np.ndarray, seq_len: int) -> float:
    """Eq. (1): KL per token from the stationary chain (π, P) to a bigram model with first-token
    law ``first`` and transition rows ``Q`` (inf when the model gives 0 to a possible event)."""
    P = _check_chain(P)
    pi = stationary_law(P)

    def kl(p: np.ndarray, q: np.ndarray) -> float:
        on = p > 0
        if np.any(q[on] <= 0):
            return math.inf
        return float(np.sum(p[on] * np.log(p[on] / q[on])))

    rows = sum(pi[i] * kl(P[i], np.asarray(Q[i], dtype=np.float64)) for i in range(P.shape[0]) if pi[i] > 0)
    return (kl(pi, np.asarray(first, dtype=np.float64)) + (int(seq_len) - 1) * rows) / int(seq_len)
