"""Per-λ stability predictions for a model and a real data set (behind ``genloop theory``).

For each λ the row gives the exact local rate (spectral radius of J(λ) = λ(A+λB)^{-1}B), the
exponential-family rate λ/(1+λ) where it applies, the paper's Theorem 1 sufficient condition
λ(1+Lε/α) < 1/2 with its rate ρ(λ), the linearised stationary spread of the parameters around
the real-data fit with n real and ⌊λn⌋ synthetic samples per generation, and the paper's
Theorem 2 radius with bootstrap estimates of its constants (a, b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from genloop.errors import ConfigError, DataError
from genloop.theory.expfam import expfam_rate, synthetic_count
from genloop.theory.jacobian import (
    GaussianDensity,
    GMMDensity,
    ParametricDensity,
    StudentTDensity,
    analyze,
    bootstrap_constants,
    theorem2_radius,
)

__all__ = ["SUPPORTED_MODELS", "density_for", "theory_rows", "format_theory_table"]

SUPPORTED_MODELS: tuple[str, ...] = ("gaussian", "gmm", "student_t")


def density_for(model_name: str, model_options: dict[str, Any], d: int) -> ParametricDensity:
    """The :class:`ParametricDensity` adapter of a model name and its options, in dimension d.

    ``gaussian`` is genloop's registered Gaussian family (its options are validated by the
    model registry; the theory is that of the maximum-likelihood fit, which ``"unbiased"`` and a
    small ``reg_covar`` change only at order 1/n). ``gmm`` (full covariances) is the exact
    maximum-likelihood mixture (EM polished by Newton; the registered model's EM tolerance and
    ``reg_covar`` are not modelled). ``student_t`` (1-D; options ``dof``,
    ``learn_dof``) is a theory-only adapter, useful as a misspecified, non-exponential model.
    """
    options = dict(model_options or {})
    if model_name == "gaussian":
        from genloop.models import MODELS, available_models

        available_models()  # import the families so the registry knows "gaussian"
        MODELS.validate("gaussian", options)
        return GaussianDensity(d)
    if model_name == "gmm":
        from genloop.models import make_model

        gm = make_model("gmm", **options)  # validates the options
        if getattr(gm, "covariance_type", "full") != "full":
            raise ConfigError(
                f"the theory toolkit supports gmm with covariance_type 'full' only, got {gm.covariance_type!r}"
            )
        return GMMDensity(int(gm.n_components), d)
    if model_name == "student_t":
        unknown = sorted(set(options) - {"dof", "learn_dof"})
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for theory model 'student_t'; known: dof, learn_dof")
        if d != 1:
            raise ConfigError(f"theory model 'student_t' is 1-D, the data has d = {d}")
        dof = options.get("dof", 5.0)
        learn = options.get("learn_dof", False)
        if isinstance(dof, bool) or not isinstance(dof, (int, float)):
            raise ConfigError(f"student_t option dof must be a number > 0, got {dof!r}")
        if not isinstance(learn, bool):
            raise ConfigError(f"student_t option learn_dof must be true or false, got {learn!r}")
        return StudentTDensity(dof=float(dof), learn_dof=learn)
    raise ConfigError(
        f"the theory toolkit does not support model {model_name!r}; supported models: {', '.join(SUPPORTED_MODELS)}"
    )


def theory_rows(
    model_name: str,
    model_options: dict[str, Any],
    real: np.ndarray,
    lambdas: Sequence[float],
    n: int,
    *,
    rng: np.random.Generator,
    delta: float = 0.05,
    n_boot: int = 100,
) -> list[dict[str, Any]]:
    """One dict per λ with the exact and the paper's predictions (see the module docstring).

    Keys: ``model``, ``lam``, ``m`` (= ⌊λn⌋), ``exact_rate``, ``expfam_rate`` (None when the
    model is not an exponential family), ``kappa_max``, ``alpha``, ``L``, ``eps``,
    ``eps_floor`` (W1 between two model samples of the same sizes: the estimator's noise floor),
    ``paper_condition`` (bool), ``paper_rho`` (inf where undefined), ``paper_lambda_max``
    (1/(2(1+Lε/α)): the largest λ Theorem 1 certifies), ``stationary_sd``
    (sqrt of the trace of the linearised stationary covariance of θ; inf at λ = ∞),
    ``theorem2_radius`` (at confidence 1-δ; inf where ρ ≥ 1).

    ``real`` is the real data set (shape (N, d)) used to fit θ* and estimate A, B, L, ε;
    ``n`` is the number of real samples per generation of the loop being predicted.
    """
    real = np.asarray(real, dtype=np.float64)
    if real.ndim == 1:
        real = real[:, None]
    if real.ndim != 2:
        raise DataError(f"real data must have shape (n, d), got {real.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    if not lambdas:
        raise ConfigError("give at least one lambda")
    model = density_for(model_name, model_options, real.shape[1])
    an = analyze(model, real, rng=rng, w1_samples=1000)
    # mixtures refit by EM + Newton (~0.2 s each): fewer bootstrap resamples
    a, b = bootstrap_constants(model, real, rng=rng, n_boot=n_boot if model.n_params <= 20 else min(n_boot, 40))
    rows: list[dict[str, Any]] = []
    for lam in lambdas:
        lam = float(lam)
        if math.isnan(lam) or lam < 0:
            raise ConfigError(f"lambda must be >= 0 or inf, got {lam!r}")
        m = synthetic_count(lam, int(n))
        rho = an.paper_rate(lam)
        if math.isinf(lam):
            spread = math.inf
        else:
            spread = float(math.sqrt(max(np.trace(an.stationary_covariance(int(n), m)), 0.0)))
        rows.append(
            {
                "model": model_name,
                "lam": lam,
                "m": m,
                "exact_rate": an.spectral_radius(lam),
                "expfam_rate": expfam_rate(lam) if an.exponential_family else None,
                "kappa_max": float(an.kappa[0]),
                "alpha": an.alpha,
                "L": an.L,
                "eps": an.eps,
                "eps_floor": an.extras["eps_floor"],
                "paper_condition": an.paper_condition(lam),
                "paper_rho": rho,
                "paper_lambda_max": 0.5 / (1.0 + an.L * an.eps / an.alpha) if an.alpha > 0 else 0.0,
                "stationary_sd": spread,
                "theorem2_radius": theorem2_radius(a, b, int(n), delta, rho),
            }
        )
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "holds" if value else "fails"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if math.isinf(v):
        return "inf"
    return f"{v:.4g}"


_COLUMNS = [
    ("model", "model"),
    ("lam", "lambda"),
    ("m", "m"),
    ("exact_rate", "exact rate"),
    ("expfam_rate", "lam/(1+lam)"),
    ("paper_condition", "Thm 1 cond."),
    ("paper_rho", "Thm 1 rho"),
    ("paper_lambda_max", "Thm 1 max lambda"),
    ("stationary_sd", "stationary sd"),
    ("theorem2_radius", "Thm 2 radius"),
    ("kappa_max", "kappa_max"),
    ("alpha", "alpha"),
    ("L", "L (est.)"),
    ("eps", "eps (W1)"),
    ("eps_floor", "W1 noise floor"),
]


_PER_MODEL = {"kappa_max", "alpha", "L", "eps", "eps_floor", "paper_lambda_max"}


def format_theory_table(rows: Sequence[dict[str, Any]], *, compact: bool = False) -> str:
    """A Markdown table of :func:`theory_rows` output (one line per row).

    ``compact`` drops the columns that are the same for every λ of a model (κ_max, α, L, ε,
    the W1 noise floor, Theorem 1's largest certified λ).
    """
    if not rows:
        return ""
    columns = [c for c in _COLUMNS if not (compact and c[0] in _PER_MODEL)]
    header = [title for _, title in columns]
    body = [[_fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += ["| " + " | ".join(r[0].ljust(widths[0]) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths))) + " |" for r in body]
    return "\n".join(lines)
