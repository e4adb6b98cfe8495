"""A stability probe for any model: the local contraction rate of the retraining map, measured.

The paper's Theorem 1 says the retraining map G_λ is a contraction near θ* when
λ(1 + Lε/α) < 1, and docs/theory.md §3 gives its exact Jacobian J = λ(A + λB)⁻¹B where a
closed form exists. For every other learner (neural networks fine-tuned for a fixed budget,
EM stopped at a tolerance, kernel estimates) the probe measures the rate instead:

1. Fit generation 0 on the real data as the run does (its stream ``stage_rng(seed, 0, "fit")``),
   or take a given fitted ``start``: the state p_0 the rate is measured at.
2. Per replicate r (its own loop seed s_r; r = 0 is the config's seed, so replicate 0's
   reference run is the configured run's own first generations), a *reference run* resumes
   the loop from p_0 for T generations, and K *perturbed runs* resume from a copy of p_0 whose
   samples are pushed through x ↦ x + δ·u_j(x), u_j a random smooth field
   (:class:`SmoothField`, δ in standard deviations of the data). The perturbation enters
   through the synthetic set of generation 1, in sample space, so it works for any model. All
   runs of a replicate use the same streams ``stage_rng(s_r, t, stage)`` (common random
   numbers): they differ only by the perturbation.
3. At each generation t = 1 … T the probe records the difference v_{j,t} between the perturbed
   and the reference run: of the fitted parameters (``space="parameters"``, the float arrays
   of ``get_state``; the default for :data:`PARAMETRIC_MODELS`) or of random-feature moments
   of N coupled samples, both models drawing from one shared stream (``space="samples"``,
   :class:`MomentFeatures`; the default for neural and nonparametric families). To first order
   in δ, v_{j,t+1} = J_t v_{j,t}, J_t the Jacobian of generation t's retraining map.
4. The rate: the spectral radius of the least-squares linear map fitted to all snapshot pairs
   (v_{j,t}, v_{j,t+1}) (dynamic mode decomposition, :func:`dmd_rate`, ``estimator="dmd"``); it
   estimates ρ(E J), the asymptotic factor per generation of docs/theory.md §3.1, and picks
   out the slowest mode even when the RMS of the differences is dominated by fast ones. Noise
   in the pairs biases it upward (the safe side: towards "not contracting"). The RMS factor per
   generation of the differences (:func:`rms_rate`, ``estimator="rms"``) is less noisy but
   averages the modes: a fully synthetic network loop whose perturbations mostly fade while
   its neutral modes drift reads as contracting (docs/theory.md §8.2). The interval is the
   delete-one-replicate jackknife (:func:`jackknife_interval`): replicates are independent,
   while the K directions of one replicate share its maps J_t.

A rate whose interval lies below 1 predicts a stable loop (perturbations shrink
geometrically); an interval that reaches 1 predicts no contraction: a drift that real data
does not pull back (the paper's collapse at λ = ∞). Cost: R·(K+1)·T model fits, plus one for
generation 0 (``ProbeResult.fits``).

Exact rates it is checked against (tests/test_probe.py, docs/theory.md §8): the Gaussian's
m/(n+m) (§2: J = m/(n+m)·I), the GMM learner's ρ(J_k) (§3.2, :mod:`genloop.theory.em`), and
the fixed-bandwidth KDE's m/(n+m): a synthetic point is a uniformly chosen training point of
the previous generation plus kernel noise, and under common random numbers it inherits its
parent's displacement, so the expected displacement field of the n + m training points is
multiplied by m/(n+m) per generation (real points carry none) and smoothed by the kernel: the
slowest (smoothest) mode contracts at exactly m/(n+m).

Scope: vector data (n, d). For λ with no synthetic sample (m = ⌊λn⌋ = 0) the perturbation has
nowhere to enter and the probe reports no rate (a warm start's memory of its initial
parameters is not probed then).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from genloop.errors import ConfigError, DataError
from genloop.loop.engine import LoopState, run_loop
from genloop.loop.schemes import parse_lambda, synthetic_count
from genloop.models.base import GenerativeModel
from genloop.rng import stage_rng

log = logging.getLogger(__name__)

__all__ = [
    "PARAMETRIC_MODELS",
    "PROBE_LEGEND",
    "MomentFeatures",
    "ProbeResult",
    "SmoothField",
    "dmd_rate",
    "format_probe_table",
    "jackknife_interval",
    "parameter_vector",
    "perturbed_copy",
    "probe_config",
    "probe_stability",
    "probe_verdict",
    "rms_rate",
]


# ---- the perturbation: a smooth random displacement field in sample space -------------------------
@dataclass
class SmoothField:
    """u(x) = s ⊙ (c + W z + Σ_k a_k cos(ω_kᵀz + β_k)), z = (x − mean)/s the standardised point.

    A random affine part (moves the mean and the covariance) plus ``n_waves`` random cosine
    waves (moves the shape), scaled so that the RMS of |u(x)|/|s| over the reference points is 1:
    x ↦ x + δ·u(x) displaces a typical point by δ standard deviations.
    """

    mean: np.ndarray
    scale: np.ndarray
    c: np.ndarray
    W: np.ndarray
    omega: np.ndarray
    beta: np.ndarray
    a: np.ndarray
    norm: float = 1.0

    @classmethod
    def random(cls, reference: np.ndarray, *, rng: np.random.Generator, n_waves: int = 4) -> SmoothField:
        """A random field for data like ``reference`` (n, d)."""
        mean, scale = _standardisation(reference)
        d = reference.shape[1]
        f = cls(mean=mean, scale=scale, c=rng.standard_normal(d), W=rng.standard_normal((d, d)) / math.sqrt(d),
                omega=rng.standard_normal((n_waves, d)), beta=rng.uniform(0, 2 * math.pi, n_waves),
                a=rng.standard_normal((n_waves, d)))
        u = f(reference) / scale
        f.norm = float(np.sqrt(np.mean(np.sum(u * u, axis=1))))
        return f

    def __call__(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.mean) / self.scale
        u = self.c + z @ self.W.T + np.cos(z @ self.omega.T + self.beta) @ self.a
        return self.scale * u / self.norm


def _standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return mean, scale


def perturbed_copy(model: GenerativeModel, field: SmoothField, delta: float) -> GenerativeModel:
    """A copy of fitted ``model`` (same state) whose samples are x + δ·u(x), x its own draws.

    The copy is what a perturbed run resumes from: its parameters (a warm start's initial
    point) are those of ``model``; only the synthetic set it hands to generation 1 moves.
    """
    arrays, meta = model.get_state()
    copy = model.clone()
    copy.set_state(arrays, meta)
    draw = model.sample

    def sample(n: int, *, rng: np.random.Generator) -> np.ndarray:
        X = np.asarray(draw(n, rng=rng), dtype=np.float64)
        return X + delta * field(X)

    copy.sample = sample  # type: ignore[method-assign]  # instance attribute: this copy only
    return copy


# ---- the measurement: random-feature moments of coupled samples -----------------------------------
@dataclass
class MomentFeatures:
    """φ(x) = (z, z_i z_j for i ≤ j, √(2/F) cos(ω_kᵀz + β_k)), z standardised by the real data.

    Mean-embedding coordinates of a distribution: the first and second moments (all a Gaussian
    has) and F random Fourier features of unit length scale (its shape).
    """

    mean: np.ndarray
    scale: np.ndarray
    omega: np.ndarray
    beta: np.ndarray

    @classmethod
    def random(cls, reference: np.ndarray, *, rng: np.random.Generator, n_fourier: int = 32) -> MomentFeatures:
        mean, scale = _standardisation(reference)
        d = reference.shape[1]
        return cls(mean=mean, scale=scale, omega=rng.standard_normal((n_fourier, d)),
                   beta=rng.uniform(0, 2 * math.pi, n_fourier))

    @property
    def size(self) -> int:
        """F, the number of features."""
        d = self.mean.size
        return d + d * (d + 1) // 2 + len(self.beta)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        iu = np.triu_indices(z.shape[1])
        quad = (z[:, :, None] * z[:, None, :])[:, iu[0], iu[1]]
        rff = math.sqrt(2.0 / max(len(self.beta), 1)) * np.cos(z @ self.omega.T + self.beta)
        return np.concatenate([z, quad, rff], axis=1)


#: families whose state is a fixed set of parameters (measured in parameter space by default)
PARAMETRIC_MODELS: tuple[str, ...] = ("gaussian", "gmm", "student_t")


def parameter_vector(model: GenerativeModel) -> np.ndarray:
    """The floating-point arrays of ``model.get_state()``, flattened and concatenated (sorted names)."""
    arrays, _ = model.get_state()
    parts = [np.asarray(arrays[k], dtype=np.float64).ravel() for k in sorted(arrays)
             if np.issubdtype(np.asarray(arrays[k]).dtype, np.floating)]
    return np.concatenate(parts) if parts else np.zeros(0)


# ---- the estimator --------------------------------------------------------------------------------
def dmd_rate(X: np.ndarray, Y: np.ndarray, *, rank_tol: float = 1e-2) -> float:
    """Spectral radius of the least-squares linear map Y ≈ J X on the span of X (exact DMD).

    ``X`` and ``Y`` are (F, P) snapshot pairs (columns v_t and v_{t+1}). With X = UΣVᵀ
    truncated to the singular values above ``rank_tol``·σ_max, the compressed map is
    Ã = Uᵣᵀ Y Vᵣ Σᵣ⁻¹ (Schmid 2010; Tu et al. 2014) and ρ̂ = max |eig Ã|. Each pair is
    scaled to |x| = 1 first (a pair of a linear map may be scaled freely), so late, small
    snapshots weigh as much as early ones.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    norms = np.linalg.norm(X, axis=0)
    keep = norms > 0
    if not np.any(keep):
        return 0.0
    X, Y = X[:, keep] / norms[keep], Y[:, keep] / norms[keep]
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    r = int(np.sum(s > rank_tol * s[0]))
    At = U[:, :r].T @ Y @ Vt[:r].T / s[:r]
    return float(np.max(np.abs(np.linalg.eigvals(At))))


def jackknife_interval(estimate: float, leave_one_out: Sequence[float], level: float) -> tuple[float, float, float]:
    """(se, low, high): jackknife standard error sqrt((K−1)/K Σ(θ̂_(j) − θ̄)²) and the
    t-interval estimate ± t_{K−1}·se (Efron & Tibshirani 1993, ch. 11)."""
    loo = np.asarray(leave_one_out, dtype=np.float64)
    K = loo.size
    if K < 2:
        return math.inf, -math.inf, math.inf
    se = float(math.sqrt((K - 1) / K * np.sum((loo - loo.mean()) ** 2)))
    q = float(stats.t.ppf(0.5 + level / 2, K - 1))
    return se, estimate - q * se, estimate + q * se


# ---- the probe ------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """The probe of one λ: the rate ρ̂, its interval and the raw distances.

    ``distances[j, t-1]`` = |v_{j,t}| for direction j at generation t = 1 … T;
    ``ratios[t-1]`` = sqrt(Σ_j |v_{j,t+1}|² / Σ_j |v_{j,t}|²), the RMS factor from t to t+1
    (a diagnostic: it mixes every mode, while the rate is the slowest one's); ``fits`` the
    model fits the probe ran (its cost, the reference run's T included).
    """

    lam: float
    n: int
    m: int
    generations: int
    directions: int
    replicates: int
    delta: float
    rate: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    level: float
    space: str
    estimator: str
    distances: np.ndarray
    ratios: np.ndarray
    fits: int
    seconds: float
    verdict: str = ""
    leave_one_out: np.ndarray = field(default_factory=lambda: np.zeros(0))
    differences: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def as_row(self) -> dict[str, Any]:
        """A JSON-able summary (for tables and the report)."""
        return {"lam": self.lam, "m": self.m, "rate": self.rate, "se": self.se, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "ratios": [float(r) for r in self.ratios], "generations": self.generations,
                "directions": self.directions, "replicates": self.replicates, "space": self.space,
                "estimator": self.estimator,
                "fits": self.fits, "seconds": self.seconds, "verdict": self.verdict}


def probe_verdict(lam: float, m: int, ci_high: float | None) -> str:
    """Predicted verdict: stable when the whole interval of the rate lies below 1."""
    if m == 0:
        return "no synthetic data: nothing to probe (every generation refits the real data)"
    if ci_high is None:
        return "no prediction"
    if ci_high < 1.0:
        return "stable: perturbations shrink every generation"
    if math.isinf(lam):
        return "not contracting: drifts with no real data to pull it back (collapse)"
    return "not contracting: no contraction detected (drift or collapse)"


def probe_stability(
    model: GenerativeModel,
    real: np.ndarray,
    *,
    lam: float | str,
    generations: int = 3,
    directions: int | None = None,
    replicates: int | None = None,
    delta: float | None = None,
    seed: int = 0,
    scheme: str = "replace",
    retrain: str = "finetune",
    variant: Mapping[str, Any] | str | None = None,
    source: Any = None,
    n_samples: int = 4000,
    level: float = 0.95,
    start: GenerativeModel | None = None,
    n_fourier: int = 32,
    rank_tol: float = 1e-2,
    space: str = "auto",
    estimator: str = "auto",
) -> ProbeResult:
    """Measure the local contraction rate of the retraining map at λ (module docstring).

    Args:
        model: an unfitted model (the config's family and options); never fitted in place.
        real: the real training set D_real, (n, d).
        lam: λ; ``generations`` T ≥ 2 retraining generations are probed (T − 1 transitions).
        directions: K random perturbation directions per replicate (each one perturbed run;
            default 3 in parameter space, 2 in sample space).
        replicates: R ≥ 3 independent replicates for the interval (default 8).
        delta: size δ of the displacement, in standard deviations of the data (default 0.02 in
            parameter space, 0.1 in sample space, where the moments of a network's samples have a
            noise floor that 0.02 reaches within two generations).
        seed, scheme, retrain, variant, source: as in :func:`genloop.loop.run_loop`; the
            reference run is the configured run's own first T generations.
        n_samples: coupled samples per model and generation for the moments.
        level: confidence level of the interval.
        start: a fitted generation-0 model to probe from (default: the run's own generation 0).

    Randomness: the loop's streams ``stage_rng(seed, t, stage)`` (shared by all runs), and
    ``stage_rng(seed, 0, "probe")`` for the directions, the features and the coupled samples.
    """
    t0 = time.perf_counter()
    lam = parse_lambda(lam)
    real = np.asarray(real, dtype=np.float64)
    if real.ndim != 2:
        raise DataError(f"the stability probe needs vector data of shape (n, d), got {real.shape}")
    if not (0 < level < 1):
        raise ConfigError(f"probe level must be in (0, 1), got {level!r}")
    if space == "auto":
        space = "parameters" if getattr(model, "name", "") in PARAMETRIC_MODELS else "samples"
    if space not in ("parameters", "samples"):
        raise ConfigError(f"probe space must be 'auto', 'parameters' or 'samples', got {space!r}")
    if delta is None:
        delta = 0.02 if space == "parameters" else 0.1
    if directions is None:  # the DMD needs directions that span the slow modes
        directions = 3 if space == "parameters" else 2
    if replicates is None:
        replicates = 8
    if isinstance(delta, bool) or not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise ConfigError(f"probe delta must be a positive number, got {delta!r}")
    for name, value, low in (("generations", generations, 2), ("directions", directions, 1),
                             ("replicates", replicates, 3), ("n_samples", n_samples, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"probe {name} must be an integer >= {low}, got {value!r}")
    if estimator == "auto":
        estimator = "dmd"
    if estimator not in ("dmd", "rms"):
        raise ConfigError(f"probe estimator must be 'auto', 'dmd' or 'rms', got {estimator!r}")
    n = real.shape[0]
    m = synthetic_count(lam, n)
    T, K, R = int(generations), int(directions), int(replicates)
    common = {"lam": lam, "scheme": scheme, "retrain": retrain, "variant": variant, "source": source}
    fits = 0
    if start is None:
        start = next(iter(run_loop(model, real, generations=0, seed=int(seed), **common)))  # type: ignore[arg-type]
        start = start.model
        fits = 1
    if m == 0:
        return ProbeResult(lam=lam, n=n, m=0, generations=T, directions=K, replicates=R, delta=float(delta),
                           rate=None, se=None, ci_low=None, ci_high=None, level=level, space=space,
                           estimator=estimator, distances=np.zeros((R, K, T)), ratios=np.zeros(T - 1), fits=fits,
                           seconds=time.perf_counter() - t0, verdict=probe_verdict(lam, 0, None))
    rng = stage_rng(seed, 0, "probe")
    features = MomentFeatures.random(real, rng=rng, n_fourier=n_fourier)
    measure_seed = int(rng.integers(0, 2**63 - 1))
    seeds = [int(seed)] + [int(s) for s in rng.integers(0, 2**31 - 1, size=R - 1)]

    def moments(mdl: GenerativeModel) -> np.ndarray:
        if space == "parameters":
            return parameter_vector(mdl)
        X = np.asarray(mdl.sample(int(n_samples), rng=np.random.default_rng(measure_seed)), dtype=np.float64)
        X = X.reshape(X.shape[0], -1)
        if not np.all(np.isfinite(X)):
            raise DataError("a probed model drew non-finite samples; lower the probe delta")
        return features(X).mean(axis=0)

    def run(first: GenerativeModel, s: int) -> list[np.ndarray]:
        return [moments(rec.model) for rec in run_loop(model, real, generations=T, seed=s,  # type: ignore[arg-type]
                                                        resume=LoopState(0, first), **common)]

    size = parameter_vector(start).size if space == "parameters" else features.size
    V = np.zeros((R, K, T, size))
    for r, s in enumerate(seeds):
        ref = run(start, s)
        for j in range(K):
            pert = perturbed_copy(start, SmoothField.random(real, rng=rng), float(delta))
            V[r, j] = np.asarray(run(pert, s)) - ref
        fits += (K + 1) * T
        log.info("probe λ=%g: replicate %d/%d done", lam, r + 1, R)
    rate, se, lo, hi, loo = _rate_with_interval(V, level, rank_tol, estimator)
    dist = np.linalg.norm(V, axis=3)
    ss = np.sum(dist**2, axis=(0, 1))
    ratios = np.sqrt(ss[1:] / np.where(ss[:-1] > 0, ss[:-1], np.nan))
    return ProbeResult(lam=lam, n=n, m=m, generations=T, directions=K, replicates=R, delta=float(delta), rate=rate,
                       se=se, ci_low=lo, ci_high=hi, level=level, space=space, estimator=estimator, distances=dist,
                       ratios=ratios, fits=fits, seconds=time.perf_counter() - t0,
                       verdict=probe_verdict(lam, m, hi), leave_one_out=loo, differences=V)


def _pairs(V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snapshot pairs (v_t, v_{t+1}) of every replicate and direction, as (F, P) column matrices."""
    F = V.shape[-1]
    return V[..., :-1, :].reshape(-1, F).T, V[..., 1:, :].reshape(-1, F).T


def rms_rate(V: np.ndarray) -> float:
    """(Σ|v_T|² / Σ|v_1|²)^(1/(2(T−1))): the root-mean-square factor per generation by which the
    paired differences ``V`` (..., T, F) changed from generation 1 to T, over all runs."""
    ss = np.sum(V * V, axis=-1).reshape(-1, V.shape[-2]).sum(axis=0)
    if ss[0] <= 0:
        return 0.0
    return float((ss[-1] / ss[0]) ** (1.0 / (2 * (V.shape[-2] - 1))))


def _estimate(V: np.ndarray, rank_tol: float, estimator: str) -> float:
    return dmd_rate(*_pairs(V), rank_tol=rank_tol) if estimator == "dmd" else rms_rate(V)


def _rate_with_interval(V: np.ndarray, level: float, rank_tol: float, estimator: str = "dmd"
                        ) -> tuple[float, float, float, float, np.ndarray]:
    rate = _estimate(V, rank_tol, estimator)
    loo = np.array([_estimate(np.delete(V, r, axis=0), rank_tol, estimator) for r in range(V.shape[0])])
    se, lo, hi = jackknife_interval(rate, loo, level)
    return rate, se, lo, hi, loo


def probe_config(cfg: Any, real: np.ndarray, *, source: Any = None, lambdas: Sequence[float] | None = None,
                 **options: Any) -> list[ProbeResult]:
    """The probe of every λ of a run config (its first seed, its model, scheme, retraining and
    variant) on ``real``, the config's real training set of that seed; ``options`` go to
    :func:`probe_stability`."""
    from genloop.models import make_model

    lams = list(cfg.loop.lambdas) if lambdas is None else [parse_lambda(v) for v in lambdas]
    model = make_model(cfg.model.name, **cfg.model.options)
    out = []
    for lam in lams:
        out.append(probe_stability(model, real, lam=lam, seed=int(cfg.loop.seeds[0]), scheme=cfg.loop.scheme,
                                   retrain=cfg.loop.retrain, variant=cfg.loop.variant, source=source, **options))
    return out


# ---- text -----------------------------------------------------------------------------------------
#: what the columns of :func:`format_probe_table` mean (printed under it)
PROBE_LEGEND = """\
rate       measured local contraction factor per generation of the retraining map, from how the difference
           between paired runs (same random streams, one perturbed at generation 1) changes from one
           generation to the next: dmd = the spectral radius of the linear map fitted to those changes
           (the slowest mode); rms = their root-mean-square factor per generation. < 1: perturbations shrink.
interval   jackknife confidence interval over independent replicates (each with its own streams).
RMS ratio  root-mean-square factor by which the paired differences changed, generation t to t+1 (all
           modes mixed; the rate is the slowest mode's).
fits       model fits the probe ran (its cost): replicates x (directions + 1) x generations, + generation 0.
space      parameters: the model's fitted arrays; samples: moments of coupled samples (neural families).
Stable when the whole interval lies below 1. Theorem 1 (paper) certifies a contraction when
λ(1 + Lε/α) < 1/2; `genloop theory` gives the exact rate where a closed form exists."""


def format_probe_table(results: Sequence[ProbeResult], *, unicode: bool = True) -> str:
    """A Markdown table: λ, m, the rate with its interval, the RMS ratios per generation, the
    cost and the predicted verdict."""
    lam_title = "λ" if unicode else "lambda"
    header = [lam_title, "m", "rate", f"{round(100 * results[0].level) if results else 95}% interval",
              "RMS ratio per generation", "fits", "verdict"]
    body = []
    for r in results:
        lam = "inf" if math.isinf(r.lam) else f"{r.lam:g}"
        if r.rate is None:
            rate = interval = ratios = "-"
        else:
            rate = f"{r.rate:.3f}"
            interval = f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
            ratios = ", ".join(f"{x:.3f}" for x in r.ratios)
        body.append([lam, str(r.m), rate, interval, ratios, str(r.fits), r.verdict])
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in body]
    return "\n".join(lines)
