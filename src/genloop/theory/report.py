"""Per-λ predictions for the run a config describes (behind ``genloop theory`` and the report).

For each λ the row describes the loop that actually runs: m = ⌊λn⌋ synthetic next to n real
samples (λ_eff = m/n), the config's scheme and estimator, and the learner's own retraining map:

* ``gaussian`` — exact finite-sample laws of the registered model (both estimators, schemes
  replace / accumulate / fresh; :func:`genloop.theory.expfam.gaussian_scheme_moments`);
* ``student_t`` — the registered model is the exact maximiser, so J = λ_eff(A+λ_eff B)⁻¹B;
* ``gmm`` — k warm-started EM iterations, J_k of :mod:`genloop.theory.em`, with k read from
  the loop itself (same seed and streams) replayed near its stationary spread; where EM's
  stopping rule makes k vary, the mean map J̄ = Σ share_k·J_k. The exact maximiser's rate is
  given next to it.

Columns: the rate (spectral radius of the learner's J: the asymptotic per-generation factor,
and the one-step factor in the A-norm for the exact maximiser), ‖J‖₂ and max_t ‖Jᵗ‖₂ (Euclidean
norm of genloop's parameter coordinates, the norm of the paper's Theorem 1), the spread of the
parameters at the last generation T, the paper's Theorem 1 (L, ε estimated) and the same bound
with the exact ‖A − B‖ (no estimate), the Theorem 2 radius (constants from one retraining step,
confidence 1−δ over all T generations by a union bound) and a plain-language verdict.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from genloop.errors import ConfigError, DataError
from genloop.theory.expfam import GAUSSIAN_SCHEMES, gaussian_scheme_moments, mean_offset_factor, synthetic_count
from genloop.theory.jacobian import (
    GaussianDensity,
    GMMDensity,
    ParametricDensity,
    StudentTDensity,
    estimate_free_condition,
    estimate_lipschitz,
    expected_neg_hessian,
    generalized_eigenvalues,
    paper_condition,
    paper_rate,
    per_sample_scores,
    retraining_jacobian,
    transient_amplification,
)

log = logging.getLogger(__name__)

__all__ = ["SUPPORTED_MODELS", "THEORY_MODELS", "TheoryResult", "format_law_text", "LAW_LEGEND", "density_for", "theory_analysis", "theory_rows",
           "format_theory_table", "LEGEND"]

SUPPORTED_MODELS: tuple[str, ...] = ("gaussian", "gmm", "student_t")
#: A free-ν Student-t fit with ν* above this is the Gaussian limit: its ν direction is flat
#: (α → 0) and the rows are flagged as a degenerate fit.
DEGENERATE_DOF = 1e3
#: Every family ``genloop theory`` predicts: the continuous ones here, the closed-form laws of
#: :mod:`genloop.theory.laws`.
THEORY_MODELS: tuple[str, ...] = SUPPORTED_MODELS + ("categorical", "ngram", "regression")


def density_for(model_name: str, model_options: dict[str, Any], d: int) -> ParametricDensity:
    """The :class:`ParametricDensity` adapter of a registered model name and its options.

    Options are validated by the model registry. ``gmm`` needs ``covariance_type: full``;
    ``student_t`` is 1-D.
    """
    options = dict(model_options or {})
    if model_name not in SUPPORTED_MODELS:
        raise ConfigError(
            f"the theory toolkit does not support model {model_name!r}; supported models: {', '.join(SUPPORTED_MODELS)}"
        )
    from genloop.models import make_model

    model = make_model(model_name, **options)  # validates the options
    if model_name == "gaussian":
        return GaussianDensity(d)
    if model_name == "gmm":
        if model.covariance_type != "full":
            raise ConfigError(
                f"the theory toolkit supports gmm with covariance_type 'full' only, got {model.covariance_type!r}"
            )
        return GMMDensity(int(model.n_components), d)
    if d != 1:
        raise ConfigError(f"model 'student_t' is 1-D, the data has d = {d}")
    return StudentTDensity(dof=model.dof, learn_dof=model.learn_dof)


# ---- the noise floor of the W1 estimate at the run's sizes -----------------------------------------
def _w1(x: np.ndarray, y: np.ndarray) -> float:
    import ot

    if x.shape[1] == 1:
        return float(ot.wasserstein_1d(x[:, 0], y[:, 0], p=1))
    M = ot.dist(x, y, metric="euclidean")
    return float(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), M))


def w1_at_run_size(
    model: ParametricDensity, theta: torch.Tensor, real: np.ndarray, *, rng: np.random.Generator,
    repeats: int | None = None, max_points: int = 1000,
) -> dict[str, float]:
    """ε̂ = W₁(real, n model draws) and its noise floor W₁(n model draws, n model draws).

    Both at the run's size n (capped at ``max_points`` for d > 1, where exact OT costs n³), so
    they are comparable: ε̂ within the floor's spread is what a perfectly specified model would
    also show. Returns the means and standard deviations over ``repeats`` draws (default 20 in
    1-D, 3 otherwise) and ``consistent`` = ε̂ < floor + 2 sd.
    """
    d = real.shape[1]
    k = real.shape[0] if d == 1 else min(real.shape[0], max_points)
    repeats = (20 if d == 1 else 3) if repeats is None else repeats
    eps, floor = [], []
    for _ in range(repeats):
        x = real if k == real.shape[0] else real[rng.choice(real.shape[0], size=k, replace=False)]
        eps.append(_w1(x, model.sample(theta, k, rng)))
        floor.append(_w1(model.sample(theta, k, rng), model.sample(theta, k, rng)))
    e, f = np.asarray(eps), np.asarray(floor)
    sd_f = float(f.std(ddof=1)) if repeats > 1 else 0.0
    return {"eps": float(e.mean()), "eps_sd": float(e.std(ddof=1)) if repeats > 1 else 0.0,
            "eps_floor": float(f.mean()), "eps_floor_sd": sd_f, "w1_points": float(k),
            "eps_consistent": bool(e.mean() < f.mean() + 2.0 * sd_f)}


# ---- Theorem 2's constants from one retraining step ------------------------------------------------
def one_step_constants(
    cov: np.ndarray, n: int, *, rng: np.random.Generator,
    deltas: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02), draws: int = 20_000,
) -> tuple[float, float]:
    """(a, b) of the paper's assumption ‖θ̂_n − θ*‖ ≤ a sqrt(log(b/δ))/√n w.p. 1−δ, for one
    retraining step on the mix (n resampled real + m synthetic points).

    ``cov`` is the first-order covariance of that step's output around θ* (Q_real + Q_synth of
    the learner). The quantiles q_δ of √n‖Z‖, Z ~ N(0, cov), are drawn by Monte Carlo
    (``draws``) and q_δ² = a² log b + a² log(1/δ) fitted by least squares (b ≥ 1): a delta-method
    estimate of the one-step sampling law, not a guaranteed bound.
    """
    w = np.clip(np.linalg.eigvalsh(0.5 * (cov + cov.T)), 0.0, None)
    if not np.any(w > 0):
        return 0.0, 1.0
    z = rng.standard_normal((draws, w.size))
    devs = math.sqrt(n) * np.sqrt((z * z) @ w)
    ds = np.asarray(deltas, dtype=np.float64)
    q2 = np.quantile(devs, 1.0 - ds) ** 2
    slope, intercept = np.polyfit(np.log(1.0 / ds), q2, 1)
    if slope <= 0:
        return float(np.sqrt(np.max(q2) / np.log(1.0 / ds.min()))), 1.0
    return float(np.sqrt(slope)), float(max(1.0, np.exp(intercept / slope)))


def theorem2_radius_all_generations(a: float, b: float, n: int, delta: float, rho: float, generations: int) -> float:
    """(a/√n)·sqrt(log(b·T/δ))/(1 − ρ): the paper's Theorem 2 radius at confidence 1 − δ for all
    T generations at once (union bound: δ/T per generation); inf when ρ ≥ 1."""
    if not (0 < delta < 1):
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    if not math.isfinite(rho) or rho >= 1:
        return math.inf
    T = max(int(generations), 1)
    return a / math.sqrt(n) * math.sqrt(max(math.log(b * T / delta), 0.0)) / (1.0 - rho)


# ---- the learner ---------------------------------------------------------------------------------
#: generations replayed to read the EM iteration counts k: the first ones are not counted, then
#: 10 are, and 14 more when k varied among them (a share's sd ≤ 0.1 with 24)
EM_PROBE_BURN_IN = 2
EM_PROBE_COUNT = 10
EM_PROBE_COUNT_VARYING = 24
EM_PROBE_GENERATIONS = EM_PROBE_BURN_IN + EM_PROBE_COUNT


def _run_generation0(options: dict[str, Any], real: np.ndarray, seed: int) -> Any:
    """Generation 0 of the run itself (same seed, same stream): EM from k-means on the real data."""
    from genloop.loop import run_loop
    from genloop.models import make_model

    return next(iter(run_loop(make_model("gmm", **options), real, lam=0.0, generations=0, seed=seed))).model


def _replay_em_iterations(options: dict[str, Any], real: np.ndarray, lam: float, seed: int, start: Any,
                          generations: int, *, skip: int = 0, until_varying: int | None = None) -> list[int]:
    """EM iterations k_t of generations 1 … ``generations`` of the loop (the run's seed and streams)
    continued from the fitted ``start``, the first ``skip`` left out; with ``until_varying``, the
    replay goes on to that many counted generations when k varied among the first ones."""
    from genloop.loop import LoopState, run_loop
    from genloop.models import make_model

    total = max(generations, skip + (until_varying or 0))
    ks: list[int] = []
    for rec in run_loop(make_model("gmm", **options), real, lam=lam, generations=total, seed=seed,
                        resume=LoopState(0, start)):
        if rec.generation > skip:
            ks.append(int(rec.model.n_iter_))
        if rec.generation >= generations and (until_varying is None or len(set(ks)) <= 1):
            break
    return ks


def _stationary_em_iterations(density: Any, theta: torch.Tensor, deriv: Any, options: dict[str, Any], real: np.ndarray,
                              lam: float, lam_eff: float, m: int, seed: int, k0: int, fresh: bool) -> list[int]:
    """k_t of warm EM near its stationary law: the loop replayed from θ* plus one draw of the
    stationary spread of the k0-step map (N(0, P_∞), P_∞ = J P_∞ Jᵀ + Q; k0 the fewest
    iterations EM runs, whose spread is the widest), burn-in dropped.

    EM stops when the log-likelihood gains less than ``tol``, so k depends on how far the
    warm start is from the new fit: started at θ* exactly it runs fewer iterations, started from
    the run's generation 0 (EM from k-means, off θ*) more, than the loop does once its spread
    has settled, which is what the asymptotic rate describes."""
    from scipy import linalg

    from genloop.rng import stage_rng
    from genloop.theory.em import em_learner_map, gmm_model_at

    lm = em_learner_map(deriv, lam_eff, [k0], m)[k0]
    Q = lm.Q_synth + (lm.Q_real if fresh else 0.0)
    start = theta.detach().numpy().copy()
    if float(np.max(np.abs(np.linalg.eigvals(lm.J)))) < 1 and np.any(Q):
        P = linalg.solve_discrete_lyapunov(lm.J, Q)
        w, V = np.linalg.eigh(0.5 * (P + P.T))
        z = stage_rng(int(seed), 0, "theory-em-start").standard_normal(w.size)
        start = start + V @ (np.sqrt(np.clip(w, 0.0, None)) * z)
    return _replay_em_iterations(options, real, lam, seed, gmm_model_at(density, start, options), EM_PROBE_GENERATIONS,
                                 skip=EM_PROBE_BURN_IN, until_varying=EM_PROBE_COUNT_VARYING)


def em_step_frequencies(iters: Sequence[int]) -> dict[int, float]:
    """The share of generations that ran each number k of EM iterations (keys sorted)."""
    ks, counts = np.unique(np.asarray(iters, dtype=int), return_counts=True)
    return {int(k): float(c) / float(counts.sum()) for k, c in zip(ks, counts)}


def em_mixture_map(maps: dict[int, Any], freq: dict[int, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean linear map of warm EM whose iteration count k varies: J̄ = Σ_k f_k J_k and the mean
    noise covariances Σ_k f_k Q_k (synthetic, real).

    With k drawn afresh each generation (at the run's frequencies f_k) and independent of the
    current error to first order, E[θ_{t+1} − θ*] = J̄ E[θ_t − θ*], so ρ(J̄) is the rate of the mean
    error (docs/theory.md §3.2, checked on the real loop by common-random-number pairs)."""
    J = sum(f * maps[k].J for k, f in freq.items())
    Q_s = sum(f * maps[k].Q_synth for k, f in freq.items())
    Q_r = sum(f * maps[k].Q_real for k, f in freq.items())
    return np.asarray(J), np.asarray(Q_s), np.asarray(Q_r)


def _mixture_spread(Js: Sequence[np.ndarray], weights: Sequence[float], Q: np.ndarray, P0: np.ndarray,
                    e0: np.ndarray, T: int, tail: int = 5000) -> tuple[float, float]:
    """RMS distance to θ* at T and its limit for e_{t+1} = J_k e_t + noise (Cov Q), k drawn afresh
    each generation with probabilities ``weights``: the second moment M_t = E[e_t e_tᵀ] obeys
    M_{t+1} = Σ_k f_k J_k M_t J_kᵀ + Q from M_0 = P0 + e_0e_0ᵀ, so the distance at T is sqrt(tr M_T);
    the limit iterates from 0 to convergence (inf when it grows; where ``tail`` iterations do not
    settle it, a rate within ~1e-3 of 1, the mean map's Lyapunov solution P = J̄PJ̄ᵀ + Q instead,
    which leaves out the spread of the J_k)."""

    def step(P: np.ndarray) -> np.ndarray:
        return sum(w * (J @ P @ J.T) for w, J in zip(weights, Js)) + Q

    M = P0 + np.outer(e0, e0)
    for _ in range(T):
        M = step(M)
    sd_T = float(math.sqrt(max(float(np.trace(M)), 0.0)))
    Pl = np.zeros_like(Q)
    for _ in range(tail):
        nxt = step(Pl)
        if not np.all(np.isfinite(nxt)) or np.trace(nxt) > 1e12 * max(np.trace(Q), 1e-300):
            return sd_T, math.inf
        done = np.max(np.abs(nxt - Pl)) <= 1e-12 * max(np.max(np.abs(nxt)), 1e-300)
        Pl = nxt
        if done:
            return sd_T, _sd(Pl)
    from scipy import linalg

    Jbar = sum(w * J for w, J in zip(weights, Js))
    return sd_T, _sd(linalg.solve_discrete_lyapunov(Jbar, Q))


@dataclass
class TheoryResult:
    """Everything ``genloop theory`` prints for one model and data set."""

    model_name: str
    n: int
    d: int
    scheme: str
    estimator: str
    generations: int
    learner: str
    theta_star: np.ndarray
    A: np.ndarray
    B: np.ndarray
    kappa: np.ndarray
    alpha: float
    delta_AB: float
    L: float
    w1: dict[str, float]
    fisher: str
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _sd(cov: np.ndarray) -> float:
    return float(math.sqrt(max(float(np.trace(cov)), 0.0)))


def _linear_spread(J: np.ndarray, Q: np.ndarray, P0: np.ndarray, e0: np.ndarray, T: int) -> tuple[float, float]:
    """RMS distance to θ* at generation T, sqrt(|Jᵀe_0|² + tr P_T) with P_{t+1} = J P_t Jᵀ + Q, and
    the stationary sd sqrt(tr P_∞) (inf when ρ(J) ≥ 1)."""
    from scipy import linalg

    P, e = P0.copy(), e0.copy()
    for _ in range(T):
        P = J @ P @ J.T + Q
        e = J @ e
    rho = float(np.max(np.abs(np.linalg.eigvals(J))))
    stat = _sd(linalg.solve_discrete_lyapunov(J, Q)) if rho < 1 else math.inf
    return float(math.sqrt(float(e @ e) + max(float(np.trace(P)), 0.0))), stat


def _verdict(lam: float, m: int, rate: float | None, transient: float | None, scheme: str, note: str = "") -> str:
    if note:
        return note
    if m == 0:
        if rate:
            return f"no synthetic data: EM continues on the real data, converging at {rate:.3g}/generation"
        return "no synthetic data: every generation refits the real data"
    if math.isinf(lam):
        return "drifts: no real data pulls it back (random walk; collapse for the Gaussian)"
    if scheme == "accumulate":
        return "bounded: the pool remembers every generation (an offset shrinks once, by m/(n+m), then stays)"
    if rate is None:
        return "no prediction"
    text = f"stable: contracts at {rate:.3g}/generation"
    if transient is not None and transient > 1.05:
        text += f"; transient growth up to {transient:.2g}x first"
    return text


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the analysis on one BLAS/torch thread and restore the settings afterwards: its
    matrices are small (tens of parameters), where extra threads only contend for the cores
    (on a loaded 2-core machine default threads made ``genloop theory`` 10x slower)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def theory_analysis(
    model_name: str,
    model_options: dict[str, Any],
    real: np.ndarray,
    lambdas: Sequence[float],
    n: int,
    *,
    rng: np.random.Generator,
    scheme: str = "replace",
    generations: int = 20,
    seed: int = 0,
    delta: float = 0.05,
    progress: bool = False,
    retrain: str = "finetune",
    data_cov: np.ndarray | None = None,
) -> TheoryResult:
    """Predictions for the loop of a config, per λ (module docstring).

    ``real`` is the real training set (N, d) used to fit θ* and A (the run's own set when
    N = n); ``n`` the real samples per generation; ``seed`` the run's seed (``gmm`` replays
    the loop with it to read EM's iteration counts); ``rng`` drives every Monte Carlo part (the
    W₁ draws, the L estimate, Theorem 2's quantiles). Runs single-threaded (:func:`_one_thread`).
    ``retrain="scratch"`` predicts the scratch learner (``gmm``: EM from k-means every generation,
    to first order the exact maximiser G_λ, not the warm k-step EM map).
    ``data_cov``: the data law's covariance where the source knows it; scheme ``fresh`` draws new
    real data every generation, so its spread comes from the data law, not from one seed's
    sample covariance.
    """
    with _one_thread():
        return _theory_analysis(model_name, model_options, real, lambdas, n, rng=rng, scheme=scheme,
                                generations=generations, seed=seed, delta=delta, progress=progress,
                                retrain=retrain, data_cov=data_cov)


def _theory_analysis(
    model_name: str,
    model_options: dict[str, Any],
    real: np.ndarray,
    lambdas: Sequence[float],
    n: int,
    *,
    rng: np.random.Generator,
    scheme: str,
    generations: int,
    seed: int,
    delta: float,
    progress: bool,
    retrain: str = "finetune",
    data_cov: np.ndarray | None = None,
) -> TheoryResult:
    from tqdm.auto import tqdm

    from genloop.loop.schemes import SCHEMES, parse_lambda

    start = time.perf_counter()
    real = np.asarray(real, dtype=np.float64)
    if real.ndim == 1:
        real = real[:, None]
    if real.ndim != 2:
        raise DataError(f"real data must have shape (n, d), got {real.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n must be an integer >= 2, got {n!r}")
    if not lambdas:
        raise ConfigError("give at least one lambda")
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    lams = [parse_lambda(lam) for lam in lambdas]
    n = int(n)
    options = dict(model_options or {})
    model = density_for(model_name, options, real.shape[1])
    estimator = str(options.get("estimator", "mle"))
    bar = tqdm(total=6 + len(lams), desc="genloop theory", disable=not progress, leave=False)

    # θ*: the exact maximum-likelihood fit (gmm: polished from the run's own generation 0)
    e0 = np.zeros(model.n_params)
    if model_name == "gmm":
        from genloop.theory.em import gmm_parameter_vector

        gen0 = _run_generation0(options, real, seed)
        theta0 = torch.as_tensor(gmm_parameter_vector(gen0))
        theta = model.fit(real, init=theta0)
        means = model.unpack(theta)[1].detach().numpy()
        e0 = gmm_parameter_vector(gen0, means) - theta.numpy()
    else:
        theta = model.fit(real)
    bar.update()
    A = expected_neg_hessian(model, theta, real)
    B = model.fisher(theta, rng=rng, n_mc=200_000)
    fisher = "quadrature" if model.quadrature(theta) is not None else "Monte Carlo (2e5 draws)"
    kappa = generalized_eigenvalues(A, B)
    alpha = float(np.linalg.eigvalsh(A)[0])
    degenerate = ""
    if model_name == "student_t" and model.learn_dof:
        nu_star = float(np.exp(float(theta[2])))
        if nu_star > DEGENERATE_DOF:
            degenerate = (f"degenerate fit: ν* = {nu_star:.3g} (the data are no heavier-tailed than a Gaussian, so "
                          f"the free-ν likelihood runs to its Gaussian limit; α = {alpha:.2g}): the rows below describe "
                          "a flat direction, not the loop; fix dof or use the gaussian model")
            log.warning("genloop theory: %s", degenerate)
    delta_AB = float(np.linalg.norm(A - B, 2))
    bar.update()
    L = estimate_lipschitz(model, theta, real, rng=rng, n_points=128 if model.n_params <= 20 else 48)
    bar.update()
    w1 = w1_at_run_size(model, theta, real[:n] if real.shape[0] > n else real, rng=rng)
    bar.update()
    S = per_sample_scores(model, theta, real)
    V_real = S.T @ S / S.shape[0]
    deriv = None
    if model_name == "gmm" and retrain != "scratch" and model.quadrature_grid(theta) is not None:
        from genloop.theory.em import em_step_derivatives

        deriv = em_step_derivatives(model, theta, real, reg_covar=float(options.get("reg_covar", 1e-6)))
    bar.update()

    notes: list[str] = []
    if model_name == "gmm" and retrain == "scratch":
        learner = ("EM from k-means every generation (retrain: scratch): nothing of the previous model survives "
                   "but its samples, so to first order the exact maximiser G_λ (docs/theory.md §3.2; the warm-started "
                   "k-step EM map does not apply)")
    elif model_name == "gmm" and deriv is None:
        learner = ("the exact maximiser G_λ: the map of the EM learner that runs needs a quadrature grid (d <= 2), "
                   f"this mixture has d = {real.shape[1]}; the run's EM stops at tol and contracts more slowly")
        notes.append("rows for the exact maximiser, not the warm-started EM that runs (d > 2)")
    elif model_name == "gmm":
        learner = (f"warm-started EM as the run does it (tol = {options.get('tol', 1e-3):g}, max_iter = "
                   f"{options.get('max_iter', 200)}): k EM iterations per generation (column 'EM k'), read from "
                   f"{EM_PROBE_COUNT} generations ({EM_PROBE_COUNT_VARYING} when k varies) of the loop replayed with seed {seed} "
                   "near its stationary spread; where k varies, the map is the mean J̄ = Σ share_k·J_k; set tol: 0 "
                   "and a large max_iter to run the exact maximiser G_λ")
    elif model_name == "gaussian":
        learner = (f"the registered closed-form fit (estimator {estimator}): exact finite-sample laws"
                   if scheme in GAUSSIAN_SCHEMES else "the registered closed-form fit")
    else:
        learner = "the registered maximum-likelihood fit (Newton to convergence): the exact maximiser G_λ"
    if degenerate:
        notes.append(degenerate)
    if float(np.linalg.norm(e0)) > 1e-3:
        notes.append(
            f"generation 0 of the run is at distance {float(np.linalg.norm(e0)):.3g} from θ* (EM from k-means stops at "
            "tol); linearised, that offset decays at the rate of each row, but far from θ* EM is slower than its "
            "linearisation: read the decay of the offset as optimistic (the 'sd at T' column is the spread of the "
            "synthetic-sampling noise around θ*)")
    if model_name != "gaussian" and scheme not in ("replace", "fresh"):
        notes.append(f"no prediction of the spread for scheme {scheme!r} with a non-exponential model "
                     "(laws are derived for replace and fresh)")

    paper_lam_max = 0.5 / (1.0 + L * w1["eps"] / alpha) if alpha > 0 else 0.0
    free_lam_max = 0.5 / (1.0 + delta_AB / alpha) if alpha > 0 else 0.0
    rows: list[dict[str, Any]] = []
    cov_real = np.atleast_2d(np.cov(real.T, ddof=0))
    if scheme == "fresh":
        if data_cov is not None:  # new real data every generation: the data law, not one seed's sample
            cov_real = np.atleast_2d(np.asarray(data_cov, dtype=np.float64))
        else:
            cov_real = np.atleast_2d(np.cov(real.T, ddof=1))
            notes.append("scheme fresh: the data law's covariance is unknown, the spread uses the first seed's "
                         "sample covariance (one draw of it)")
    T = int(generations)
    for lam in lams:
        m = synthetic_count(lam, n)
        lam_eff = math.inf if math.isinf(lam) else m / n
        row: dict[str, Any] = {"model": model_name, "lam": lam, "m": m, "lam_eff": lam_eff}
        note = ""
        J = np.eye(model.n_params) if math.isinf(lam) else retraining_jacobian(A, B, lam_eff)
        Q_s = np.zeros_like(A)
        Q_r = np.zeros_like(A)
        if math.isfinite(lam):
            M = np.linalg.inv(A + lam_eff * B)
            Q_r = M @ V_real @ M.T / n
            if m > 0:
                Q_s = lam_eff**2 * M @ (B / m) @ M.T
        maximiser_rate = 1.0 if math.isinf(lam) else float(np.max(np.abs(np.linalg.eigvals(J))))
        row["maximiser_rate"] = maximiser_rate
        row["em_k"] = None
        em_js: list[np.ndarray] = []
        if deriv is not None and math.isfinite(lam):
            from genloop.theory.em import em_learner_map

            if not float(options.get("tol", 1e-3)) > 0:  # tol 0: EM runs exactly max_iter iterations
                iters = [int(options.get("max_iter", 200))]
            elif m == 0:  # EM continuing on the real data alone, from the run's generation 0
                iters = _replay_em_iterations(options, real, lam, seed, gen0, EM_PROBE_COUNT)
            else:
                # warm EM with tol > 0 runs at least 2 iterations (the first gain is measured from -inf)
                k_min = min(2, int(options.get("max_iter", 200)))
                iters = _stationary_em_iterations(model, theta, deriv, options, real, lam, lam_eff, m, seed,
                                                  k_min, scheme == "fresh")
            freq = em_step_frequencies(iters)
            maps = em_learner_map(deriv, lam_eff, list(freq), m)
            J, Q_s, Q_r = em_mixture_map(maps, freq)
            em_js = [maps[k].J for k in freq]
            row["em_k"] = max(freq, key=lambda k: freq[k])
            row["em_k_freq"] = freq
            row["em_steps"] = (str(next(iter(freq))) if len(freq) == 1 else
                               " ".join(f"{k}:{100 * f:.0f}%" for k, f in freq.items()))
        rate = 1.0 if math.isinf(lam) else float(np.max(np.abs(np.linalg.eigvals(J))))
        norm2 = float(np.linalg.norm(J, 2))
        transient, _ = transient_amplification(J) if math.isfinite(lam) else (1.0, 1)
        ef_ok, ef_rho = estimate_free_condition(A, B, lam_eff) if math.isfinite(lam) else (False, math.inf)
        rho_paper = paper_rate(lam_eff, alpha, L, w1["eps"])
        # spreads at T and stationary
        sd_T: float | None
        sd_inf: float | None
        if model_name == "gaussian" and scheme in GAUSSIAN_SCHEMES:
            C, _ = gaussian_scheme_moments(n, lam, cov_real, T, scheme=scheme, estimator=estimator,  # type: ignore[arg-type]
                                           reg_covar=float(options.get("reg_covar", 0.0)))
            sd_T = _sd(C[-1])
            if math.isinf(lam) or scheme == "accumulate":
                sd_inf = math.inf if math.isinf(lam) else None
            else:
                C_long, _ = gaussian_scheme_moments(n, lam, cov_real, 2000, scheme=scheme, estimator=estimator,  # type: ignore[arg-type]
                                                    reg_covar=float(options.get("reg_covar", 0.0)))
                sd_inf = _sd(C_long[-1])
            if scheme == "accumulate":
                rate = None
            row["spread_of"] = "mean μ (exact)"
        elif model_name == "gaussian":
            sd_T = sd_inf = None
            f = mean_offset_factor(n, lam, T, scheme=scheme)
            rate = None
            note = (f"mean law only: an offset shrinks to {f[-1]:.3g} of itself after {T} generations; "
                    "no spread law for accumulate-subsample")
        elif scheme in ("replace", "fresh"):
            if math.isinf(lam):
                sd_T, sd_inf = None, math.inf
            else:
                Q = Q_s + (Q_r if scheme == "fresh" else 0.0)
                P0 = Q_r if scheme == "fresh" else np.zeros_like(A)
                if len(em_js) > 1:  # warm EM whose k varies: the random linear recursion
                    sd_T, sd_inf = _mixture_spread(em_js, list(row["em_k_freq"].values()), Q, P0, np.zeros_like(e0), T)
                else:
                    sd_T, sd_inf = _linear_spread(J, Q, P0, np.zeros_like(e0), T)
                row["offset_T"] = float(np.linalg.norm(np.linalg.matrix_power(J, T) @ e0))
            row["spread_of"] = "θ (linearised)"
        else:
            sd_T = sd_inf = None
            rate = None
            note = f"no prediction for scheme {scheme!r} ({model_name} is not an exponential family)"
        a, b = one_step_constants(Q_r + Q_s, n, rng=rng)
        row.update(
            rate=rate,
            exact_rate=rate,
            expfam_rate=(m / (n + m) if math.isfinite(lam) else 1.0) if model_name == "gaussian" else None,
            norm2=norm2,
            transient=transient,
            kappa_max=float(kappa[0]),
            alpha=alpha,
            delta_AB=delta_AB,
            L=L,
            eps=w1["eps"],
            eps_floor=w1["eps_floor"],
            paper_condition=paper_condition(lam_eff, alpha, L, w1["eps"]),
            paper_rho=rho_paper,
            paper_lambda_max=paper_lam_max,
            free_condition=ef_ok,
            free_rho=ef_rho,
            free_lambda_max=free_lam_max,
            sd_T=sd_T,
            stationary_sd=sd_inf,
            theorem2_a=a,
            theorem2_b=b,
            theorem2_radius=theorem2_radius_all_generations(a, b, n, delta, rho_paper, T),
        )
        if note and rate is None and model_name != "gaussian":  # no law for this scheme: print no numbers of J
            row.update(norm2=None, transient=None, maximiser_rate=None)
        if scheme != "replace" and scheme != "fresh":
            # J, ‖J‖₂ and max‖Jᵗ‖ are the replace map's: an accumulating pool has no fixed one-step map
            # (generation t weighs the newest model by m/(n+tm)); its spread above is its own law
            row.update(norm2=None, transient=None, maximiser_rate=None, free_rho=None, paper_rho=None,
                       paper_condition=None, theorem2_radius=None)
        row["verdict"] = _verdict(lam, m, rate, transient, scheme, note)
        if degenerate:
            row["verdict"] = "no prediction: degenerate fit (ν* → ∞, see the note)"
        rows.append(row)
        bar.update()
    bar.close()
    return TheoryResult(
        model_name=model_name, n=n, d=real.shape[1], scheme=scheme, estimator=estimator, generations=T,
        learner=learner, theta_star=theta.numpy(), A=A, B=B, kappa=kappa, alpha=alpha, delta_AB=delta_AB, L=L,
        w1=w1, fisher=fisher, rows=rows, notes=notes, seconds=time.perf_counter() - start,
    )


def theory_rows(
    model_name: str,
    model_options: dict[str, Any],
    real: np.ndarray,
    lambdas: Sequence[float],
    n: int,
    *,
    rng: np.random.Generator,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """The per-λ rows of :func:`theory_analysis` (same arguments)."""
    return theory_analysis(model_name, model_options, real, lambdas, n, rng=rng, **kwargs).rows


# ---- text ---------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "holds" if value else "fails"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if math.isinf(v):
        return "inf"
    return f"{v:.4g}"


def _columns(unicode: bool) -> list[tuple[str, str]]:
    lam, kap, rho = ("λ", "κ", "ρ") if unicode else ("lambda", "kappa", "rho")
    norm = "‖J‖₂" if unicode else "|J|_2"
    tr = "max‖Jᵗ‖" if unicode else "max|J^t|"
    return [
        ("model", "model"),
        ("lam", lam),
        ("m", "m"),
        ("rate", "rate"),
        ("maximiser_rate", f"G_{lam} rate"),
        ("em_steps", "EM k"),
        ("norm2", norm),
        ("transient", tr),
        ("sd_T", "sd at T"),
        ("stationary_sd", "stationary sd"),
        ("paper_condition", "Thm 1 cond."),
        ("paper_rho", f"Thm 1 {rho}"),
        ("free_rho", f"exact-{norm if unicode else 'norm'} {rho}"),
        ("theorem2_radius", "Thm 2 radius"),
        ("verdict", "verdict"),
        ("kappa_max", f"{kap}_max"),
        ("alpha", "alpha"),
        ("L", "L (est.)"),
        ("eps", "eps (W1)"),
        ("eps_floor", "W1 noise floor"),
    ]


_PER_MODEL = {"kappa_max", "alpha", "L", "eps", "eps_floor"}

#: what each column means and guarantees (printed under the table; docs/theory.md §6)
LEGEND = """\
m             ⌊λn⌋ synthetic samples per generation next to the n real ones (λ_eff = m/n; n and no real
              data for λ = ∞).
A, B          A = −E_data[∇²log p_θ*] (the data's curvature at the fit θ*), B = the Fisher information
              E_θ*[∇log p ∇log pᵀ] of the model itself; A = B when the model is exactly right.
κ_max         largest generalised eigenvalue of (B, A): how much stiffer the model's own samples make
              the fit than the data do; α = λ_min(A), the paper's strong-concavity constant.
L, ε          the paper's Lipschitz constant of θ ↦ ∇²log p_θ (estimated) and ε = W₁(data, model) (ε̂,
              compared with the W₁ noise floor between two model samples of the run's size).
rate          spectral radius of the learner's Jacobian J at θ* (λ_eff = m/n): the asymptotic factor per
              generation of the distance to θ* (and, for the exact maximiser, the one-step factor in the
              A-norm). Gaussian: m/(n+m) exactly. An accumulating pool has no single rate ("-").
G_λ rate      the same for the exact maximiser G_λ (differs from "rate" when the learner stops early).
EM k          EM iterations per generation of the warm-started gmm in the run's first generations (k:share
              when it varies); the rate is then that of J̄ = Σ_k share_k·J_k, the mean map.
‖J‖₂          one-step factor in the Euclidean norm of genloop's parameter coordinates (Theorem 1's norm);
              > 1 means the first generations can move away before contracting.
max‖Jᵗ‖       worst amplification of a small perturbation over all generations (≥ rate^t always).
sd at T       RMS distance of the parameters to θ* at the last generation T due to the sampling noise
              (Gaussian: the mean, exact; others: θ, linearised; an offset of generation 0 comes on top).
stationary sd the limit of "sd at T" as T → ∞ (inf: no real data pulls the fit back; "-": no law).
Thm 1 cond.   whether the paper's Theorem 1 condition λ(1 + Lε/α) < 1/2 holds (estimated L, ε).
Thm 1 ρ       the paper's one-step bound λ(α+εL)/(α−λ(α+εL)) with estimated L and ε (inf: no statement).
exact-‖J‖₂ ρ  the same bound with the exact ‖A−B‖ in place of Lε (no estimate); it bounds ‖J‖₂.
Thm 2 radius  the paper's radius with constants from one retraining step (delta method), at 95 %
              confidence for all T generations together (union bound over generations).
Verdicts are linearised statements near θ*; the Gaussian rows are exact for every n."""


LAW_LEGEND = """\
m             ⌊λn⌋ synthetic samples per generation next to the n real ones (n for λ = ∞, no real data).
rate          the factor by which one generation shrinks an error of the previous model: m/(n+m) for a
              pooled-frequency fit (frequencies, bigram counts, OLS per copy of the design); ‖J‖₂ = rate
              and max‖Jᵗ‖ = 1 (J = rate·I: no transient growth). An accumulating pool has no single rate.
sd at T       RMS distance of the fitted law to the generation-0 fit at the last generation T
              (categorical: ‖p̂_T − p̂_real‖; with scheme fresh: to the true law).
stationary sd its limit as T → ∞ (inf: no real data pulls the fit back).
E[…] at T     the family's law of the metric the run records, at the last generation T; "limit": T → ∞.
Verdicts: "stable" contracts at the rate, "bounded" stays within the accumulate limit, "drifts" is a
random walk with no pull back (λ = ∞); "no prediction" names the reason."""


def format_law_text(res: Any, title: str, *, unicode: bool = True, legend: bool = True) -> str:
    """The text of ``genloop theory`` for a :class:`genloop.theory.laws.LawTheoryResult`."""
    lines = [f"{title} (n = {res.n}), scheme {res.scheme}, {res.generations} generations",
             f"learner: {res.learner}", f"law: {res.law}"]
    lines += [f"note: {note}" for note in res.notes]
    table = format_theory_table(res.rows, compact=True, unicode=unicode,
                                extra=[("law_T", res.law_title), ("law_inf", res.limit_title)])
    text = "\n".join(lines) + "\n\n" + table
    if legend:
        text += "\n\n" + LAW_LEGEND
    text += f"\n\n(computed in {res.seconds:.1f} s)"
    return text if unicode else _ascii(text)


def _ascii(text: str) -> str:
    table = {"ε̂": "eps", "λ": "lambda", "κ": "kappa", "ρ": "rho", "θ": "theta", "α": "alpha", "ε": "eps", "‖": "|",
             "₂": "_2", "ᵗ": "^t", "≥": ">=", "≤": "<=", "−": "-", "μ": "mu", "Σ": "Sigma", "σ": "sigma",
             "·": "*", "⌊": "floor(", "⌋": ")", "δ": "delta", "∞": "inf", "≈": "~", "→": "->", "×": "x",
             "ᵀ": "^T", "₀": "_0", "∇": "grad ", "²": "^2", "⁻¹": "^-1", "Γ": "Gamma", "ν": "nu", "ξ": "xi",
             "γ": "gamma", "τ": "tau", "β": "beta", "χ": "chi", "–": "-", "⁻": "^-", "≠": "!=", "∈": " in ",
             "←": "<-", "↦": "|->", "±": "+-", "§": "section ", "\u0304": "bar"}
    for k, v in table.items():
        text = text.replace(k, v)
    return text.encode("ascii", "replace").decode("ascii")


def format_theory_table(rows: Sequence[dict[str, Any]], *, compact: bool = False, unicode: bool = True,
                        extra: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table of :func:`theory_rows` output (one line per row).

    ``compact`` drops the columns that are the same for every λ of a model (κ_max, α, L, ε, the
    W₁ noise floor) and the exact-maximiser rate when it equals the rate; ``unicode=False``
    writes plain ASCII names.
    """
    if not rows:
        return ""
    columns = [c for c in _columns(unicode) if not (compact and c[0] in _PER_MODEL)]
    if extra:  # a family's own law of its metric, before the verdict
        at = next(i for i, c in enumerate(columns) if c[0] == "verdict")
        columns = columns[:at] + list(extra) + columns[at:]
    if compact and all(r.get("em_k") is None for r in rows):
        columns = [c for c in columns if c[0] != "maximiser_rate"]
    if compact:  # columns no row fills (the paper's theorems for the closed-form families)
        columns = [c for c in columns if c[0] in ("model", "lam", "m", "verdict") or
                   any(r.get(c[0]) is not None for r in rows)]
    header = [title for _, title in columns]
    body = [[_fmt(row.get(key)) for key, _ in columns] for row in rows]
    if not unicode:
        body = [[_ascii(c) for c in r] for r in body]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    text_cols = {0, len(columns) - 1} if columns[-1][0] == "verdict" else {0}
    lines += ["| " + " | ".join(c.ljust(w) if i in text_cols else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths))) + " |" for r in body]
    return "\n".join(lines)
