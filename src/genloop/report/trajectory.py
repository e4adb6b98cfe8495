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

Predictions: the recursions of :mod:`genloop.theory.trajectory` (exact for the Gaussian mean,
first order for its covariance at finite λ, linearised around θ* for ``gmm``).
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
from genloop.theory.trajectory import (  # noqa: E402 - the formulas live in theory; re-exported here
    _as_2d,
    gaussian_moment_recursion,
    gaussian_predicted_distances,
    gaussian_theta_star,
    linear_map_predicted_distances,
    linearized_predicted_distances,
)

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
