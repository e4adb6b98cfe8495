"""Predicted against observed parameter trajectories: the distance of θ_t to θ* per generation.

θ* is the maximum-likelihood fit of the run's real training data (``sweep.real_data(cfg,
seed).train``): the fixed point of the retraining map G_λ (docs/theory.md). For every run of
an experiment folder the checkpoints θ_0 … θ_T are read back and compared with θ*.

Distances (all *squared*, so that seed averages are unbiased estimates of expectations):

``gaussian`` (mean parameters, where the exact laws live)
    ``"mu"``    ||μ_t − μ*||²               (the default part)
    ``"sigma"`` ||Σ_t − Σ*||_F²
    ``"total"`` the sum of the two.
    θ* = (μ*, Σ*) = (mean, divide-by-n covariance) of the real training set, whatever the
    run's ``estimator``: with ``estimator="unbiased"`` (or ``reg_covar > 0``) generation 0
    is Σ_0 = n/(n−1) Σ* (+ reg·I) ≠ Σ*, an offset the predictions carry exactly.
``gmm`` (full covariances; the adapter coordinates of :class:`~genloop.theory.jacobian.GMMDensity`)
    ``"theta"`` ||θ_t − θ*||² with θ = (component logits, means, log-Cholesky factors).
    θ* is the exact maximum-likelihood mixture reached from the run's generation-0 fit
    (EM + Newton polish, :meth:`GMMDensity.fit` with ``init``), so it is the local maximum
    the run started at; every generation's components are matched to θ*'s by the
    Hungarian algorithm on their means before θ_t is formed (label switching).

Predictions (replace scheme, n real + m = ⌊λn⌋ synthetic samples per generation):

* ``gaussian``, part ``"mu"`` — **exact** for every finite n, m, both estimators and any
  ``reg_covar``. With e_t = μ_t − μ*, u = ȳ_t − μ* (ȳ_t the mean of the m draws) and N = n+m,
  the fit of the mix is μ_{t+1} = μ* + (m/N) u and
  N Σ^{mle}_{t+1} = n Σ* + S_y + (nm/N) u uᵀ (pooled scatter, S_y ~ Wishart(m−1, Σ_t)).
  Taking expectations (E e_t = 0 since μ_0 = μ*) gives the linear recursion
  C_{t+1} = a²(C_t + V_t/m),  V_{t+1} = s[n Σ* + (m−1)V_t + (nm/N)(C_t + V_t/m)]/N + r I
  for C_t = Cov(μ_t − μ*), V_t = E[Σ_t], a = m/N, s = N/(N−1) (unbiased) or 1 (MLE),
  r = ``reg_covar``; E||μ_t − μ*||² = tr C_t. For the MLE it reproduces
  :func:`~genloop.theory.expfam.gaussian_mle_mean_covariance`.
  λ = ∞ (n draws of the previous model only): C_{t+1} = C_t + V_t/n, V_{t+1} = s(n−1)/n V_t + r I
  (:func:`~genloop.theory.expfam.fully_synthetic_mean_covariance`: the random walk).
* ``gaussian``, part ``"sigma"`` — exact at λ = 0 (deterministic) and λ = ∞ (Wishart
  moments: with S ~ W_d(k, Σ), E||S||_F² = (k²+k)||Σ||_F² + k(tr Σ)² and
  E(tr S)² = k²(tr Σ)² + 2k||Σ||_F², a closed linear recursion for E||Σ_t||_F², E(tr Σ_t)²).
  For finite λ > 0 it is the **first-order approximation** ||V_t − Σ*||_F² + g_t((tr Σ*)² +
  ||Σ*||_F²) with g_t = s²(a²/m)(1 − a^{2t})/(1 − a²): the mean-parameter recursion
  e_{t+1} = a(e_t + ξ_t) with Cov ξ_t ≈ Cov_{θ*}(T)/m, mapped to Σ = E[xxᵀ] − μμᵀ
  (E||zzᵀ − Σ||_F² = (tr Σ)² + ||Σ||_F² for z ~ N(0, Σ)); relative error O(1/n).
* ``gmm`` — **linearised** around θ* (:mod:`genloop.theory.jacobian`): θ_{t+1} − θ* ≈
  J(θ_t − θ*) + noise with J = λ'(A + λ'B)^{-1}B, λ' = m/n, noise covariance
  Q = λ'²(A+λ'B)^{-1}(B/m)(A+λ'B)^{-T}; so E||θ_t − θ*||² ≈ ||J^t e_0||² + tr P_t with
  P_{t+1} = J P_t Jᵀ + Q (P_t → :func:`~genloop.theory.jacobian.linearized_stationary_covariance`).
  The first term is the deterministic contraction (rate ρ = spectral radius of J) of the
  initial offset e_0 = θ_0 − θ* (scikit-learn's EM stops at ``tol``, so θ_0 ≠ θ*).
  λ = ∞: J = I and Q = B^{-1}/n (a random walk, valid only while the fit stays near θ*).
  When the run's checkpoints record EM iteration counts (scikit-learn stops at ``tol``), J and
  Q are those of the learner that ran: k warm-started EM iterations per generation (k = the
  run's median), :func:`genloop.theory.em.em_learner_map`, with ``reg_covar``.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genloop.errors import ConfigError, DataError  # noqa: E402
from genloop.loop.schemes import parse_lambda, synthetic_count  # noqa: E402

log = logging.getLogger(__name__)

__all__ = [
    "TRAJECTORY_MODELS",
    "PARTS",
    "TrajectoryComparison",
    "gaussian_theta_star",
    "gaussian_moment_recursion",
    "gaussian_predicted_distances",
    "linearized_predicted_distances",
    "linear_map_predicted_distances",
    "gmm_parameter_vector",
    "observed_distances",
    "predicted_distances",
    "compare_trajectories",
    "plot_trajectory_overlay",
]

#: model families whose trajectories can be measured and predicted
TRAJECTORY_MODELS: tuple[str, ...] = ("gaussian", "gmm")
#: the distance parts of each family; the first is the default
PARTS: dict[str, tuple[str, ...]] = {"gaussian": ("mu", "sigma", "total"), "gmm": ("theta",)}


# ---- checks -----------------------------------------------------------------------------------
def _check_model(model_name: str, options: dict[str, Any] | None = None) -> None:
    if model_name not in TRAJECTORY_MODELS:
        raise ConfigError(
            f"trajectories are supported for models {', '.join(TRAJECTORY_MODELS)}; got {model_name!r}"
        )
    if model_name == "gmm" and (options or {}).get("covariance_type", "full") != "full":
        raise ConfigError(
            f"trajectories of gmm need covariance_type 'full', got {(options or {}).get('covariance_type')!r}"
        )


def _check_part(model_name: str, part: str | None) -> str:
    parts = PARTS[model_name]
    if part is None:
        return parts[0]
    if part not in parts:
        raise ConfigError(f"distance part {part!r} is not defined for model {model_name!r}; choose one of {', '.join(parts)}")
    return part


def _check_generations(generations: object) -> int:
    if isinstance(generations, bool) or not isinstance(generations, (int, np.integer)) or generations < 0:
        raise ConfigError(f"generations must be an integer >= 0, got {generations!r}")
    return int(generations)


def _as_2d(real: np.ndarray) -> np.ndarray:
    real = np.asarray(real, dtype=np.float64)
    if real.ndim == 1:
        real = real[:, None]
    if real.ndim != 2 or real.shape[0] < 2:
        raise ConfigError(f"real data must have shape (n, d) with n >= 2 for trajectories, got {real.shape}")
    return real


# ---- Gaussian: θ* and exact laws ---------------------------------------------------------------
def gaussian_theta_star(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ* = (μ*, Σ*): the maximum-likelihood Gaussian of ``real`` (mean, divide-by-n covariance)."""
    real = _as_2d(real)
    mu = real.mean(axis=0)
    diff = real - mu
    return mu, diff.T @ diff / real.shape[0]


def gaussian_moment_recursion(
    n: int, lam: float, cov_star: np.ndarray, generations: int, *, estimator: str = "mle", reg_covar: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(C_t, V_t) for t = 0..generations, each of shape (generations+1, d, d).

    C_t = Cov(μ_t − μ*) and V_t = E[Σ_t] of the registered ``gaussian`` model in the replace
    loop (exact; recursion in the module docstring). ``cov_star`` is Σ*, the divide-by-n
    covariance of the n real samples; λ = ∞ is the fully synthetic loop.
    """
    generations = _check_generations(generations)
    lam = parse_lambda(lam)
    if estimator not in ("mle", "unbiased"):
        raise ConfigError(f"estimator must be 'mle' or 'unbiased', got {estimator!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"n must be an integer >= 2, got {n!r}")
    n = int(n)
    cov_star = np.atleast_2d(np.asarray(cov_star, dtype=np.float64))
    d = cov_star.shape[0]
    R = float(reg_covar) * np.eye(d)
    s0 = n / (n - 1) if estimator == "unbiased" else 1.0
    C = np.zeros((generations + 1, d, d))
    V = np.zeros((generations + 1, d, d))
    V[0] = s0 * cov_star + R
    if math.isinf(lam):
        s = n / (n - 1) if estimator == "unbiased" else 1.0
        for t in range(generations):
            C[t + 1] = C[t] + V[t] / n
            V[t + 1] = s * (n - 1) / n * V[t] + R
        return C, V
    m = synthetic_count(lam, n)
    if m == 0:  # every generation refits the real data: deterministic
        V[:] = V[0]
        return C, V
    N = n + m
    a = m / N
    s = N / (N - 1) if estimator == "unbiased" else 1.0
    for t in range(generations):
        C[t + 1] = a * a * (C[t] + V[t] / m)
        V[t + 1] = s * (n * cov_star + (m - 1) * V[t] + (n * m / N) * (C[t] + V[t] / m)) / N + R
    return C, V


def _wishart_sigma_sq(n: int, cov_star: np.ndarray, V: np.ndarray, estimator: str, reg_covar: float) -> np.ndarray:
    """E||Σ_t − Σ*||_F² of the fully synthetic loop, exact (Wishart second moments)."""
    d = cov_star.shape[0]
    r = float(reg_covar)
    g = (1.0 / (n - 1)) if estimator == "unbiased" else 1.0 / n  # Σ_{t+1} = g S + r I, S ~ W(n-1, Σ_t)
    k = n - 1
    S0 = V[0]
    F, T = float(np.sum(S0 * S0)), float(np.trace(S0)) ** 2  # E||Σ_t||_F², E(tr Σ_t)²
    out = np.empty(V.shape[0])
    for t in range(V.shape[0]):
        out[t] = F - 2.0 * float(np.sum(cov_star * V[t])) + float(np.sum(cov_star * cov_star))
        trV = float(np.trace(V[t]))
        F, T = (
            g * g * ((k * k + k) * F + k * T) + 2.0 * r * g * k * trV + r * r * d,
            g * g * (k * k * T + 2.0 * k * F) + 2.0 * r * d * g * k * trV + (r * d) ** 2,
        )
    return out


def gaussian_predicted_distances(
    n: int, lam: float, cov_star: np.ndarray, generations: int, *, estimator: str = "mle", reg_covar: float = 0.0
) -> dict[str, Any]:
    """Expected squared distances to θ* of the registered ``gaussian`` model (replace loop).

    Returns ``{"mu", "sigma", "total"}`` arrays of shape (generations+1,) (see the module
    docstring for the formulas) and ``"exact"``: a dict part → bool (``"mu"`` is always exact;
    ``"sigma"`` at λ = 0 and λ = ∞ only).
    """
    lam = parse_lambda(lam)
    cov_star = np.atleast_2d(np.asarray(cov_star, dtype=np.float64))
    C, V = gaussian_moment_recursion(n, lam, cov_star, generations, estimator=estimator, reg_covar=reg_covar)
    mu = np.trace(C, axis1=1, axis2=2)
    bias = np.sum((V - cov_star) ** 2, axis=(1, 2))
    m = synthetic_count(lam, int(n))
    if math.isinf(lam):
        sigma = _wishart_sigma_sq(int(n), cov_star, V, estimator, reg_covar)
        exact_sigma = True
    elif m == 0:
        sigma, exact_sigma = bias, True
    else:
        a = m / (n + m)
        s2 = ((n + m) / (n + m - 1)) ** 2 if estimator == "unbiased" else 1.0
        t = np.arange(V.shape[0])
        g = s2 * (a * a / m) * (1.0 - a ** (2 * t)) / (1.0 - a * a)
        sigma = bias + g * (np.trace(cov_star) ** 2 + float(np.sum(cov_star * cov_star)))
        exact_sigma = False
    return {"mu": mu, "sigma": sigma, "total": mu + sigma,
            "exact": {"mu": True, "sigma": exact_sigma, "total": exact_sigma}}


# ---- linearised prediction (any ParametricDensity) ------------------------------------------------
def linearized_predicted_distances(
    A: np.ndarray, B: np.ndarray, e0: np.ndarray, n: int, lam: float, generations: int
) -> np.ndarray:
    """E||θ_t − θ*||² ≈ ||J^t e_0||² + tr P_t, t = 0..generations (module docstring).

    ``A`` = −E_data[∇²log p_θ*], ``B`` the Fisher information at θ*, ``e0`` = θ_0 − θ*.
    The noise covariance Q is that of :func:`genloop.theory.jacobian.linearized_stationary_covariance`
    (which P_t tends to); at λ = ∞, J = I and Q = B^{-1}/n.
    """
    from genloop.theory.jacobian import retraining_jacobian

    generations = _check_generations(generations)
    lam = parse_lambda(lam)
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    e = np.asarray(e0, dtype=np.float64).reshape(-1)
    p = A.shape[0]
    if math.isinf(lam):
        J = np.eye(p)
        Q = np.linalg.inv(B) / n
    else:
        m = synthetic_count(lam, int(n))
        if m == 0:
            J, Q = np.zeros((p, p)), np.zeros((p, p))
        else:
            lam_eff = m / n
            M = np.linalg.inv(A + lam_eff * B)
            J = retraining_jacobian(A, B, lam_eff)
            Q = lam_eff**2 * M @ (B / m) @ M.T
    P = np.zeros((p, p))
    out = np.empty(generations + 1)
    for t in range(generations + 1):
        out[t] = float(e @ e) + float(np.trace(P))
        e = J @ e
        P = J @ P @ J.T + Q
    return out


def linear_map_predicted_distances(J: np.ndarray, Q: np.ndarray, e0: np.ndarray, generations: int) -> np.ndarray:
    """E||θ_t − θ*||² ≈ ||Jᵗe_0||² + tr P_t with P_{t+1} = J P_t Jᵀ + Q, for any linearised learner
    map (J, Q) (e.g. :func:`genloop.theory.em.em_learner_map`), t = 0..generations."""
    generations = _check_generations(generations)
    e = np.asarray(e0, dtype=np.float64).reshape(-1)
    P = np.zeros_like(np.asarray(J, dtype=np.float64))
    out = np.empty(generations + 1)
    for t in range(generations + 1):
        out[t] = float(e @ e) + float(np.trace(P))
        e = J @ e
        P = J @ P @ J.T + Q
    return out


# ---- GMM parameter vectors ---------------------------------------------------------------------
from genloop.theory.em import gmm_parameter_vector  # noqa: E402 - re-exported (defined without matplotlib)


# ---- reading runs ---------------------------------------------------------------------------------
@dataclass
class _Run:
    lam: str
    seed: int
    path: Path
    cfg: Any
    models: list[Any]


def _lam_label(run: Path) -> str:
    name = run.parent.name
    if not name.startswith("lam="):
        raise ConfigError(f"{run} is not inside a 'lam=<λ>' folder: cannot tell its λ")
    return name.split("=", 1)[1]


def _read_runs(folder: str | Path) -> list[_Run]:
    from genloop.config import parse_stored_config
    from genloop.store.run import RunStore
    from genloop.sweep import find_runs

    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"run folder not found: {folder}")
    paths = find_runs(folder)
    if not paths:
        raise ConfigError(f"{folder} holds no genloop run (no status.json found)")
    runs = []
    for path in paths:
        store = RunStore(path)
        cfg = parse_stored_config(store.read_config())
        _check_model(cfg.model.name, cfg.model.options)
        last = store.last_generation
        if last < 0:
            log.info("%s has no completed generation: left out of the trajectories", path)
            continue
        models = []
        for t in range(last + 1):
            try:
                models.append(store.load_model(t))
            except (FileNotFoundError, DataError):
                raise ConfigError(
                    f"{path} has no checkpoint of generation {t} (output.checkpoints: last or every: k?): "
                    "trajectories need every generation's checkpoint"
                ) from None
        seed = int(path.name.split("=", 1)[1]) if path.name.startswith("seed=") else int(cfg.loop.seeds[0])
        runs.append(_Run(lam=_lam_label(path), seed=seed, path=path, cfg=cfg, models=models))
    if not runs:
        raise ConfigError(f"no run under {folder} has a completed generation yet")
    return runs


class _SeedCache:
    """Per-seed real data and θ* (shared by every λ of a seed: same split, same generation 0)."""

    def __init__(self) -> None:
        self.train: dict[int, np.ndarray] = {}
        self.star: dict[int, Any] = {}

    def real(self, run: _Run) -> np.ndarray:
        from genloop.sweep import real_data

        if run.seed not in self.train:
            _, split = real_data(run.cfg, run.seed)
            self.train[run.seed] = _as_2d(split.train)
        return self.train[run.seed]

    def theta_star(self, run: _Run) -> Any:
        if run.seed not in self.star:
            real = self.real(run)
            if run.cfg.model.name == "gaussian":
                self.star[run.seed] = gaussian_theta_star(real)
            else:
                from genloop.theory.jacobian import GMMDensity

                gen0 = run.models[0]
                density = GMMDensity(int(gen0.n_components), real.shape[1])
                init = gmm_parameter_vector(gen0)
                import torch

                theta = density.fit(real, init=torch.as_tensor(init)).numpy()
                _, means, _ = (a.detach().numpy() for a in density.unpack(torch.as_tensor(theta)))
                self.star[run.seed] = (density, theta, means)
        return self.star[run.seed]


def _run_distances(run: _Run, cache: _SeedCache) -> dict[str, np.ndarray]:
    star = cache.theta_star(run)
    if run.cfg.model.name == "gaussian":
        mu_s, cov_s = star
        mu = np.array([float(np.sum((m.mean_ - mu_s) ** 2)) for m in run.models])
        sig = np.array([float(np.sum((m.covariance_ - cov_s) ** 2)) for m in run.models])
        return {"mu": mu, "sigma": sig, "total": mu + sig}
    _, theta, means = star
    th = np.array([float(np.sum((gmm_parameter_vector(m, means) - theta) ** 2)) for m in run.models])
    return {"theta": th}


def _stack(series: list[np.ndarray]) -> np.ndarray:
    length = min(len(s) for s in series)
    return np.array([s[:length] for s in series])


def _sorted(d: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(d.items(), key=lambda kv: math.inf if kv[0] == "inf" else float(kv[0])))


def observed_distances(folder: str | Path, *, part: str | None = None) -> dict[str, np.ndarray]:
    """Squared distances ||θ_t − θ*||² of every run, per λ label: shape (seeds, generations+1).

    ``part`` picks the distance (module docstring): ``"mu"`` (default), ``"sigma"`` or
    ``"total"`` for ``gaussian``; ``"theta"`` for ``gmm``. Runs of unequal length are cut to
    the shortest. Raises :class:`ConfigError` for a missing folder, an unsupported model or
    missing checkpoints.
    """
    runs = _read_runs(folder)
    part = _check_part(runs[0].cfg.model.name, part)
    cache = _SeedCache()
    by_lam: dict[str, list[np.ndarray]] = defaultdict(list)
    for run in runs:
        by_lam[run.lam].append(_run_distances(run, cache)[part])
    return _sorted({lam: _stack(s) for lam, s in by_lam.items()})


def predicted_distances(
    model_name: str,
    model_options: dict[str, Any] | None,
    real: np.ndarray,
    lam: float | str,
    generations: int,
    *,
    theta0: np.ndarray | None = None,
    theta_star: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    n_mc: int = 20_000,
) -> dict[str, Any]:
    """Expected squared distance to θ* per generation, t = 0..generations (replace scheme).

    ``real`` is the run's real training set (n = len(real) samples per generation).
    Returns ``{"mean_sq": array (generations+1,), "part": str, "exact": bool, "method": str}``;
    for ``gaussian`` also every part (``"mu"``, ``"sigma"``, ``"total"``) and ``"exact_parts"``
    (part → bool), ``"mean_sq"`` being ``"mu"`` (exact, module docstring). For ``gmm`` the linearised prediction
    :func:`linearized_predicted_distances` around θ* (``theta_star``, default the
    maximum-likelihood fit of ``real`` from k-means) with e_0 = ``theta0`` − θ* (default 0);
    B is a Monte Carlo Fisher information over ``n_mc`` draws of ``rng``.
    """
    options = dict(model_options or {})
    _check_model(model_name, options)
    real = _as_2d(real)
    n = real.shape[0]
    lam = parse_lambda(lam)
    if model_name == "gaussian":
        _, cov_star = gaussian_theta_star(real)
        out = gaussian_predicted_distances(
            n, lam, cov_star, generations, estimator=options.get("estimator", "mle"),
            reg_covar=float(options.get("reg_covar", 0.0)),
        )
        out["exact_parts"] = out.pop("exact")
        out.update(mean_sq=out["mu"], part="mu", exact=True,
                   method="exact finite-sample law of the Gaussian MLE mean (E||μ_t − μ*||² = tr C_t)")
        return out
    import torch

    from genloop.theory.jacobian import GMMDensity, expected_neg_hessian

    if rng is None:
        raise ConfigError("gmm trajectory predictions need an rng (Monte Carlo Fisher information)")
    density = GMMDensity(int(options.get("n_components", 8)), real.shape[1])
    theta = density.fit(real) if theta_star is None else torch.as_tensor(np.asarray(theta_star, dtype=np.float64))
    A = expected_neg_hessian(density, theta, real)
    B = density.fisher(theta, rng=rng, n_mc=n_mc)
    e0 = np.zeros(density.n_params) if theta0 is None else np.asarray(theta0, dtype=np.float64) - theta.numpy()
    mean_sq = linearized_predicted_distances(A, B, e0, n, lam, generations)
    return {"mean_sq": mean_sq, "theta": mean_sq, "part": "theta", "exact": False,
            "method": "linearised: ||J^t e_0||² + tr P_t (J = λ(A+λB)^{-1}B)"}


@dataclass
class TrajectoryComparison:
    """Observed and predicted squared distances to θ* for one λ of an experiment."""

    lam: str
    part: str
    observed: np.ndarray  # (seeds, generations+1)
    predicted: np.ndarray | None  # (generations+1,), mean over seeds of the per-seed predictions
    predicted_per_seed: np.ndarray | None = None
    exact: bool = False
    method: str = ""
    note: str = ""
    seeds: list[int] = field(default_factory=list)

    def standard_error(self) -> np.ndarray:
        """Monte Carlo standard error of the observed seed mean, per generation."""
        s = self.observed.shape[0]
        if s < 2:
            return np.full(self.observed.shape[1], np.nan)
        return self.observed.std(axis=0, ddof=1) / math.sqrt(s)


def compare_trajectories(
    folder: str | Path, *, part: str | None = None, seed: int = 0, n_mc: int = 20_000
) -> dict[str, TrajectoryComparison]:
    """Observed distances (:func:`observed_distances`) and their predictions, per λ label.

    Predictions are made per run (its own real data, θ* and, for ``gmm``, θ_0) and averaged
    over seeds. Schemes other than ``replace`` get no prediction (a note says so). ``seed``
    seeds the Monte Carlo Fisher information of ``gmm`` (one stream per run seed).
    """
    runs = _read_runs(folder)
    model_name = runs[0].cfg.model.name
    part = _check_part(model_name, part)
    cache = _SeedCache()
    fisher: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    em_cache: dict[int, Any] = {}
    grouped: dict[str, list[tuple[_Run, np.ndarray, np.ndarray | None, str, bool]]] = defaultdict(list)
    for run in runs:
        obs = _run_distances(run, cache)[part]
        generations = len(obs) - 1
        scheme = run.cfg.loop.scheme
        lam = parse_lambda(run.lam)
        if scheme != "replace" and not (lam == 0 and scheme != "fresh"):
            grouped[run.lam].append((run, obs, None, f"no prediction for scheme {scheme!r} (replace only)", False))
            continue
        real = cache.real(run)
        if model_name == "gaussian":
            opts = run.cfg.model.options
            _, cov_star = cache.theta_star(run)
            pred = gaussian_predicted_distances(
                real.shape[0], lam, cov_star, generations, estimator=opts.get("estimator", "mle"),
                reg_covar=float(opts.get("reg_covar", 0.0)))
            method = ("exact finite-sample law" if pred["exact"][part]
                      else "exact mean part; covariance part to first order in 1/n")
            grouped[run.lam].append((run, obs, pred[part], method, bool(pred["exact"][part])))
        else:
            from genloop.theory.jacobian import expected_neg_hessian

            density, theta, means = cache.theta_star(run)
            import torch

            th = torch.as_tensor(theta)
            if run.seed not in fisher:
                rng = np.random.default_rng([seed, run.seed])
                fisher[run.seed] = (expected_neg_hessian(density, th, real), density.fisher(th, rng=rng, n_mc=n_mc))
            A, B = fisher[run.seed]
            e0 = gmm_parameter_vector(run.models[0], means) - theta
            iters = [int(mdl.n_iter_) for mdl in run.models[1:] if getattr(mdl, "n_iter_", 0)]
            m = synthetic_count(lam, real.shape[0])
            if iters and math.isfinite(lam) and density.quadrature_grid(th) is not None:
                # the learner's own map: k warm-started EM iterations (k = the run's median)
                from genloop.theory.em import em_learner_map, em_step_derivatives

                if run.seed not in em_cache:
                    em_cache[run.seed] = em_step_derivatives(
                        density, th, real, reg_covar=float(run.cfg.model.options.get("reg_covar", 1e-6)))
                k = int(np.median(iters))
                lm = em_learner_map(em_cache[run.seed], m / real.shape[0], [k], m)[k]
                pred_arr = linear_map_predicted_distances(lm.J, lm.Q_synth, e0, generations)
                method = f"linearised around θ*, the run's own map: {k} warm-started EM iterations per generation"
            else:
                pred_arr = linearized_predicted_distances(A, B, e0, real.shape[0], lam, generations)
                method = "linearised around θ* (exact maximiser, J = λ(A+λB)^{-1}B)"
            grouped[run.lam].append((run, obs, pred_arr, method, False))
    out: dict[str, TrajectoryComparison] = {}
    for lam, items in grouped.items():
        observed = _stack([it[1] for it in items])
        preds = [it[2] for it in items]
        if all(p is not None for p in preds):
            per_seed = _stack(preds)[:, : observed.shape[1]]  # type: ignore[arg-type]
            predicted = per_seed.mean(axis=0)
            note = ""
        else:
            per_seed = predicted = None
            note = next(it[3] for it in items if it[2] is None)
        out[lam] = TrajectoryComparison(
            lam=lam, part=part, observed=observed, predicted=predicted, predicted_per_seed=per_seed,
            exact=all(it[4] for it in items) and predicted is not None, method=items[0][3] if predicted is not None else "",
            note=note, seeds=[it[0].seed for it in items],
        )
    return _sorted(out)


_PART_LABEL = {"mu": "||μ_t − μ*||", "sigma": "||Σ_t − Σ*||_F", "total": "||(μ_t, Σ_t) − (μ*, Σ*)||",
               "theta": "||θ_t − θ*||"}


def plot_trajectory_overlay(
    folder: str | Path,
    path: str | Path,
    *,
    part: str | None = None,
    comparisons: dict[str, TrajectoryComparison] | None = None,
    title: str | None = None,
) -> Path:
    """Observed RMS distance to θ* per λ (root of the seed mean of squared distances; band =
    10–90 % quantiles of the per-seed distance) with the predicted RMS dashed; log y axis.

    ``comparisons`` reuses the output of :func:`compare_trajectories` (else it is computed).
    """
    comps = comparisons if comparisons is not None else compare_trajectories(folder, part=part)
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    floor = math.inf
    for i, (lam, comp) in enumerate(comps.items()):
        color = f"C{i % 10}"
        gens = np.arange(comp.observed.shape[1])
        label = "λ = ∞" if lam == "inf" else f"λ = {lam}"
        rms = np.sqrt(comp.observed.mean(axis=0))
        dist = np.sqrt(comp.observed)
        pos = rms[rms > 0]
        if pos.size:
            floor = min(floor, float(pos.min()))
        ax.plot(gens, np.where(rms > 0, rms, np.nan), marker="o", ms=3, color=color,
                label=f"{label}: observed ({comp.observed.shape[0]} seeds)")
        if comp.observed.shape[0] > 1:
            lo, hi = np.quantile(dist, [0.1, 0.9], axis=0)
            ax.fill_between(gens, np.where(lo > 0, lo, np.nan), np.where(hi > 0, hi, np.nan), color=color, alpha=0.15)
        if comp.predicted is not None:
            pred = np.sqrt(np.maximum(comp.predicted, 0.0))
            kind = "exact" if comp.exact else "approx."
            ax.plot(gens, np.where(pred > 0, pred, np.nan), "--", color=color, lw=1.2, label=f"{label}: predicted ({kind})")
    ax.set_xlabel("generation t")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    part_name = next(iter(comps.values())).part if comps else (part or "")
    ax.set_ylabel(f"RMS {_PART_LABEL.get(part_name, 'distance')}")
    if math.isfinite(floor):
        ax.set_yscale("log")
    ax.set_title(title or "distance of the parameters to θ* (observed vs predicted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
