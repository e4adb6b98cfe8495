"""The text of ``genloop theory CONFIG``: per-λ predictions for the run a config describes.

:func:`config_theory` is the one entry point shared by ``genloop theory`` and ``genloop
report``: it draws the config's real training set exactly as ``genloop run`` does for its
first seed, runs :func:`genloop.theory.report.theory_analysis` with the stream
``stage_rng(seed, 0, "theory")`` and caches the result per config, so both print the same
numbers and the report computes them once.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from genloop.errors import ConfigError
from genloop.rng import stage_rng
from genloop.theory import gaussian
from genloop.theory.laws import LAW_MODELS, LawTheoryResult, law_analysis
from genloop.theory.report import (
    LEGEND,
    THEORY_MODELS,
    TheoryResult,
    _ascii,
    format_law_text,
    format_theory_table,
    theory_analysis,
)
from genloop.theory.variant_laws import VariantTheoryResult

if TYPE_CHECKING:
    from genloop.config import RunConfig

_CACHE: dict[str, TheoryResult] = {}


def _key(cfg: RunConfig) -> str:
    return json.dumps([cfg.model_dump(mode="json"), cfg.data.options, cfg.model.options], sort_keys=True, default=repr)


def config_theory(cfg: RunConfig, *, progress: bool = False) -> TheoryResult | LawTheoryResult:
    """The theory of a config's run (its first seed), computed once per process.

    A loop variant gets the laws of :mod:`genloop.theory.variant_laws`; a model or variant with
    no closed form gets one row per λ saying "no prediction", the reason and the command that
    measures the rate instead (``genloop probe CONFIG``). Raises :class:`ConfigError` only for
    non-vector data of a family with a law.
    """
    from genloop.config import real_data

    key = _key(cfg)
    if key in _CACHE:
        return _CACHE[key]
    variant = variant_description(cfg)
    scheduled = _schedule_only(cfg) and cfg.model.name == "gaussian" and cfg.loop.scheme in ("replace", "fresh")
    reason = _no_law_reason(cfg)
    if not reason and variant and not scheduled:
        reason = _variant_reason(cfg)
    if reason:
        # The plain loop's numbers would describe another run: one "no prediction" row per λ instead.
        from genloop.loop.schemes import parse_lambda
        from genloop.theory.variant_laws import no_prediction_result

        res = no_prediction_result(cfg.model.name, cfg.data.n, [parse_lambda(v) for v in cfg.loop.lambdas], reason,
                                   scheme=cfg.loop.scheme, generations=cfg.loop.generations,
                                   command=PROBE_COMMAND if _probe_applies(cfg) else "")
        _CACHE[key] = res
        return res
    seed = cfg.loop.seeds[0]
    source, split = real_data(cfg, seed)
    real = np.asarray(split.train, dtype=np.float64)
    if variant and not scheduled:
        from genloop.theory.variant_laws import variant_analysis

        if real.ndim != 2:
            raise ConfigError(f"genloop theory needs vector data of shape (n, d), data {cfg.data.name!r} has {real.shape}")
        opts = cfg.model.options
        res = variant_analysis(cfg.loop.variant, real, list(cfg.loop.lambdas), cfg.loop.generations,
                               estimator=str(opts.get("estimator", "mle")), reg_covar=float(opts.get("reg_covar", 0.0)),
                               scheme=cfg.loop.scheme, model_name=cfg.model.name)
        if res.rows and all(str(r["verdict"]).startswith("no prediction") for r in res.rows):
            for r in res.rows:
                r["verdict"] += f"; measure it: {PROBE_COMMAND}"
        _CACHE[key] = res
        return res
    if scheduled:
        from genloop.theory.schedule import gaussian_schedule_analysis

        opts = cfg.model.options
        sched = gaussian_schedule_analysis(
            real, list(cfg.loop.lambdas), cfg.loop.generations, cfg.loop.variant.lam_at, scheme=cfg.loop.scheme,
            estimator=str(opts.get("estimator", "mle")), reg_covar=float(opts.get("reg_covar", 0.0)),
            data_cov=getattr(source, "cov_", None))
        _CACHE[key] = sched
        return sched
    if cfg.model.name in LAW_MODELS:
        law = law_analysis(cfg.model.name, cfg.model.options, cfg.data.name, cfg.data.options, real,
                           list(cfg.loop.lambdas), real.shape[0], scheme=cfg.loop.scheme,
                           generations=cfg.loop.generations)
        _CACHE[key] = law
        return law
    if real.ndim != 2:
        raise ConfigError(f"genloop theory needs vector data of shape (n, d), data {cfg.data.name!r} has {real.shape}")
    result = theory_analysis(
        cfg.model.name, cfg.model.options, real, list(cfg.loop.lambdas), real.shape[0],
        rng=stage_rng(seed, 0, "theory"), scheme=cfg.loop.scheme, generations=cfg.loop.generations, seed=seed,
        progress=progress, retrain=cfg.loop.retrain, data_cov=getattr(source, "cov_", None),
    )
    _CACHE[key] = result
    return result


def terminal_unicode(stream: Any = None) -> bool:
    """Whether ``stream`` (default stdout) can print λ, κ, ‖ and ᵗ."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        "λκρ‖ᵗ₂θ".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def probe_command(config_path: str | None = None, overrides: Sequence[str] = ()) -> str:
    """The exact ``genloop probe`` command line for a config file and its ``--set`` overrides."""
    import shlex

    if config_path is None:
        return PROBE_COMMAND
    return " ".join(["genloop", "probe", shlex.quote(str(config_path)),
                     *(f"--set {shlex.quote(item)}" for item in overrides)])


def theory_text(
    cfg: RunConfig, *, unicode: bool | None = None, progress: bool | None = None, legend: bool = True,
    config_path: str | None = None, overrides: Sequence[str] = (),
) -> str:
    """The report printed by ``genloop theory``: header, per-λ table, verdicts and a legend.

    ``unicode`` defaults to what stdout can encode; ``progress`` (a bar on stderr) to whether
    stderr is a terminal; ``config_path`` and ``overrides`` name the config in the command a
    "no prediction" row suggests.
    """
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    res = config_theory(cfg, progress=progress)
    uni = terminal_unicode() if unicode is None else unicode
    seed = cfg.loop.seeds[0]
    if isinstance(res, VariantTheoryResult):
        return _variant_text(res, cfg, unicode=uni, legend=legend,
                             command=probe_command(config_path, overrides))
    if isinstance(res, LawTheoryResult):
        return format_law_text(res, f"theory for {cfg.name or cfg.model.name}: model {cfg.model.name}, data "
                               f"{cfg.data.name}, seed {seed}", unicode=uni, legend=legend)
    r0 = res.rows[0]
    w1 = res.w1
    eps_word = ("consistent with no misspecification" if w1["eps_consistent"]
                else "above the floor: the model misses part of the data")
    lines = [
        f"theory for {cfg.name or cfg.model.name}: model {cfg.model.name}, data {cfg.data.name} "
        f"(n = {res.n}, d = {res.d}), scheme {res.scheme}, {res.generations} generations, seed {seed}",
        f"learner: {res.learner}",
        f"κ_max = {r0['kappa_max']:.4g}, α = λ_min(A) = {res.alpha:.4g}, ‖A − B‖₂ = {res.delta_AB:.4g}, "
        f"L (estimate) = {res.L:.4g}; Fisher information B by {res.fisher}",
        f"ε̂ = W₁(real, model) = {w1['eps']:.3g} ± {w1['eps_sd']:.2g} vs noise floor {w1['eps_floor']:.3g} "
        f"± {w1['eps_floor_sd']:.2g} (both {int(w1['w1_points'])} vs {int(w1['w1_points'])} points): {eps_word}",
        f"Theorem 1 certifies λ < {r0['paper_lambda_max']:.4g} (estimated L, ε); with the exact ‖A − B‖ in place "
        f"of Lε: λ < {r0['free_lambda_max']:.4g}. The exact rate (column \"rate\") is < 1 for every finite λ.",
    ]
    lines += [f"note: {note}" for note in res.notes]
    if any(math.isinf(lam) for lam in cfg.loop.lambdas) and cfg.model.name == "gaussian" \
            and cfg.loop.scheme in ("replace", "fresh"):
        lines.append(_collapse_line(cfg, res.d))
    table = format_theory_table(res.rows, compact=True, unicode=uni)
    text = "\n".join(lines) + "\n\n" + table
    if legend:
        text += "\n\n" + LEGEND
    text += f"\n\n(computed in {res.seconds:.1f} s)"
    return text if uni else _ascii(text)


#: What a "no prediction" row tells the user to run instead (``theory_text`` names the config file).
PROBE_COMMAND = "genloop probe CONFIG"


def _probe_applies(cfg: RunConfig) -> bool:
    """Whether ``genloop probe`` can measure the config's rate: it needs vector data (n, d), so
    not images (their runs have no measured rate either; only the observed verdicts)."""
    from genloop.data import DATASETS

    try:
        return bool(getattr(DATASETS.get(cfg.data.name), "vector", True))
    except Exception:  # noqa: BLE001 - a user's data class that fails to load: let the probe say
        return True


def _no_law_reason(cfg: RunConfig) -> str:
    """'' when some law covers the config's model, else why none does."""
    name = cfg.model.name
    if name in THEORY_MODELS:
        return ""
    from genloop.models import MODELS
    from genloop.registry import is_import_path

    if is_import_path(name):
        return f"model {name!r} is the user's own class: genloop has no closed-form law of its retraining map"
    try:
        neural = bool(getattr(MODELS.get(name), "is_neural", False))
    except Exception:  # noqa: BLE001 - an entry point that fails to load: the reason stays generic
        neural = False
    if neural:
        return (f"model {name!r} is a neural family that fine-tunes for a fixed budget each generation, a retraining "
                "map with no closed form")
    return f"model {name!r} has no closed-form law of its retraining map in genloop theory"


def _variant_reason(cfg: RunConfig) -> str:
    """Why the variant laws do not cover the config's model or scheme ('' when they may: the
    checks that need the data, such as the dimension, come with the law itself)."""
    from genloop.theory.variant_laws import unsupported_reason

    if cfg.model.name == "gaussian" and cfg.loop.scheme == "replace":
        return ""
    return unsupported_reason(cfg.loop.variant, model=cfg.model.name, d=1, scheme=cfg.loop.scheme)


def _variant_text(res: VariantTheoryResult, cfg: RunConfig, *, unicode: bool, legend: bool, command: str) -> str:
    """The text of a loop variant's law (or of "no prediction" rows): header, table, legend."""
    variant = variant_description(cfg)
    lines = [f"theory for {cfg.name or cfg.model.name}: model {cfg.model.name}, data {cfg.data.name} (n = {res.n}), "
             f"scheme {res.scheme}, {res.generations} generations, seed {cfg.loop.seeds[0]}"
             + (f"; {variant}" if variant else ""),
             f"learner: {res.learner}", f"law: {res.law}"]
    lines += [f"note: {note}" for note in res.notes]
    rows = [{**r, "verdict": str(r.get("verdict", "")).replace(PROBE_COMMAND, command)} for r in res.rows]
    table = format_theory_table(rows, compact=True, unicode=unicode, extra=list(res.extra))
    text = "\n".join(lines) + "\n\n" + table
    if legend:
        text += "\n\n" + res.legend.replace(PROBE_COMMAND, command)
    text += f"\n\n(computed in {res.seconds:.1f} s)"
    return text if unicode else _ascii(text)


def _schedule_only(cfg: RunConfig) -> bool:
    """A plain loop whose only change is a λ schedule (the Gaussian has a law for it)."""
    variant = getattr(cfg.loop, "variant", None)
    return (variant is not None and getattr(variant, "kind", "plain") == "plain"
            and getattr(variant, "lam_schedule", None) is not None)


def variant_description(cfg: RunConfig) -> str:
    """'' for the paper's plain loop, else a short description of ``loop.variant``."""
    variant = getattr(cfg.loop, "variant", None)
    if variant is None:
        return ""
    kind = getattr(variant, "kind", "plain")
    schedule = getattr(variant, "lam_schedule", None)
    if kind == "plain" and schedule is None:
        return ""
    parts = [] if kind == "plain" else [f"loop variant {kind!r}"]
    if schedule is not None:
        parts.append(f"a λ schedule ({schedule!r})")
    return " with ".join(parts)


def _collapse_line(cfg: RunConfig, d: int) -> str:
    """Gaussian collapse predictions (paper, Section 2.2) at the config's last generation."""
    estimator = cfg.model.options.get("estimator", "mle")
    n, T = cfg.data.n, cfg.loop.generations
    if n < d + 1:
        return f"Gaussian collapse: n = {n} samples cannot refit a {d}-dimensional covariance."
    if d == 1:
        lo, med, hi = gaussian.sigma_ratio_band(n, T, estimator, level=0.9)
        return (
            f"Gaussian collapse at λ = ∞ after {T} generations ({estimator}): "
            f"E[σ_T]/σ_0 = {gaussian.expected_sigma_ratio(n, T, estimator):.4g}, "
            f"median {med:.4g}, 90% band [{lo:.4g}, {hi:.4g}]"
        )
    return (
        f"Gaussian collapse at λ = ∞ after {T} generations ({estimator}): "
        f"E[Σ_T] = {gaussian.expected_covariance_ratio(n, T, estimator):.4g} Σ_0, "
        f"E[det Σ_T / det Σ_0] = {gaussian.generalized_variance_moment(n, d, T, estimator):.4g}"
    )
