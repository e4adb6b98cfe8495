"""``check_model``: the contract every generative model family passes, for any class.

One source of truth: genloop's own test suite runs :func:`check_model` on every built-in
family (``tests/test_model_contract.py``), and ``genloop check-model package.module:Class``
runs it on yours. Each check has a name; a failure names it with a hint on what to fix.

The checks (in order; a failure in ``fit`` skips the rest):

``fit``                  ``fit(X, rng=...)`` returns ``self`` and sets ``event_shape_ == X.shape[1:]``.
``sample_shape``         ``sample(n)`` is a finite float array of shape ``(n, *event_shape_)``.
``same_seed``            the same seed gives the same samples, another seed other samples.
``log_prob``             density models give finite ``(n,)`` log-densities; others raise
                         ``NotImplementedError``.
``clone``                ``clone()`` is unfitted, of the same class and hyper-parameters.
``unfitted``             an unfitted model raises ``NotFittedError`` in ``sample`` / ``get_state``.
``save_load``            save → load (safetensors + JSON) gives the same state and samples.
``save_load_continue``   fit → save → load → continue equals fit → continue, bit for bit.
``warm_start_keeps_init`` ``fit(init=prev)`` leaves ``prev`` unchanged.
``warm_start_from_init`` (``supports_warm_start``) two different ``init`` models give two different
                         fits on the same data and seed: the fit starts from ``init``.
``loop_resume``          ``run_loop`` resumed after generation 1 equals the uninterrupted run
                         (generation 2's samples, metrics and state), for each scheme.
``bad_input``            data with NaN raise the library's :class:`~genloop.errors.DataError` (or
                         :class:`~genloop.errors.ConfigError`).
``gradients``            (torch families) every parameter receives a gradient from the loss.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genloop.errors import ConfigError, GenloopError
from genloop.models import MODELS, GenerativeModel, NotFittedError
from genloop.models.io import load_model, save_model

log = logging.getLogger(__name__)

#: Every check, in the order it runs.
CHECKS: tuple[str, ...] = (
    "fit", "sample_shape", "same_seed", "log_prob", "clone", "unfitted", "save_load", "save_load_continue",
    "warm_start_keeps_init", "warm_start_from_init", "loop_resume", "bad_input", "gradients",
)

#: What to fix when a check fails.
HINTS: dict[str, str] = {
    "fit": "fit(X, *, rng, init=None) must return self and set event_shape_ = X.shape[1:]",
    "sample_shape": "sample(n, *, rng) must return a finite float array of shape (n, *event_shape_)",
    "same_seed": "draw every random number of sample() from the rng argument (no global numpy/torch "
                 "state, no fresh entropy): the same rng seed must give the same samples",
    "log_prob": "set has_log_prob = True only when log_prob(X) returns finite (n,) values; otherwise "
                "leave log_prob to the base class (it raises NotImplementedError)",
    "clone": "store every constructor argument under its own name (self.x = x) so get_params()/clone() "
             "rebuild an unfitted copy",
    "unfitted": "call self._check_fitted() at the start of sample() and get_state()",
    "save_load": "get_state() must return (named numpy arrays, JSON-able dict) and set_state() must "
                 "restore exactly that (set event_shape_ too)",
    "save_load_continue": "get_state() must hold everything the next fit(init=self) and sample() read "
                          "(derived arrays, optimizer state, counters), bit for bit",
    "warm_start_keeps_init": "fit(init=prev) must copy what it needs from prev and never modify prev",
    "warm_start_from_init": "fit(init=prev) must start from prev's state; if the fit ignores init, set "
                            "supports_warm_start = False",
    "loop_resume": "a run resumed from a checkpoint must continue exactly: keep all state in get_state() "
                   "and all randomness in the rng arguments",
    "bad_input": "raise genloop.errors.DataError naming the problem for data that cannot be fitted "
                 "(NaN, wrong shape)",
    "gradients": "every parameter of the network should receive a gradient from loss() (unused "
                 "parameters are silently never trained)",
}

#: The retraining schemes the ``loop_resume`` check runs.
SCHEMES: tuple[str, ...] = ("replace", "accumulate", "accumulate-subsample", "fresh")


@dataclass
class CheckResult:
    """One check: ``passed``, ``failed`` or ``skipped``, with a message and a hint."""

    name: str
    status: str
    message: str = ""

    @property
    def hint(self) -> str:
        return HINTS.get(self.name, "")

    def __str__(self) -> str:
        text = f"{self.status:7s} {self.name}"
        if self.message:
            text += f": {self.message}"
        if self.status == "failed" and self.hint:
            text += f" (hint: {self.hint})"
        return text


@dataclass
class ModelCheck:
    """What :func:`check_model` found: one :class:`CheckResult` per check."""

    model: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def result(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.results)


class ModelCheckError(GenloopError, AssertionError):
    """A model failed :func:`check_model`; the message names each failed check with its hint."""

    def __init__(self, report: ModelCheck) -> None:
        self.report = report
        lines = [f"model {report.model} fails the genloop model contract:"]
        lines += [f"  {r}" for r in report.failures]
        super().__init__("\n".join(lines))


class _CheckFailed(Exception):
    pass


class _Skip(Exception):
    pass


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _CheckFailed(message)


def _state_copy(model: GenerativeModel) -> tuple[dict[str, np.ndarray], Any]:
    arrays, meta = model.get_state()
    return {k: np.array(v, copy=True) for k, v in arrays.items()}, meta


def _state_difference(a: tuple[dict[str, np.ndarray], Any], b: tuple[dict[str, np.ndarray], Any]) -> str:
    """'' when the two states are equal bit for bit, else what differs."""
    if a[0].keys() != b[0].keys():
        return f"state arrays {sorted(a[0])} != {sorted(b[0])}"
    for key in a[0]:
        x, y = np.asarray(a[0][key]), np.asarray(b[0][key])
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            return f"state array {key!r} differs"
    if a[1] != b[1]:
        return "state metadata differs"
    return ""


class _Resampled:
    """An infinite source drawing rows of ``data`` with replacement (for the ``fresh`` scheme)."""

    infinite = True
    name = "resampled"

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.data[rng.integers(0, len(self.data), size=n)]


def _resolve(model_or_class: GenerativeModel | type | str, options: dict[str, Any] | None) -> GenerativeModel:
    """An unfitted model from an instance (cloned), a class, a registered name or an import path."""
    if isinstance(model_or_class, GenerativeModel):
        if options:
            raise ConfigError("check_model: pass options with a class or a name, not with an instance")
        return model_or_class.clone()
    if isinstance(model_or_class, str):
        return MODELS.create(model_or_class, **(options or {}))
    if isinstance(model_or_class, type) and issubclass(model_or_class, GenerativeModel):
        name = MODELS.name_of(model_or_class)
        if name in MODELS:  # registered: options validated as in a config
            return MODELS.create(name, **(options or {}))
        return model_or_class(**(options or {}))
    raise ConfigError(f"check_model needs a GenerativeModel instance, subclass, name or import path; got {model_or_class!r}")


def check_model(
    model_or_class: GenerativeModel | type | str,
    data: np.ndarray | Callable[[np.random.Generator], np.ndarray],
    *,
    options: dict[str, Any] | None = None,
    checks: Sequence[str] | None = None,
    schemes: Sequence[str] = SCHEMES,
    n_samples: int = 64,
    raise_on_failure: bool = True,
) -> ModelCheck:
    """Check a model class against the contract the loop relies on for exact runs.

    Args:
        model_or_class: an instance (its hyper-parameters are used, it is not fitted), a
            :class:`~genloop.models.base.GenerativeModel` subclass, a registered name or an
            import path ``package.module:Class``.
        data: training data ``(n, *event_shape)``, or a function of a numpy Generator returning
            such an array (each call with another generator gives another data set). An array
            is resampled with replacement for the later generations' data.
        options: constructor options when ``model_or_class`` is a class or a name.
        checks: a subset of :data:`CHECKS` to run (default: all).
        schemes: the retraining schemes of the ``loop_resume`` check.
        n_samples: samples drawn by the sampling checks.
        raise_on_failure: raise :class:`ModelCheckError` naming every failed check.

    Returns:
        the :class:`ModelCheck` report (also when ``raise_on_failure`` is false).
    """
    template = _resolve(model_or_class, options)
    label = MODELS.name_of(type(template))
    wanted = list(CHECKS if checks is None else checks)
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown check(s) {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
    if callable(data):
        make_x: Callable[[np.random.Generator], np.ndarray] = data
    else:
        base = np.asarray(data)
        make_x = _bootstrap(base)
    ctx = _Context(template, make_x, n_samples, list(schemes))
    report = ModelCheck(label)
    fitted_ok = True
    for name in CHECKS:
        if name not in wanted:
            continue
        if not fitted_ok and name != "bad_input":
            report.results.append(CheckResult(name, "skipped", "fit failed"))
            continue
        try:
            getattr(ctx, f"check_{name}")()
        except _Skip as exc:
            report.results.append(CheckResult(name, "skipped", str(exc)))
        except _CheckFailed as exc:
            report.results.append(CheckResult(name, "failed", str(exc)))
        except Exception as exc:  # noqa: BLE001 - any error in a check is that check's failure
            report.results.append(CheckResult(name, "failed", f"raised {type(exc).__name__}: {exc}"))
        else:
            report.results.append(CheckResult(name, "passed"))
        if name == "fit" and report.results[-1].status != "passed":
            fitted_ok = False
    for r in report.results:
        log.info("check_model %s: %s", label, r)
    if raise_on_failure and not report.ok:
        raise ModelCheckError(report)
    return report


def _bootstrap(base: np.ndarray) -> Callable[[np.random.Generator], np.ndarray]:
    """The given array for the first call, bootstrap resamples of its rows afterwards."""
    calls = [0]

    def make_x(rng: np.random.Generator) -> np.ndarray:
        calls[0] += 1
        if calls[0] == 1:
            return base
        return base[rng.integers(0, len(base), size=len(base))]

    return make_x


class _Context:
    """The checks, sharing one fitted model."""

    def __init__(self, template: GenerativeModel, make_x: Callable[[np.random.Generator], np.ndarray],
                 n_samples: int, schemes: list[str]) -> None:
        self.template = template
        self.make_x = make_x
        self.X = np.asarray(make_x(np.random.default_rng(0)))
        self.n = n_samples
        self.schemes = schemes
        self._model: GenerativeModel | None = None

    def fresh(self) -> GenerativeModel:
        return self.template.clone()

    @property
    def model(self) -> GenerativeModel:
        if self._model is None:
            self.check_fit()
        assert self._model is not None
        return self._model

    def new_data(self, seed: int) -> np.ndarray:
        return np.asarray(self.make_x(np.random.default_rng(seed)))

    # ---- the checks ----------------------------------------------------------------------
    def check_fit(self) -> None:
        model = self.fresh()
        out = model.fit(self.X, rng=np.random.default_rng(1))
        _require(out is model, f"fit returned {type(out).__name__}, not self")
        _require(model.is_fitted, "event_shape_ is not set after fit")
        _require(tuple(model.event_shape_) == self.X.shape[1:],
                 f"event_shape_ is {model.event_shape_}, the data's is {self.X.shape[1:]}")
        self._model = model

    def check_sample_shape(self) -> None:
        a = self.model.sample(self.n, rng=np.random.default_rng(7))
        _require(isinstance(a, np.ndarray), f"sample returned {type(a).__name__}, not a numpy array")
        _require(a.shape == (self.n, *self.model.event_shape_),
                 f"sample({self.n}) has shape {a.shape}, expected {(self.n, *self.model.event_shape_)}")
        _require(np.issubdtype(a.dtype, np.floating), f"samples have dtype {a.dtype}, expected a float dtype")
        _require(bool(np.all(np.isfinite(a))), "samples contain NaN or infinite values")

    def check_same_seed(self) -> None:
        a = self.model.sample(self.n, rng=np.random.default_rng(7))
        b = self.model.sample(self.n, rng=np.random.default_rng(7))
        _require(np.array_equal(a, b), "two sample() calls with the same seed gave different samples")
        c = self.model.sample(self.n, rng=np.random.default_rng(8))
        _require(not np.array_equal(a, c), "two different seeds gave the same samples")

    def check_log_prob(self) -> None:
        model = self.model
        if not model.has_log_prob:
            try:
                model.log_prob(self.X[:4])
            except NotImplementedError:
                return
            raise _CheckFailed("has_log_prob is False but log_prob returned values")
        lp = np.asarray(model.log_prob(self.X[:10]))
        _require(lp.shape == (min(10, len(self.X)),), f"log_prob of 10 rows has shape {lp.shape}")
        _require(bool(np.all(np.isfinite(lp))), "log_prob has NaN or infinite values on the training data")

    def check_clone(self) -> None:
        clone = self.model.clone()
        _require(type(clone) is type(self.model), "clone() has another class")
        _require(not clone.is_fitted, "clone() is fitted (it must be a new, unfitted model)")
        _require(clone.get_params() == self.model.get_params(), "clone() has other hyper-parameters")

    def check_unfitted(self) -> None:
        for what in ("sample", "get_state"):
            model = self.fresh()
            try:
                model.sample(3, rng=np.random.default_rng(0)) if what == "sample" else model.get_state()
            except NotFittedError:
                continue
            except Exception as exc:  # noqa: BLE001
                raise _CheckFailed(f"unfitted {what}() raised {type(exc).__name__}, not NotFittedError") from None
            raise _CheckFailed(f"unfitted {what}() did not raise NotFittedError")

    def _round_trip(self, model: GenerativeModel) -> GenerativeModel:
        with tempfile.TemporaryDirectory(prefix="genloop-check-") as tmp:
            return load_model(save_model(model, Path(tmp) / "model"))

    def check_save_load(self) -> None:
        model = self.model
        loaded = self._round_trip(model)
        _require(type(loaded) is type(model), f"loaded a {type(loaded).__name__}")
        _require(loaded.get_params() == model.get_params(), "hyper-parameters differ after loading")
        _require(tuple(loaded.event_shape_) == tuple(model.event_shape_), "event_shape_ differs after loading")
        diff = _state_difference(_state_copy(model), _state_copy(loaded))
        _require(not diff, f"after save → load: {diff}")
        _require(np.array_equal(loaded.sample(self.n, rng=np.random.default_rng(3)),
                                model.sample(self.n, rng=np.random.default_rng(3))),
                 "the loaded model samples differently with the same seed")
        if model.has_log_prob:
            _require(np.array_equal(loaded.log_prob(self.X), model.log_prob(self.X)), "log_prob differs after loading")

    def check_save_load_continue(self) -> None:
        model = self.model
        loaded = self._round_trip(model)
        X_new = self.new_data(11)
        a = model.clone().fit(X_new, rng=np.random.default_rng(12), init=model)
        b = loaded.clone().fit(X_new, rng=np.random.default_rng(12), init=loaded)
        diff = _state_difference(_state_copy(a), _state_copy(b))
        _require(not diff, f"continuing from the loaded model ≠ continuing from the fitted one: {diff}")
        _require(np.array_equal(a.sample(self.n, rng=np.random.default_rng(13)),
                                b.sample(self.n, rng=np.random.default_rng(13))),
                 "continuing from the loaded model samples differently")

    def check_warm_start_keeps_init(self) -> None:
        init = self.model
        before = _state_copy(init)
        warm = init.clone()
        _require(warm.fit(self.new_data(5), rng=np.random.default_rng(6), init=init) is warm,
                 "fit(init=...) did not return self")
        diff = _state_difference(before, _state_copy(init))
        _require(not diff, f"fit(init=prev) changed prev: {diff}")

    def check_warm_start_from_init(self) -> None:
        if not self.template.supports_warm_start:
            raise _Skip("supports_warm_start is False")
        other = self.fresh().fit(self.new_data(21), rng=np.random.default_rng(22))
        diff = _state_difference(_state_copy(self.model), _state_copy(other))
        if not diff:
            raise _Skip("two fits on different data gave equal states")
        X_new = self.new_data(23)
        a = self.model.clone().fit(X_new, rng=np.random.default_rng(24), init=self.model)
        b = self.model.clone().fit(X_new, rng=np.random.default_rng(24), init=other)
        _require(bool(_state_difference(_state_copy(a), _state_copy(b))),
                 "fits warm-started from two different models on the same data and seed are identical: "
                 "the warm start re-initialises instead of starting from init")

    def check_loop_resume(self) -> None:
        from genloop.loop import LoopState, run_loop

        problems = []
        for scheme in self.schemes:
            source = _Resampled(self.X) if scheme == "fresh" else None
            kwargs: dict[str, Any] = dict(lam=1, generations=2, scheme=scheme, seed=3, metrics=["moments"],
                                          source=source, n_eval=32)
            full = list(run_loop(self.fresh(), self.X, **kwargs))
            model = self._round_trip(full[1].model)
            pool = [rec.synthetic for rec in full[1:2]] if scheme.startswith("accumulate") else []
            resumed = list(run_loop(self.fresh(), self.X, resume=LoopState(1, model, pool), **kwargs))
            if [r.generation for r in resumed] != [2]:
                problems.append(f"{scheme}: resumed generations {[r.generation for r in resumed]}")
                continue
            if resumed[0].metrics != full[2].metrics or not np.array_equal(resumed[0].samples, full[2].samples):
                problems.append(f"{scheme}: generation 2 resumed from the checkpoint of generation 1 differs")
                continue
            diff = _state_difference(_state_copy(resumed[0].model), _state_copy(full[2].model))
            if diff:
                problems.append(f"{scheme}: resumed generation 2: {diff}")
        _require(not problems, "; ".join(problems))

    def check_bad_input(self) -> None:
        X = np.array(self.X, dtype=np.float64, copy=True)
        X.reshape(-1)[0] = np.nan
        try:
            self.fresh().fit(X, rng=np.random.default_rng(0))
        except GenloopError:
            return
        except Exception as exc:  # noqa: BLE001
            raise _CheckFailed(f"fit on data with NaN raised {type(exc).__name__}: {exc}") from None
        raise _CheckFailed("fit on data with NaN raised no error")

    def check_gradients(self) -> None:
        try:
            from genloop.models.neural.base import TorchGenerativeModel
        except ImportError:  # torch not installed: no torch families
            raise _Skip("not a torch model") from None
        model = self.model
        if not isinstance(model, TorchGenerativeModel):
            raise _Skip("not a torch model")
        import torch

        g = torch.Generator().manual_seed(0)
        net = model.build_net(model.event_shape_, g)
        net.train()
        Z = model.to_model_space(self.X[:32])
        model.loss(net, Z, g).mean().backward()
        missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
        _require(not missing, f"parameters without gradient: {missing}")


__all__ = ["check_model", "ModelCheck", "CheckResult", "ModelCheckError", "CHECKS", "HINTS", "SCHEMES"]
