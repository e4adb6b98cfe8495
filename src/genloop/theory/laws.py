"""Per-λ predictions for the families with a closed-form law: ``categorical``, ``ngram``, ``regression``.

These learners fit pooled frequencies (or, for OLS with a fixed design, a pooled mean per copy
of the design), so the one-step map of their error is δ ↦ a δ + noise with a = m/(n+m)
(:mod:`genloop.theory.pooled`): the rows carry the same columns as the continuous families —
rate (= ‖J‖₂ = a, J = a·I, no transient growth), the spread at T and its stationary value —
plus the family's own law of the metric the run records:

* ``categorical`` (no smoothing): E[support] at T (Wright–Fisher, :mod:`genloop.theory.discrete`);
  the spread is ‖p̂_T − p̂_real‖ (exact for replace, first order for accumulate / fresh);
* ``ngram`` (order 2, no smoothing, ``markov`` data): E[excess_nll] = E[KL per token] at T and
  its limit (:mod:`genloop.theory.ngram`), with the expected number of transitions lost;
* ``regression``: E[excess_risk] at T, exact for a fixed design and integer λ
  (:func:`genloop.theory.regression.linear_loop_excess_risk`, OLS and ridge), Dohmatob et
  al.'s law for ``design: fresh`` at λ = ∞.

Where no law exists (another scheme, smoothing, a non-integer λ with a fixed design, …) the row
says "no prediction" and why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genloop.errors import ConfigError
from genloop.loop.schemes import SCHEMES, parse_lambda, synthetic_count
from genloop.theory.pooled import (
    POOLED_SCHEMES,
    pooled_rate,
    pooled_stationary_factor,
    pooled_variance_factor,
)

__all__ = ["LAW_MODELS", "LawTheoryResult", "law_analysis"]

#: Families whose loop has a closed-form law here (the continuous ones are in theory.report).
LAW_MODELS: tuple[str, ...] = ("categorical", "ngram", "regression")


@dataclass
class LawTheoryResult:
    """What ``genloop theory`` prints for a family with a closed-form law."""

    model_name: str
    n: int
    scheme: str
    generations: int
    learner: str
    law: str
    law_title: str
    limit_title: str
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _row(model: str, lam: float, m: int, n: int, scheme: str) -> dict[str, Any]:
    fs = math.isinf(lam)
    a = pooled_rate(n, m, fs)
    return {"model": model, "lam": lam, "m": m, "lam_eff": math.inf if fs else m / n, "rate": a, "norm2": a,
            "transient": 1.0, "sd_T": None, "stationary_sd": None, "law_T": None, "law_inf": None,
            "spread_of": "", "verdict": ""}


def _verdict(lam: float, m: int, rate: float | None, scheme: str, drift: str) -> str:
    if m == 0:
        return "no synthetic data: every generation refits the real data"
    if math.isinf(lam):
        return f"drifts: no real data pulls it back ({drift})"
    if scheme == "accumulate":
        return "bounded: the pool remembers every generation (an offset shrinks once, by m/(n+m), then stays)"
    return f"stable: contracts at {rate:.3g}/generation"


def _source(data_name: str, data_options: dict[str, Any]):
    from genloop.data import make_data

    return make_data(data_name, **data_options)


def law_analysis(
    model_name: str, model_options: dict[str, Any], data_name: str, data_options: dict[str, Any],
    real: np.ndarray, lambdas: Sequence[float], n: int, *, scheme: str = "replace", generations: int = 20,
) -> LawTheoryResult:
    """The per-λ rows for ``categorical``, ``ngram`` or ``regression`` (module docstring).

    ``real`` is the run's real training set (its first seed), ``n`` the real samples per
    generation; the data source (``data_name``, ``data_options``) gives the true law where the
    family's law needs it.
    """
    start = time.perf_counter()
    if model_name not in LAW_MODELS:
        raise ConfigError(f"closed-form laws exist for models {', '.join(LAW_MODELS)}, got {model_name!r}")
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    lams = [parse_lambda(lam) for lam in lambdas]
    from genloop.models import make_model

    model = make_model(model_name, **(model_options or {}))  # validates the options
    build = {"categorical": _categorical, "ngram": _ngram, "regression": _regression}[model_name]
    result = build(model, _source(data_name, data_options), np.asarray(real, dtype=np.float64), lams, int(n),
                   scheme, int(generations))
    result.seconds = time.perf_counter() - start
    return result


# ---- categorical -----------------------------------------------------------------------------------
def _categorical(model, source, real, lams, n, scheme, T) -> LawTheoryResult:
    from genloop.theory.discrete import (
        categorical_covariance,
        expected_support,
        fully_synthetic_mass_covariance,
        mixed_mass_covariance,
    )

    tokens = real.reshape(real.shape[0], -1).astype(np.int64).ravel()
    V = int(max(tokens.max() + 1, getattr(source, "vocab_size", 0) or 0,
                len(source.true_probs()) if hasattr(source, "true_probs") else 0))
    p_real = np.bincount(tokens, minlength=V) / tokens.size
    p_true = np.asarray(source.true_probs(), dtype=np.float64) if hasattr(source, "true_probs") else None
    p_ref = p_true if p_true is not None else p_real
    notes: list[str] = []
    if p_true is None:
        notes.append("the data source has no known law: the support law starts from the real tokens' frequencies")
    smoothing = float(getattr(model, "smoothing", 0.0))
    rows = []
    tr_real = float(np.trace(categorical_covariance(p_real)))
    for lam in lams:
        m = synthetic_count(lam, n)
        fs = math.isinf(lam)
        row = _row("categorical", lam, m, n, scheme)
        if smoothing > 0 or scheme not in POOLED_SCHEMES:
            why = (f"smoothing {smoothing:g} adds mass to every category (no Wright–Fisher law)" if smoothing > 0
                   else f"scheme {scheme!r} subsamples the pool (no law)")
            row.update(rate=None, norm2=None, transient=None, verdict=f"no prediction: {why}")
            rows.append(row)
            continue
        c = pooled_variance_factor(n, m, T, scheme=scheme, fully_synthetic=fs)
        if scheme == "replace":
            cov = (fully_synthetic_mass_covariance(p_real, n, T, from_real=False) if fs
                   else mixed_mass_covariance(p_real, n, lam, T))
            row["sd_T"] = math.sqrt(max(float(np.trace(cov)), 0.0))
            row["stationary_sd"] = math.inf if fs else math.sqrt(max(float(np.trace(
                mixed_mass_covariance(p_real, n, lam))), 0.0))
            row["spread_of"] = "p̂ − p̂_real (exact)"
        elif scheme == "accumulate":
            row["sd_T"] = math.sqrt((c[-1] - 1.0) * tr_real / n)
            row["stationary_sd"] = math.sqrt((pooled_stationary_factor(n, m, scheme=scheme, fully_synthetic=fs) - 1.0)
                                             * tr_real / n)
            row["spread_of"] = "p̂ − p̂_real (first order)"
        else:
            row["sd_T"] = math.sqrt(c[-1] * tr_real / n)
            stat = pooled_stationary_factor(n, m, scheme=scheme, fully_synthetic=fs)
            row["stationary_sd"] = math.sqrt(stat * tr_real / n) if math.isfinite(stat) else math.inf
            row["spread_of"] = "p̂ − p (fresh real data; first order)"
        # the support
        kept_real = float(np.sum(1.0 - (1.0 - p_ref) ** n)) if p_true is not None else float(np.sum(p_real > 0))
        if fs and scheme in ("replace", "fresh"):
            supp = expected_support(p_ref, n, T, from_real=p_true is not None) if p_true is not None \
                else expected_support(p_real, n, T, from_real=False)
            row["law_T"], row["law_inf"] = float(supp[-1]), 1.0
            drift = "Wright–Fisher: every category but one is lost in the end"
        elif fs:  # accumulate, fully synthetic: the first synthetic set stays in the pool for ever
            supp = expected_support(p_ref, n, min(T, 1), from_real=p_true is not None) if p_true is not None \
                else expected_support(p_real, n, min(T, 1), from_real=False)
            row["law_T"] = row["law_inf"] = float(supp[-1])
            drift = "the pool keeps the first synthetic set: the support stays that of generation 1"
        elif scheme == "fresh":
            drift = ""
        else:
            row["law_T"] = row["law_inf"] = kept_real  # every category of the real data keeps mass >= 1/(n+m)
            drift = ""
        row["verdict"] = _verdict(lam, m, row["rate"], scheme, drift)
        rows.append(row)
    return LawTheoryResult(
        model_name="categorical", n=n, scheme=scheme, generations=T,
        learner="token frequencies (the maximum-likelihood fit): a pooled frequency, one-step map δ ↦ m/(n+m)·δ",
        law=("support: Wright–Fisher loss of categories at λ = ∞ (exact chain on counts); with real data every "
             "category seen in the real set keeps mass ≥ 1/(n+m); spread: Cov(p̂_t − p̂_real) of "
             "genloop.theory.discrete (docs/discrete.md)"),
        law_title="E[support] at T", limit_title="E[support] limit", rows=rows, notes=notes)


# ---- n-gram (bigram) on a Markov source ---------------------------------------------------------------
def _ngram(model, source, real, lams, n, scheme, T) -> LawTheoryResult:
    from genloop.theory.ngram import (
        bigram_kl_drift,
        bigram_kl_generation0,
        expected_lost_transitions,
    )

    reasons = []
    if int(model.order) != 2:
        reasons.append(f"order {model.order} (the law is derived for the bigram model, order 2)")
    if float(model.smoothing) > 0:
        reasons.append(f"smoothing {model.smoothing:g} (the law is for the maximum-likelihood counts)")
    if not hasattr(source, "transition_matrix"):
        reasons.append("the data are not a Markov chain with a known transition matrix")
    if scheme not in POOLED_SCHEMES:
        reasons.append(f"scheme {scheme!r} subsamples the pool")
    L = int(real.shape[1]) if real.ndim == 2 else 1
    rows = []
    notes: list[str] = []
    P = source.transition_matrix() if not reasons else None
    kl0 = bigram_kl_generation0(P, n, L) if P is not None else math.nan
    unseen = expected_lost_transitions(P, n, L, 0) if P is not None else 0.0
    if P is not None and unseen > 0.05:
        notes.append(f"E[#transitions unseen in the real data] = {unseen:.2g}: a seed that misses one has infinite "
                     "perplexity from generation 0 (the law below is for seeds that see every transition)")
    for lam in lams:
        m = synthetic_count(lam, n)
        fs = math.isinf(lam)
        row = _row("ngram", lam, m, n, scheme)
        if reasons:
            row.update(rate=None, norm2=None, transient=None, verdict="no prediction: " + "; ".join(reasons))
            rows.append(row)
            continue
        kl = bigram_kl_drift(P, n, L, T, m=m, scheme=scheme, fully_synthetic=fs)
        row["law_T"] = float(kl[-1])
        stat = pooled_stationary_factor(n, m, scheme=scheme, fully_synthetic=fs)
        row["law_inf"] = stat * kl0 if math.isfinite(stat) else math.inf
        drift = f"E[KL] grows {kl[-1] / kl0:.3g}-fold by T"
        if fs and scheme in ("replace", "fresh"):
            lost = expected_lost_transitions(P, n, L, T)
            drift += f"; E[#transitions lost by T] = {lost:.2g}, each makes the perplexity infinite"
        row["verdict"] = _verdict(lam, m, row["rate"], scheme, drift)
        rows.append(row)
    return LawTheoryResult(
        model_name="ngram", n=n, scheme=scheme, generations=T,
        learner="bigram counts (the maximum-likelihood transition rows): pooled frequencies, δ ↦ m/(n+m)·δ",
        law=(f"E[KL per token] = c_t·E[KL_0], E[KL_0] = {kl0:.4g} nats (delta method; docs/discrete.md); "
             "c_t: t+1 fully synthetic, 1 + s(1−a^{2t})/(1+2s) with real data (s = m/n, a = m/(n+m))"
             if P is not None else "no law for this configuration"),
        law_title="E[excess_nll] at T", limit_title="E[excess_nll] limit", rows=rows, notes=notes)


# ---- linear regression on its own labels -----------------------------------------------------------------
def _regression(model, source, real, lams, n, scheme, T) -> LawTheoryResult:
    from genloop.theory.regression import (
        fresh_design_excess_risk,
        linear_loop_excess_risk,
    )

    X = real[:, :-1]
    d = X.shape[1]
    alpha = float(model.alpha)
    sigma = getattr(source, "sigma", None)
    beta = source.coef() if hasattr(source, "coef") else None
    cov = source.feature_cov() if hasattr(source, "feature_cov") else np.eye(d)
    base: list[str] = []
    if beta is None or sigma is None:
        base.append("the data source has no known β* and σ")
    if model.sigma is not None and sigma is not None and not math.isclose(float(model.sigma), float(sigma)):
        base.append(f"the model's σ = {model.sigma:g} differs from the data's {sigma:g}")
    rows = []
    G = X.T @ X
    for lam in lams:
        m = synthetic_count(lam, n)
        fs = math.isinf(lam)
        row = _row("regression", lam, m, n, scheme)
        reasons = list(base)
        if model.sigma is None and not (fs and scheme == "replace" and alpha == 0):
            # E[σ̂_t²] is a martingale only for OLS, replace, fully synthetic (docs/discrete.md)
            reasons.append("the model re-estimates σ every generation (set model.sigma to the data's σ)")
        if model.design == "fixed":
            if scheme not in ("replace", "accumulate"):
                reasons.append(f"scheme {scheme!r}: the exact law covers replace and accumulate")
            if not fs and lam != int(lam):
                reasons.append(f"λ = {lam:g} is not an integer: the fixed design is cycled, a partial copy has no "
                               "closed form")
        elif not (fs and scheme == "replace" and alpha == 0):
            reasons.append("design 'fresh': the law covers OLS, replace, λ = ∞ only")
        if reasons:
            row.update(rate=None, norm2=None, transient=None, verdict="no prediction: " + "; ".join(reasons))
            rows.append(row)
            continue
        s2 = float(sigma) ** 2
        if model.design == "fresh":
            risk = fresh_design_excess_risk(s2, n, d, T)
            row["law_T"], row["law_inf"] = float(risk[-1]), math.inf
        else:
            risk = linear_loop_excess_risk(X, beta, s2, T, alpha=alpha, lam=lam, scheme=scheme, cov=cov)
            row["law_T"] = float(risk[-1])
            if alpha == 0:
                tau = float(np.trace(cov @ np.linalg.inv(G)))
                stat = pooled_stationary_factor(n, m, scheme=scheme, fully_synthetic=fs)
                row["law_inf"] = s2 * tau * stat if math.isfinite(stat) else math.inf
            k = 1 if fs else int(lam)
            blocks = k + (0 if fs else 1)
            J = k * np.linalg.solve(blocks * G + alpha * np.eye(d), G)
            rate = float(np.max(np.abs(np.linalg.eigvals(J)))) if scheme == "replace" else None
            row.update(rate=rate, norm2=float(np.linalg.norm(J, 2)) if rate is not None else None)
        drift = "excess risk grows linearly, σ²·tr(Σ(XᵀX)⁻¹)·(t+1)" if alpha == 0 else "ridge: shrinks β̂ each generation"
        row["verdict"] = _verdict(lam, m, row["rate"], scheme, drift)
        rows.append(row)
    design = ("fixed design (synthetic rows relabel the real features)" if model.design == "fixed"
              else "fresh Gaussian features each generation")
    return LawTheoryResult(
        model_name="regression", n=n, scheme=scheme, generations=T,
        learner=f"{'OLS' if alpha == 0 else f'ridge (α = {alpha:g})'} on its predecessor's labels, {design}",
        law=("E[excess_risk]: exact affine recursion of β̂_t in β* and the noise (genloop.theory.regression; "
             "Dohmatob et al. 2024 for replace, Gerstgrasser et al. 2024 for accumulate), conditional on the "
             "first seed's design"),
        law_title="E[excess_risk] at T", limit_title="E[excess_risk] limit", rows=rows, notes=[])
