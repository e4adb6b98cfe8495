"""Loop variants of the literature: what enters a generation's synthetic half.

The paper's loop (``plain``) draws ⌊λ·n⌋ fresh samples of the previous model. The variants
change how those samples are made; the scheme (:mod:`genloop.loop.schemes`) still decides how
they are mixed with the real data. Each variant is a frozen pydantic block, written in a
config as ``loop.variant: {kind: ..., ...}`` and passed to :func:`genloop.loop.run_loop` as
``variant=``:

``curated`` (Ferbach et al., NeurIPS 2024; a verifier as in Feng et al. 2024)
    candidates are drawn in groups of K and one per group is kept with the Bradley–Terry /
    softmax probability exp(r(x_i)/τ) / Σ_j exp(r(x_j)/τ) (``select: softmax``; τ = 0 keeps the
    group's best), or the top ``fraction`` of ⌈k / fraction⌉ candidates by r(x) is kept
    (``select: top``). The reward r is a built-in or a ``module:function`` callable.
``corrected`` (Gillman et al., ICML 2024)
    every synthetic sample is moved toward a correction c(x): x ← x + γ (c(x) − x).
``biased`` (Alemohammad et al., ICLR 2024, "sampling bias")
    samples drawn with a quality/diversity knob: a temperature (latent or covariance scale),
    a log-density truncation, or sampler overrides (EDM's churn / noise scale, DDIM's η, …).
``mixture``
    samples drawn from a weighted mixture of the models of all (or the last k) generations.

Every block also takes ``lam_schedule``: λ_t per generation, as a list (λ_1, λ_2, …; the last
value repeats) or a formula in ``t``, ``lam`` (the run's λ) and ``T`` (the number of
generations), e.g. ``"lam * t / T"``.

Randomness: a variant draws only from the generation's named streams (``sample``, ``curate``,
``correct``, ``mixture``, ``reward``), so runs are reproducible and resume exactly.
"""

from __future__ import annotations

import ast
import functools
import importlib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_serializer, field_validator, model_validator

from genloop.errors import ConfigError, DataError
from genloop.loop.schemes import parse_lambda
from genloop.models.base import GenerativeModel

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_BUILTIN_REWARDS = ("quadratic", "region", "classifier", "log-density")
_BUILTIN_CORRECTIONS = ("knn", "ot-gaussian", "denoiser")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_callable_name(spec: str, *, what: str) -> None:
    """Check that ``spec`` is written ``module:function``, *without importing anything*.

    Validating a config (reading a run folder: ``check``, ``show``, ``report``, ``eval``,
    ``--resume``'s comparison of stored configs) never imports the code a config names;
    :func:`load_callable` imports it when a run starts (:func:`check_variant_callables`).
    """
    if not isinstance(spec, str) or not _CALLABLE.match(spec):
        raise ConfigError(f"{what} {spec!r} is neither a built-in nor a 'module:function' callable")


def load_callable(spec: str, *, what: str) -> Callable[..., Any]:
    """Import ``module:function`` and return the function (a :class:`ConfigError` otherwise).

    Importing runs the module's code: this is called only when a run starts.
    """
    check_callable_name(spec, what=what)
    module_name, fn_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no callable {fn_name!r}")
    return fn


# ---- λ schedules -------------------------------------------------------------------------------
_FUNCS: dict[str, Callable[..., float]] = {
    "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "min": min, "max": max, "abs": abs,
}
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
}


@functools.lru_cache(maxsize=128)
def _parse_formula(formula: str) -> ast.Expression:
    """The syntax tree of a formula, parsed once (a schedule is evaluated for every generation)."""
    try:
        return ast.parse(formula, mode="eval")
    except SyntaxError:
        raise ConfigError(f"lam_schedule formula {formula!r} is not an arithmetic expression") from None


def exact_formula(formula: str, names: Mapping[str, float]) -> Fraction | float:
    """Evaluate an arithmetic formula exactly where arithmetic allows it.

    Numbers are read as the rationals they are written as (``0.7`` is 7/10, not the nearest
    float), the names (``t``, ``lam``, ``T``) likewise (a float through its shortest repr), and
    + − × / // % and integer powers stay rational, so ``0.7*t`` at t = 3 is exactly 21/10 and
    ⌊λ_t·n⌋ is the count the formula states (in floats 0.7·3 = 2.0999999999999996). ``exp``,
    ``log``, ``sqrt``, a fractional power and ``inf`` leave the rationals: the result is then
    a float. Hand-written over :mod:`ast` rather than ``eval`` so that a config cannot run code.
    """
    tree = _parse_formula(formula)

    def number(value: Any) -> Fraction | float:
        if isinstance(value, Fraction):
            return value
        if isinstance(value, (int, np.integer)):
            return Fraction(int(value))
        value = float(value)
        return Fraction(repr(value)) if math.isfinite(value) else value

    def ev(node: ast.AST) -> Fraction | float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return number(node.value)
        if isinstance(node, ast.Name):
            if node.id == "inf":
                return math.inf
            if node.id not in names:
                raise ConfigError(f"lam_schedule formula {formula!r}: unknown name {node.id!r} (use t, lam, T)")
            return number(names[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and not (isinstance(right, Fraction) and right.denominator == 1):
                left, right = float(left), float(right)  # a fractional power is irrational in general
            out = _BINOPS[type(node.op)](left, right)
            if isinstance(out, int):  # Fraction // Fraction is an int
                return Fraction(out)
            return out if isinstance(out, Fraction) else float(out)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
            args = [ev(a) for a in node.args]
            if node.func.id in ("min", "max", "abs"):
                return _FUNCS[node.func.id](*args)
            return float(_FUNCS[node.func.id](*[float(a) for a in args]))
        raise ConfigError(f"lam_schedule formula {formula!r}: {ast.dump(node)[:40]}… is not allowed")

    try:
        return ev(tree)
    except ConfigError:
        raise
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ConfigError(f"lam_schedule formula {formula!r} fails at {dict(names)}: {exc}") from None


def eval_formula(formula: str, names: Mapping[str, float]) -> float:
    """The value of :func:`exact_formula` as a float."""
    return float(exact_formula(formula, names))


def _parse_schedule(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("lam_schedule needs at least one value")
        return tuple(parse_lambda(v) for v in value)
    raise ValueError(f"lam_schedule must be a list of λ values or a formula string, got {value!r}")


# ---- rewards -------------------------------------------------------------------------------------
def _reward_from_str(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class RewardConfig(_Block):
    """A reward r(x) for curation.

    ``quadratic``: r(x) = −(scale/2)·‖x − center‖² (vectors; center defaults to 0).
    ``region``: r(x) = 1 inside the ball ‖x − center‖ ≤ radius, or the box low ≤ x ≤ high, else 0.
    ``classifier``: the offline digits classifier's softmax probability of class ``digit``
    (images, :mod:`genloop.metrics.features.classifier`).
    ``log-density``: log p_ref(x) of a ``reference`` model ``{name: ..., **options}`` fitted on
    the real training data at the start of the run.
    ``module:function``: any callable ``f(X) -> (n,)`` rewards.
    """

    name: str
    center: tuple[float, ...] | None = None
    scale: float = Field(default=1.0, gt=0)
    radius: float | None = Field(default=None, gt=0)
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    digit: int | None = Field(default=None, ge=0, le=9)
    dataset: Literal["digits", "mnist"] = "digits"
    classifier_seed: int = Field(default=0, ge=0)
    cache_dir: str | None = Field(default=None, description="classifier: where the trained classifier is cached")
    reference: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        if self.name == "region":
            ball, box = self.radius is not None, self.low is not None or self.high is not None
            if ball == box:
                raise ConfigError("reward 'region' needs either radius (a ball around center) or low and high (a box)")
            if box and (self.low is None or self.high is None or len(self.low) != len(self.high)):
                raise ConfigError("reward 'region' as a box needs low and high of the same length")
        elif self.name == "classifier":
            if self.digit is None:
                raise ConfigError("reward 'classifier' needs digit: the class (0-9) whose confidence is rewarded")
        elif self.name == "log-density":
            if not self.reference or not isinstance(self.reference.get("name"), str):
                raise ConfigError("reward 'log-density' needs reference: {name: <model>, ...options}")
            from genloop.models import MODELS

            opts = {k: v for k, v in self.reference.items() if k != "name"}
            MODELS.validate(self.reference["name"], opts)
        elif self.name != "quadratic":
            check_callable_name(self.name, what="reward")  # imported only when a run starts
        return self


Reward = Callable[[np.ndarray], np.ndarray]


def _center(cfg: RewardConfig, d: int) -> np.ndarray:
    c = np.zeros(d) if cfg.center is None else np.asarray(cfg.center, dtype=np.float64)
    if c.shape != (d,):
        raise DataError(f"reward center has {c.size} coordinates but the data have {d}")
    return c


def _vectors(X: np.ndarray, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"reward {what!r} is for vectors (n, d), got shape {X.shape}")
    return X


def quadratic_reward(X: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """r(x) = −(scale/2)·‖x − center‖² for each row."""
    return -0.5 * scale * np.sum((X - center) ** 2, axis=1)


def make_reward(cfg: RewardConfig, *, real: np.ndarray, rng: np.random.Generator) -> Reward:
    """Build the reward function of ``cfg`` for data shaped like ``real``."""
    if cfg.name == "quadratic":
        c = _center(cfg, _vectors(real, "quadratic").shape[1])
        return lambda X: quadratic_reward(_vectors(X, "quadratic"), c, cfg.scale)
    if cfg.name == "region":
        d = _vectors(real, "region").shape[1]
        if cfg.radius is not None:
            c, r2 = _center(cfg, d), cfg.radius**2
            return lambda X: (np.sum((_vectors(X, "region") - c) ** 2, axis=1) <= r2).astype(np.float64)
        lo, hi = np.asarray(cfg.low, dtype=np.float64), np.asarray(cfg.high, dtype=np.float64)
        if lo.shape != (d,):
            raise DataError(f"reward box has {lo.size} coordinates but the data have {d}")
        return lambda X: np.all((_vectors(X, "region") >= lo) & (_vectors(X, "region") <= hi), axis=1).astype(np.float64)
    if cfg.name == "classifier":
        return _classifier_reward(cfg)
    if cfg.name == "log-density":
        from genloop.models import make_model

        assert cfg.reference is not None
        opts = {k: v for k, v in cfg.reference.items() if k != "name"}
        ref = make_model(cfg.reference["name"], **opts)
        if not ref.has_log_prob:
            raise ConfigError(f"reward 'log-density': model {ref.name!r} has no exact log-density")
        ref.fit(real, rng=rng)
        return lambda X: np.asarray(ref.log_prob(X), dtype=np.float64)
    fn = load_callable(cfg.name, what="reward")

    def call(X: np.ndarray) -> np.ndarray:
        out = np.asarray(fn(X), dtype=np.float64).reshape(-1)
        if out.shape[0] != len(X):
            raise DataError(f"reward {cfg.name!r} returned {out.shape[0]} values for {len(X)} samples")
        return out

    return call


def _classifier_reward(cfg: RewardConfig) -> Reward:
    import torch

    from genloop.metrics.features.classifier import ClassifierFeatures
    from genloop.metrics.features.inception import batched_features

    ext = ClassifierFeatures(cfg.dataset, cfg.classifier_seed, device="cpu", cache_dir=cfg.cache_dir)
    digit = int(cfg.digit)  # type: ignore[arg-type]

    def confidence(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(ext.net(x), dim=-1)[:, digit : digit + 1]

    def call(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4:
            raise DataError(f"reward 'classifier' needs images (n, C, H, W), got shape {X.shape}")
        out = batched_features(confidence, X, batch_size=ext.batch_size, device=ext.device, prep=ext._prep)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    return call


# ---- curation ------------------------------------------------------------------------------------
def softmax_select(rewards: np.ndarray, K: int, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of one kept sample per consecutive group of K: P(i | group) = softmax(r/τ)_i
    (Ferbach et al. 2024, eq. 2, the Bradley–Terry choice among K); τ = 0 keeps the best."""
    groups = rewards.reshape(-1, K)
    if tau == 0:
        pick = np.argmax(groups, axis=1)
    else:
        z = groups / tau
        top = z.max(axis=1, keepdims=True)
        z = np.where(np.isneginf(top), 0.0, z - np.where(np.isneginf(top), 0.0, top))  # all −∞: uniform
        p = np.exp(z)
        cdf = np.cumsum(p, axis=1) / p.sum(axis=1, keepdims=True)
        u = rng.random(groups.shape[0])
        pick = np.minimum((cdf < u[:, None]).sum(axis=1), K - 1)
    return np.arange(groups.shape[0]) * K + pick


def top_select(rewards: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest rewards (ties broken by index: a stable sort)."""
    return np.sort(np.argsort(-rewards, kind="stable")[:k])


# ---- correction ----------------------------------------------------------------------------------
def gaussian_ot_map(mean: np.ndarray, cov: np.ndarray, target_mean: np.ndarray, target_cov: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The optimal transport map T(x) = m' + A (x − m) from N(m, Σ) to N(m', Σ'), as (A, m' − A m).

    A = Σ^{-1/2} (Σ^{1/2} Σ' Σ^{1/2})^{1/2} Σ^{-1/2} (Peyré & Cuturi 2019, Remark 2.31).
    """
    from scipy import linalg

    def sqrt_psd(S: np.ndarray) -> np.ndarray:
        w, V = np.linalg.eigh((S + S.T) / 2)
        return (V * np.sqrt(np.clip(w, 0, None))) @ V.T

    root = sqrt_psd(cov)
    inv_root = linalg.pinvh(root)
    A = inv_root @ sqrt_psd(root @ target_cov @ root) @ inv_root
    return A, target_mean - A @ mean


def knn_mean(X: np.ndarray, real: np.ndarray, k: int) -> np.ndarray:
    """The mean of each row's k nearest real neighbours (Euclidean, over flattened events)."""
    from sklearn.neighbors import NearestNeighbors

    R = real.reshape(len(real), -1)
    k = min(k, len(R))
    idx = NearestNeighbors(n_neighbors=k).fit(R).kneighbors(X.reshape(len(X), -1), return_distance=False)
    return R[idx].mean(axis=1).reshape(X.shape)


def denoise_step(model: GenerativeModel, X: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """One step of a diffusion model's own denoiser: noise x to level σ (in the model's
    standardised units) and return its denoised estimate D(x + σ ε; σ) (EDM) or the DDPM x̂_0
    at the step whose noise-to-signal ratio √((1 − ᾱ)/ᾱ) is closest to σ."""
    import torch

    from genloop.rng import torch_seed

    name = getattr(model, "name", "")
    if name not in ("edm", "ddpm"):
        raise ConfigError(f"correction 'denoiser' is for the diffusion families (edm, ddpm), not {name!r}")
    net, device = model._prepare_net()  # type: ignore[attr-defined]
    gen = torch.Generator(device="cpu").manual_seed(torch_seed(rng))
    shift, scale = np.asarray(model.shift_), np.asarray(model.scale_)  # type: ignore[attr-defined]
    Z = torch.as_tensor((X - shift) / scale, dtype=torch.float64)
    eps = torch.randn(Z.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        if name == "edm":
            D = model.denoiser(net)  # type: ignore[attr-defined]
            s = torch.full((Z.shape[0],), float(sigma), dtype=torch.float64, device=device)
            out = D((Z + sigma * eps).to(device), s)
        else:
            ab = model.schedule.alpha_bar.double()  # type: ignore[attr-defined]
            t = int(torch.argmin(torch.abs(torch.sqrt((1 - ab) / ab) - sigma)))
            a = float(ab[t])
            x_t = (math.sqrt(a) * Z + math.sqrt(1 - a) * eps).to(device)
            steps = torch.full((Z.shape[0],), t, dtype=torch.long, device=device)
            e = model.eps_fn(net)(x_t.to(torch.float32), steps).to(torch.float64)  # type: ignore[attr-defined]
            out = (x_t - math.sqrt(1 - a) * e) / math.sqrt(a)
    return shift + scale * out.detach().to("cpu", torch.float64).numpy()


# ---- biased sampling -----------------------------------------------------------------------------
def _copy_with(model: GenerativeModel, overrides: Mapping[str, Any]) -> GenerativeModel:
    """A fitted copy of ``model`` whose hyper-parameters ``overrides`` are changed."""
    params = model.get_params()
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ConfigError(
            f"variant 'biased' sampler: model {model.name!r} has no option {', '.join(map(repr, unknown))} "
            f"(its options: {', '.join(sorted(params))})"
        )
    copy = type(model)(**{**params, **overrides})
    copy.set_state(*model.get_state())
    return copy


_TEMPERED = ("gaussian", "student_t", "gmm", "kde", "flow", "cfm", "otcfm")


def tempered_sample(model: GenerativeModel, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """n samples with the latent (or covariance factor) scaled by ``temperature``.

    gaussian / student_t: x = m + T (x_1 − m), i.e. covariance T² Σ; gmm: each component's
    spread scaled by T around its mean; kde: the kernel bandwidth scaled by T; flow: the base
    sample z scaled by T before the inverse transform; cfm / otcfm: the ODE's initial noise
    scaled by T. Families that carry their own ``temperature`` option (language models) use it.
    """
    if temperature == 1.0:
        return model.sample(n, rng=rng)
    name = model.name
    if name == "gaussian":
        return model.mean_ + temperature * (model.sample(n, rng=rng) - model.mean_)  # type: ignore[attr-defined]
    if name == "student_t":
        loc = float(model.loc_)  # type: ignore[attr-defined]
        return loc + temperature * (model.sample(n, rng=rng) - loc)
    if name == "gmm":
        return _gmm_tempered(model, n, temperature, rng)
    if name == "kde":
        copy = _copy_with(model, {})
        copy.bandwidth_ = model.bandwidth_ * temperature  # type: ignore[attr-defined]
        return copy.sample(n, rng=rng)
    if name in ("flow", "cfm", "otcfm"):
        return _latent_tempered(model, n, temperature, rng)
    if "temperature" in model.get_params():
        return _copy_with(model, {"temperature": model.get_params()["temperature"] * temperature}).sample(n, rng=rng)
    raise ConfigError(
        f"variant 'biased': no temperature for model {name!r}; use truncation (density models) "
        "or sampler overrides (e.g. S_churn / S_noise for edm, eta for ddpm)"
    )


def _gmm_tempered(model: GenerativeModel, n: int, T: float, rng: np.random.Generator) -> np.ndarray:
    w = np.asarray(model.weights_, dtype=np.float64)  # type: ignore[attr-defined]
    means = np.asarray(model.means_, dtype=np.float64)  # type: ignore[attr-defined]
    covs = np.asarray(model.covariances_, dtype=np.float64)  # type: ignore[attr-defined]
    kind = getattr(model, "covariance_type", "full")
    k, d = means.shape
    counts = rng.multinomial(n, w / w.sum())
    out = []
    for j in range(k):
        if kind == "full":
            C = covs[j]
        elif kind == "tied":
            C = covs
        elif kind == "diag":
            C = np.diag(covs[j])
        else:
            C = covs[j] * np.eye(d)
        L = np.linalg.cholesky(C + 1e-300 * np.eye(d))
        out.append(means[j] + T * rng.standard_normal((counts[j], d)) @ L.T)
    X = np.concatenate(out, axis=0)
    return X[rng.permutation(n)]


def _latent_tempered(model: GenerativeModel, n: int, T: float, rng: np.random.Generator) -> np.ndarray:
    import torch

    from genloop.rng import torch_seed

    net, device = model._prepare_net()  # type: ignore[attr-defined]
    gen = torch.Generator(device=device).manual_seed(torch_seed(rng))
    shape = tuple(model.event_shape_)
    with torch.no_grad():
        z = T * torch.randn((n, int(np.prod(shape))), generator=gen, device=device)
        if model.name == "flow":
            x = net().transform.inv(z).reshape(n, *shape)
        else:
            from genloop.models.fm import solve_ode

            x, _ = solve_ode(net, z.reshape(n, *shape), solver=model.solver, rtol=model.rtol,  # type: ignore[attr-defined]
                             atol=model.atol, steps=model.steps)  # type: ignore[attr-defined]
    Z = x.detach().to("cpu", torch.float64).numpy()
    return model.shift_ + model.scale_ * Z  # type: ignore[attr-defined]


# ---- the config blocks ---------------------------------------------------------------------------
class _VariantBase(_Block):
    lam_schedule: Annotated[tuple[float, ...] | str | None, BeforeValidator(_parse_schedule)] = Field(
        default=None, description="λ_t per generation: a list (last value repeats) or a formula in t, lam, T"
    )

    @field_validator("lam_schedule")
    @classmethod
    def _check_formula(cls, value: Any) -> Any:
        if isinstance(value, str):
            lam = eval_formula(value, {"t": 1, "lam": 1.0, "T": 10})
            if math.isnan(lam) or lam < 0:
                raise ConfigError(f"lam_schedule formula {value!r} gives λ = {lam} at t=1, lam=1, T=10; λ must be >= 0")
        return value

    @field_serializer("lam_schedule")
    def _dump_schedule(self, value: Any) -> Any:
        if isinstance(value, tuple):  # JSON has no ∞: written as "inf", read back by parse_lambda
            return ["inf" if math.isinf(v) else v for v in value]
        return value

    def lam_at(self, t: int, lam: float, generations: int) -> float | Fraction:
        """λ_t for generation t >= 1.

        A formula's value is exact (a :class:`~fractions.Fraction`) when its arithmetic is
        rational (:func:`exact_formula`), so that :func:`~genloop.loop.schemes.synthetic_count`
        gives ⌊λ_t·n⌋ exactly; a negative or NaN value is a :class:`ConfigError` naming t.
        """
        sched = self.lam_schedule
        if sched is None:
            return lam
        if isinstance(sched, tuple):
            return sched[min(t, len(sched)) - 1]
        value = exact_formula(sched, {"t": t, "lam": lam, "T": generations})
        if isinstance(value, Fraction):
            if value < 0:
                raise ConfigError(f"lam_schedule formula {sched!r} gives λ = {float(value):g} at t={t} "
                                  f"(lam={lam:g}, T={generations}); λ_t must be >= 0")
            return value
        if math.isnan(value) or value < 0:
            raise ConfigError(f"lam_schedule formula {sched!r} gives λ = {value} at t={t} "
                              f"(lam={lam:g}, T={generations}); λ_t must be >= 0")
        return value


class PlainVariant(_VariantBase):
    """The paper's loop: fresh samples of the previous model."""

    kind: Literal["plain"] = "plain"


class CuratedVariant(_VariantBase):
    """Curated retraining (Ferbach et al. 2024): keep one of K by softmax(r/τ), or the top fraction."""

    kind: Literal["curated"]
    reward: Annotated[RewardConfig, BeforeValidator(_reward_from_str)]
    select: Literal["softmax", "top"] = "softmax"
    K: int = Field(default=4, ge=1, description="group size of the softmax choice")
    tau: float = Field(default=1.0, ge=0, description="softmax temperature τ (0 keeps each group's best)")
    fraction: float = Field(default=0.25, gt=0, le=1, description="select: top keeps this fraction of the candidates")


class CorrectedVariant(_VariantBase):
    """Self-correction (Gillman et al. 2024): x ← x + γ (c(x) − x)."""

    kind: Literal["corrected"]
    gamma: float = Field(ge=0, le=1, description="correction strength γ")
    correction: str = Field(default="knn", description="knn | ot-gaussian | denoiser | module:function")
    k: int = Field(default=5, ge=1, description="knn: number of real neighbours")
    sigma: float = Field(default=0.1, gt=0, description="denoiser: noise level σ of the step")
    target_mean: tuple[float, ...] | None = None
    target_cov: tuple[tuple[float, ...], ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> CorrectedVariant:
        if self.correction not in ("knn", "ot-gaussian", "denoiser"):
            check_callable_name(self.correction, what="correction")  # imported only when a run starts
        if (self.target_mean is None) != (self.target_cov is None):
            raise ConfigError("ot-gaussian: give both target_mean and target_cov, or neither (the real data's Gaussian)")
        return self


class BiasedVariant(_VariantBase):
    """Sampling bias (Alemohammad et al. 2024): temperature, truncation, sampler overrides."""

    kind: Literal["biased"]
    temperature: float = Field(default=1.0, gt=0, description="latent / covariance scale (< 1: more quality, less diversity)")
    truncation: float = Field(default=1.0, gt=0, le=1, description="keep this fraction of candidates with the highest log-density")
    sampler: dict[str, float | int | str | bool] = Field(default_factory=dict, description="model options used only when sampling")

    def __hash__(self) -> int:  # the dict field is not hashable; hash its sorted items
        return hash((self.kind, self.lam_schedule, self.temperature, self.truncation, tuple(sorted(self.sampler.items()))))


class MixtureVariant(_VariantBase):
    """Synthetic data from a weighted mixture of the models of past generations."""

    kind: Literal["mixture"]
    last_k: int | None = Field(default=None, ge=1, description="use the last k generations (None: all)")
    weights: Literal["uniform", "geometric"] | tuple[float, ...] = "uniform"
    decay: float = Field(default=0.5, gt=0, description="geometric: weight of generation t-1-j ∝ decay^j")

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if isinstance(value, tuple) and (not value or any(w < 0 for w in value) or sum(value) <= 0):
            raise ConfigError(f"mixture weights must be >= 0 with a positive sum, got {list(value)}")
        return value

    def window(self, t: int) -> list[int]:
        """The generations whose models make generation t's synthetic data (most recent first)."""
        first = 0 if self.last_k is None else max(0, t - self.last_k)
        return list(range(t - 1, first - 1, -1))

    def mixture_weights(self, t: int) -> np.ndarray:
        """Normalised weights over :meth:`window` (most recent first)."""
        m = len(self.window(t))
        if self.weights == "uniform":
            w = np.ones(m)
        elif self.weights == "geometric":
            w = self.decay ** np.arange(m, dtype=np.float64)
        else:
            given = np.asarray(self.weights, dtype=np.float64)
            w = np.zeros(m)
            w[: min(m, len(given))] = given[:m]
            if w.sum() <= 0:
                raise ConfigError(f"mixture weights {list(self.weights)} give no weight to generations {self.window(t)}")
        return w / w.sum()


VariantConfig = Annotated[
    Union[PlainVariant, CuratedVariant, CorrectedVariant, BiasedVariant, MixtureVariant],
    Field(discriminator="kind"),
]
VARIANTS: tuple[str, ...] = ("plain", "curated", "corrected", "biased", "mixture")


def _from_shorthand(value: Any) -> Any:
    if value is None:
        return {"kind": "plain"}
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, Mapping) and "kind" not in value:
        return {"kind": "plain", **value}
    return value


#: The type of ``loop.variant`` in a config: a block, or ``plain`` written as a word.
VariantField = Annotated[VariantConfig, BeforeValidator(_from_shorthand)]


def parse_variant(value: Any) -> VariantConfig:
    """A variant block from a mapping, a kind name, a block, or None (plain)."""
    if isinstance(value, _VariantBase):
        return value  # type: ignore[return-value]
    import pydantic

    class _Holder(BaseModel):
        variant: VariantField

    try:
        return _Holder(variant=value).variant
    except ConfigError:
        raise
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        ctx = (err.get("ctx") or {}).get("error")
        loc = ".".join(str(x) for x in err["loc"][1:])
        msg = str(ctx) if isinstance(ctx, ConfigError) else err["msg"]
        raise ConfigError(f"loop variant {loc}: {msg} (got {err.get('input')!r})" if loc else f"loop variant: {msg}") from None


# ---- the preflight: everything a variant needs, checked before a run writes anything -----------
#: Generations whose λ_t is evaluated before a run (all of them up to this many; beyond, the
#: first and the last half of it): the check must stay short even for ``generations: 1e9``.
SCHEDULE_CHECK_LIMIT = 2_000


def check_variant_model(cfg: VariantConfig, model: GenerativeModel) -> None:
    """Refuse a variant that ``model``'s family cannot do: sampler options it lacks or whose
    values it refuses, a temperature or truncation it has no meaning for, a denoiser step
    without a denoiser."""
    if isinstance(cfg, BiasedVariant):
        params = model.get_params()
        unknown = sorted(set(cfg.sampler) - set(params))
        if unknown:
            raise ConfigError(
                f"variant 'biased' sampler: model {model.name!r} has no option {', '.join(map(repr, unknown))} "
                f"(its options: {', '.join(sorted(params))})"
            )
        if cfg.sampler:
            _check_sampler_values(model, cfg.sampler)
        if cfg.truncation < 1 and not model.has_log_prob:
            raise ConfigError(f"variant 'biased': truncation needs a density model; {model.name!r} has no log_prob "
                              "(use sampler overrides such as S_churn / S_noise for diffusion)")
        if cfg.temperature != 1 and model.name not in _TEMPERED and "temperature" not in params:
            raise ConfigError(
                f"variant 'biased': no temperature for model {model.name!r} (families with one: "
                f"{', '.join(_TEMPERED)} and language models); use truncation or sampler overrides"
            )
    if isinstance(cfg, CorrectedVariant) and cfg.correction == "denoiser" and model.name not in ("edm", "ddpm"):
        raise ConfigError(f"correction 'denoiser' is for the diffusion families (edm, ddpm), not {model.name!r}")


def _check_sampler_values(model: GenerativeModel, sampler: Mapping[str, Any]) -> None:
    """Build the sampling copy's hyper-parameters as :func:`_copy_with` will (validated like a
    config's model options), so that a value the family refuses fails now, not at t = 1."""
    from genloop.errors import GenloopError
    from genloop.models import MODELS

    try:
        options = MODELS.validate(model.name, {**model.get_params(), **sampler}) if model.name in MODELS else None
        type(model)(**(options if options is not None else {**model.get_params(), **sampler}))
    except GenloopError as exc:
        raise ConfigError(f"variant 'biased' sampler: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"variant 'biased' sampler: model {model.name!r} refuses {dict(sampler)}: {exc}") from None


def schedule_generations(generations: int) -> list[int]:
    """The generations t >= 1 whose λ_t the preflight evaluates (every one up to
    :data:`SCHEDULE_CHECK_LIMIT`; beyond, the first and the last ``SCHEDULE_CHECK_LIMIT // 2``)."""
    if generations <= SCHEDULE_CHECK_LIMIT:
        return list(range(1, generations + 1))
    half = SCHEDULE_CHECK_LIMIT // 2
    return [*range(1, half + 1), *range(generations - half + 1, generations + 1)]


def check_schedule(cfg: VariantConfig, lambdas: Sequence[float], generations: int) -> None:
    """λ_t >= 0 (and a number) for every configured λ and every generation t = 1 … T."""
    if cfg.lam_schedule is None or isinstance(cfg.lam_schedule, tuple):
        return  # a list's values were parsed one by one
    for lam in lambdas:
        for t in schedule_generations(generations):
            cfg.lam_at(t, lam, generations)


def check_variant(cfg: VariantConfig, model: GenerativeModel, *, event_shape: tuple[int, ...], tokens: bool,
                  n: int, lambdas: Sequence[float], generations: int) -> None:
    """Everything a variant needs from the run, checked before the run writes anything.

    The λ schedule over every generation and λ, the model family against the variant
    (:func:`check_variant_model`), the correction against the data type (knn and the Gaussian
    OT map move samples by averages, which token codes are not), the reward against the data
    (a centre or box with the data's dimension; vectors or images as the reward needs; a
    reference density model that can fit the data), and the mixture weights of every window.
    """
    check_schedule(cfg, lambdas, generations)
    check_variant_model(cfg, model)
    if isinstance(cfg, CorrectedVariant):
        if tokens and cfg.correction in ("knn", "ot-gaussian"):
            raise ConfigError(
                f"correction {cfg.correction!r} averages samples (x + γ (c(x) − x)), which turns token codes into "
                "non-tokens; the data are token sequences: use a module:function correction that returns tokens "
                "(with gamma: 1), or another variant"
            )
        if cfg.correction == "ot-gaussian" and len(event_shape) != 1:
            raise ConfigError(f"correction 'ot-gaussian' is for vectors (n, d); the data have samples of shape {event_shape}")
        if cfg.correction == "ot-gaussian" and cfg.target_mean is not None:
            d = event_shape[0]
            if len(cfg.target_mean) != d or cfg.target_cov is None or np.shape(cfg.target_cov) != (d, d):
                raise ConfigError(f"ot-gaussian target must have shape ({d},) and {(d, d)} (the data have d={d})")
    if isinstance(cfg, CuratedVariant):
        _check_reward(cfg.reward, event_shape, n)
    if isinstance(cfg, MixtureVariant):
        last = generations if isinstance(cfg.weights, str) else min(generations, len(cfg.weights) + 1)
        for t in range(1, last + 1):
            cfg.mixture_weights(t)


def _check_reward(cfg: RewardConfig, event_shape: tuple[int, ...], n: int) -> None:
    """A reward's own options against the data (before a run): dimensions and layout."""
    if cfg.name in ("quadratic", "region"):
        if len(event_shape) != 1:
            raise ConfigError(f"reward {cfg.name!r} is for vectors (n, d); the data have samples of shape {event_shape}")
        d = event_shape[0]
        for what, value in (("center", cfg.center), ("low", cfg.low), ("high", cfg.high)):
            if value is not None and len(value) != d:
                raise ConfigError(f"reward {cfg.name!r}: {what} has {len(value)} coordinates but the data have {d}")
    elif cfg.name == "classifier":
        if len(event_shape) != 3:
            raise ConfigError(f"reward 'classifier' needs images (C, H, W); the data have samples of shape {event_shape}")
    elif cfg.name == "log-density":
        from genloop.models import make_model

        assert cfg.reference is not None
        ref = make_model(cfg.reference["name"], **{k: v for k, v in cfg.reference.items() if k != "name"})
        if not ref.has_log_prob:
            raise ConfigError(f"reward 'log-density': model {ref.name!r} has no exact log-density")
        try:
            ref.check_data(event_shape, n)
        except ConfigError as exc:
            raise ConfigError(f"reward 'log-density' reference: {exc}") from None


# ---- drawing a generation's synthetic set --------------------------------------------------------
def callable_names(cfg: VariantConfig) -> list[tuple[str, str]]:
    """The ``(what, "module:function")`` callables a variant block names (nothing is imported)."""
    if isinstance(cfg, CuratedVariant) and cfg.reward.name not in _BUILTIN_REWARDS:
        return [("reward", cfg.reward.name)]
    if isinstance(cfg, CorrectedVariant) and cfg.correction not in _BUILTIN_CORRECTIONS:
        return [("correction", cfg.correction)]
    return []


def check_variant_callables(cfg: VariantConfig, real: np.ndarray) -> None:
    """Each ``module:function`` reward or correction a variant names, imported and called once
    on four real samples (its signature and the shape it returns), before a run writes
    anything. This is the start of a run: the named code runs here (docs/variants.md); the
    built-in pieces are checked by :func:`check_variant`.
    """
    probe = np.asarray(real[:4])
    if isinstance(cfg, CuratedVariant) and cfg.reward.name not in _BUILTIN_REWARDS:
        fn = load_callable(cfg.reward.name, what="reward")
        out = _call_user(fn, f"reward {cfg.reward.name!r}", probe)
        if out.reshape(-1).shape != (len(probe),):
            raise ConfigError(f"reward {cfg.reward.name!r} returned {out.size} values for {len(probe)} samples; "
                              "it must return one per sample")
    if isinstance(cfg, CorrectedVariant) and cfg.correction not in _BUILTIN_CORRECTIONS:
        fn = load_callable(cfg.correction, what="correction")
        out = _call_user(fn, f"correction {cfg.correction!r}", probe, real)
        if out.shape != probe.shape:
            raise ConfigError(f"correction {cfg.correction!r} returned shape {out.shape} for samples of shape {probe.shape}")


def _call_user(fn: Callable[..., Any], what: str, *args: Any) -> np.ndarray:
    """Call a user's ``module:function`` on probe data; any failure is a ConfigError naming it."""
    try:
        return np.asarray(fn(*args), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - user code: report what it raised, in one line
        raise ConfigError(f"{what} fails on {len(args[0])} real samples: {type(exc).__name__}: {exc}") from None


@dataclass
class SyntheticDraw:
    """A generation's synthetic set and what the variant measured while drawing it."""

    X: np.ndarray
    metrics: dict[str, float]


class VariantRunner:
    """Draws the synthetic samples of each generation for one variant block.

    ``real`` is D_real (used by knn correction and the reference fits); ``streams(stage)``
    returns the generation's random stream for ``stage``.
    """

    def __init__(self, cfg: VariantConfig, *, real: np.ndarray, seed: int) -> None:
        from genloop.rng import stage_rng

        self.cfg = cfg
        self.real = real
        self.reward: Reward | None = None
        if isinstance(cfg, CuratedVariant):
            self.reward = make_reward(cfg.reward, real=real, rng=stage_rng(seed, 0, "reward"))
        self._target: tuple[np.ndarray, np.ndarray] | None = None
        if isinstance(cfg, CorrectedVariant) and cfg.correction == "ot-gaussian":
            if real.ndim != 2:
                raise DataError(f"correction 'ot-gaussian' is for vectors (n, d), got shape {real.shape}")
            if cfg.target_mean is not None:
                self._target = (np.asarray(cfg.target_mean, dtype=np.float64), np.asarray(cfg.target_cov, dtype=np.float64))
                if self._target[0].shape != (real.shape[1],) or self._target[1].shape != (real.shape[1],) * 2:
                    raise DataError(f"ot-gaussian target must have shape ({real.shape[1]},) and {(real.shape[1],) * 2}")
            else:
                self._target = (real.mean(axis=0), np.atleast_2d(np.cov(real, rowvar=False, ddof=1)))
        self._correct_fn: Callable[..., Any] | None = None
        if isinstance(cfg, CorrectedVariant) and cfg.correction not in ("knn", "ot-gaussian", "denoiser"):
            self._correct_fn = load_callable(cfg.correction, what="correction")

    def check_model(self, model: GenerativeModel) -> None:
        """Refuse, before anything runs, a variant that ``model``'s family cannot do."""
        check_variant_model(self.cfg, model)

    @property
    def needs_history(self) -> bool:
        return isinstance(self.cfg, MixtureVariant)

    def draw(self, t: int, k: int, models: Mapping[int, GenerativeModel], stream: Callable[[str], np.random.Generator]
             ) -> SyntheticDraw:
        """k synthetic samples for generation t >= 1 from the fitted models of earlier generations."""
        cfg, prev = self.cfg, models[t - 1]
        if k == 0:
            return SyntheticDraw(self.real[:0], {})
        if isinstance(cfg, CuratedVariant):
            return self._curate(prev, k, stream)
        if isinstance(cfg, CorrectedVariant):
            X = prev.sample(k, rng=stream("sample"))
            return SyntheticDraw(self._correct(prev, X, stream("correct")), {})
        if isinstance(cfg, BiasedVariant):
            return SyntheticDraw(self._biased(prev, k, stream("sample")), {})
        if isinstance(cfg, MixtureVariant):
            return SyntheticDraw(self._mixture(t, k, models, stream), {})
        return SyntheticDraw(prev.sample(k, rng=stream("sample")), {})

    def _curate(self, prev: GenerativeModel, k: int, stream: Callable[[str], np.random.Generator]) -> SyntheticDraw:
        cfg = self.cfg
        assert isinstance(cfg, CuratedVariant) and self.reward is not None
        n_cand = k * cfg.K if cfg.select == "softmax" else math.ceil(k / cfg.fraction)
        cand = prev.sample(n_cand, rng=stream("sample"))
        r = self.reward(cand)
        if r.shape != (n_cand,) or not np.all(np.isfinite(r) | (r == -np.inf)):
            raise DataError(f"reward {cfg.reward.name!r} gave non-finite or misshaped values")
        idx = softmax_select(r, cfg.K, cfg.tau, stream("curate")) if cfg.select == "softmax" else top_select(r, k)
        return SyntheticDraw(cand[idx], {"reward_curated": float(np.mean(r[idx])), "reward_candidates": float(np.mean(r))})

    def _correct(self, prev: GenerativeModel, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        assert isinstance(cfg, CorrectedVariant)
        if cfg.correction == "knn":
            c = knn_mean(X, self.real, cfg.k)
        elif cfg.correction == "ot-gaussian":
            assert self._target is not None
            if hasattr(prev, "mean_") and hasattr(prev, "covariance_"):
                m, S = np.asarray(prev.mean_), np.asarray(prev.covariance_)  # type: ignore[attr-defined]
            else:
                m, S = X.mean(axis=0), np.atleast_2d(np.cov(X, rowvar=False, ddof=1))
            A, b = gaussian_ot_map(m, S, *self._target)
            c = X @ A.T + b
        elif cfg.correction == "denoiser":
            c = denoise_step(prev, X, cfg.sigma, rng)
        else:
            assert self._correct_fn is not None
            c = np.asarray(self._correct_fn(X, self.real), dtype=np.float64)
            if c.shape != X.shape:
                raise DataError(f"correction {cfg.correction!r} returned shape {c.shape} for samples of shape {X.shape}")
        return (1 - cfg.gamma) * X + cfg.gamma * c  # = x + γ(c(x) − x), exact at γ = 0 and 1

    def _biased(self, prev: GenerativeModel, k: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        assert isinstance(cfg, BiasedVariant)
        model = _copy_with(prev, cfg.sampler) if cfg.sampler else prev
        if cfg.truncation < 1 and not model.has_log_prob:
            raise ConfigError(f"variant 'biased': truncation needs a density model; {model.name!r} has no log_prob "
                              "(use sampler overrides such as S_churn / S_noise for diffusion)")
        n_cand = k if cfg.truncation == 1 else math.ceil(k / cfg.truncation)
        X = tempered_sample(model, n_cand, cfg.temperature, rng)
        if n_cand > k:
            X = X[top_select(model.log_prob(X), k)]
        return X

    def _mixture(self, t: int, k: int, models: Mapping[int, GenerativeModel],
                 stream: Callable[[str], np.random.Generator]) -> np.ndarray:
        cfg = self.cfg
        assert isinstance(cfg, MixtureVariant)
        gens, w = cfg.window(t), cfg.mixture_weights(t)
        rng = stream("mixture")
        counts = rng.multinomial(k, w)
        child_seeds = rng.integers(0, 2**63 - 1, size=len(gens))
        parts = [models[s].sample(int(c), rng=np.random.default_rng(int(cs)))
                 for s, c, cs in zip(gens, counts, child_seeds) if c > 0]
        X = np.concatenate(parts, axis=0)
        return X[rng.permutation(k)]

    def reward_metrics(self, samples: np.ndarray) -> dict[str, float]:
        """The mean reward of the model's evaluation samples (curated variants only)."""
        if self.reward is None:
            return {}
        return {"reward_mean": float(np.mean(self.reward(samples)))}


__all__ = [
    "BiasedVariant", "CorrectedVariant", "CuratedVariant", "MixtureVariant", "PlainVariant", "RewardConfig",
    "SyntheticDraw", "VARIANTS", "VariantConfig", "VariantField", "VariantRunner", "denoise_step", "eval_formula",
    "exact_formula", "check_variant", "check_variant_model", "check_schedule", "schedule_generations",
    "callable_names", "check_callable_name", "check_variant_callables", "load_callable",
    "gaussian_ot_map", "knn_mean", "make_reward", "parse_variant", "quadratic_reward", "softmax_select",
    "tempered_sample", "top_select",
]
