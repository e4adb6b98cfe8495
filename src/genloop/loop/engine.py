"""The generation loop (the paper's Algorithm 1 with the variants of :mod:`genloop.loop.schemes`).

:func:`run_loop` is a generator: it yields one :class:`GenerationRecord` per generation, so a
caller can stop, store and resume it. Every generation t draws its randomness from
independent streams ``stage_rng(seed, t, stage)``; the loop's state after generation t is just
(the fitted model, the synthetic pool, and for the ``mixture`` variant the models of earlier
generations, reloaded from their checkpoints), which is why a run resumed from a checkpoint
yields exactly the records of an uninterrupted run. How the synthetic half is made is the
variant's business (:mod:`genloop.loop.variants`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from genloop._validation import check_array
from genloop.data.base import DataSource
from genloop.errors import ConfigError
from genloop.loop.schemes import SCHEMES, assemble, parse_lambda, real_count, synthetic_count
from genloop.loop.variants import SyntheticDraw, VariantConfig, VariantRunner, parse_variant
from genloop.metrics.base import Metric
from genloop.models.base import GenerativeModel
from genloop.rng import stage_rng

log = logging.getLogger(__name__)

Retrain = Literal["finetune", "scratch"]
#: where a generation's evaluation samples come from (``loop.eval_samples``)
EvalSamples = Literal["fresh", "reuse"]


@dataclass
class GenerationRecord:
    """What one generation produced.

    ``metrics`` are computed on ``n_eval`` samples of ``model`` (kept in ``samples``; a draw
    of their own, or with ``eval_samples="reuse"`` the head of the next generation's
    ``synthetic`` set) against the held-out real set; ``synthetic`` is the set drawn from the previous model to
    train this generation (empty at generation 0); ``seconds`` is the wall time of the whole
    generation and ``timings`` splits it into ``sample`` (drawing synthetic data), ``fit``,
    ``eval`` (drawing evaluation samples and computing metrics) and ``other``.
    """

    generation: int
    n_real: int
    n_synthetic: int
    metrics: dict[str, float]
    model: GenerativeModel
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False)
    synthetic: np.ndarray | None = field(default=None, repr=False)


@dataclass
class LoopState:
    """Where a loop stands after a completed generation: enough to resume it exactly.

    ``pool`` holds every synthetic set drawn so far (only the accumulate schemes read it; it
    is empty otherwise). ``history`` maps earlier generations to their fitted models, for the
    ``mixture`` variant (models it lacks come from :func:`run_loop`'s ``load_model``).
    """

    generation: int
    model: GenerativeModel
    pool: list[np.ndarray] = field(default_factory=list)
    history: dict[int, GenerativeModel] = field(default_factory=dict)


def _resolve_model(model: GenerativeModel | str) -> GenerativeModel:
    if isinstance(model, str):
        from genloop.models import make_model

        return make_model(model)
    if not isinstance(model, GenerativeModel):
        raise ConfigError(f"model must be a GenerativeModel or a registered name, got {type(model).__name__}")
    return model


def _resolve_metrics(metrics: Sequence[Metric | str | Mapping[str, Any]]) -> list[Metric]:
    from genloop.metrics import make_metric

    out: list[Metric] = []
    for m in metrics:
        if isinstance(m, Metric):
            out.append(m)
        elif isinstance(m, str):
            out.append(make_metric(m))
        elif isinstance(m, Mapping):
            opts = dict(m)
            name = opts.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"a metric given as a mapping needs a 'name', got {dict(m)!r}")
            out.append(make_metric(name, **opts))
        else:
            raise ConfigError(f"cannot use {m!r} as a metric")
    return out


def evaluate(
    model: GenerativeModel,
    metrics: Sequence[Metric],
    heldout: np.ndarray,
    *,
    n_eval: int,
    rng: np.random.Generator,
) -> tuple[dict[str, float], np.ndarray]:
    """Draw ``n_eval`` samples from ``model`` and compute every metric against ``heldout``."""
    samples = model.sample(n_eval, rng=rng)
    return evaluate_samples(samples, model, metrics, heldout, rng=rng), samples


def evaluate_samples(
    samples: np.ndarray,
    model: GenerativeModel,
    metrics: Sequence[Metric],
    heldout: np.ndarray,
    *,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Every metric of ``samples`` (drawn from ``model``) against ``heldout``."""
    values: dict[str, float] = {}
    for metric in metrics:
        out = metric(samples, heldout, model=model if metric.requires_model else None, rng=rng)
        for key, val in out.items():
            if key in values:
                raise ConfigError(f"two metrics report the same key {key!r}; configure only one")
            values[key] = float(val)
    return values


def run_loop(
    model: GenerativeModel | str,
    real: np.ndarray,
    *,
    lam: float | str,
    generations: int,
    scheme: str = "replace",
    retrain: Retrain = "finetune",
    seed: int = 0,
    metrics: Sequence[Metric | str | Mapping[str, Any]] = (),
    heldout: np.ndarray | None = None,
    source: DataSource | None = None,
    n_eval: int | None = None,
    resume: LoopState | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 200_000,
    variant: VariantConfig | Mapping[str, Any] | str | None = None,
    load_model: Callable[[int], GenerativeModel] | None = None,
    train_generation_0: bool = True,
    eval_samples: EvalSamples = "fresh",
) -> Iterator[GenerationRecord]:
    """Iteratively retrain ``model`` on mixes of ``real`` and its own samples.

    Generation 0 fits the n real samples (θ_0 = A(D_real)); generation t = 1 … ``generations``
    fits the mix built by ``scheme`` from D_real and ⌊λ·n⌋ samples of θ_{t-1}
    (Bertrand et al. 2024, Algorithm 1). ``retrain="finetune"`` warm-starts each fit from the
    previous generation's parameters, ``"scratch"`` does not.

    Args:
        model: an unfitted model (cloned every generation, never fitted in place) or a
            registered model name.
        real: D_real, shape ``(n, *event_shape)``.
        lam: λ, the synthetic-to-real ratio, in [0, ∞]; ``"inf"`` = fully synthetic.
        generations: number of retraining generations after generation 0.
        scheme: ``replace`` | ``accumulate`` | ``accumulate-subsample`` | ``fresh``.
        seed: the run's seed; every generation and stage gets its own stream from it.
        metrics: metric objects, registered names, or ``{"name": ..., **options}``.
        heldout: real samples for evaluation (default: ``real``).
        source: the data source; required by ``fresh`` to draw new real data.
        n_eval: samples drawn per generation for the metrics (default: ``len(heldout)``).
        resume: the state after a completed generation; the loop continues after it.
        checkpoint_dir: where models that can checkpoint inside a generation's training
            (``enable_training_checkpoints``) keep those checkpoints, one folder
            ``gen_XXXX`` per generation; a killed generation then resumes inside its
            training. The caller deletes a generation's folder once the generation is stored.
        checkpoint_every: training samples between two such checkpoints.
        variant: how the synthetic samples are made (:mod:`genloop.loop.variants`): a block
            such as ``{"kind": "curated", "K": 4, "tau": 1.0, "reward": "quadratic"}``, a kind
            name, or None for the paper's loop (``plain``). Its ``lam_schedule`` sets λ_t.
        load_model: ``generation -> fitted model`` (e.g. ``RunStore.load_model``), used on resume
            by the ``mixture`` variant to recover the models of earlier generations.
        train_generation_0: ``False`` makes generation 0 the model's ``init`` checkpoint as it
            is (``model.load_init``), evaluated without training, as the paper's image runs.
        eval_samples: ``"fresh"`` evaluates generation t on ``n_eval`` samples of its own
            stream; ``"reuse"`` (plain variant only) draws generation t+1's synthetic set
            right after fitting generation t and evaluates on its first ``n_eval`` samples,
            drawing only the shortfall from the evaluation stream (the paper's code evaluates
            on the samples it trains on). The next generation trains on that same set, so a
            run samples ``max(k, n_eval)`` instead of ``k + n_eval`` images per generation.
            The synthetic set is the draw of generation t+1's own stream either way, so
            training sets, models and resume are unchanged; see docs/runs.md.

    Yields:
        one :class:`GenerationRecord` per generation, in order.
    """
    lam = parse_lambda(lam)
    real = check_array(real, name="real data", min_samples=1)
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    if retrain not in ("finetune", "scratch"):
        raise ConfigError(f"retrain must be 'finetune' or 'scratch', got {retrain!r}")
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ConfigError(f"generations must be an integer >= 0, got {generations!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if n_eval is not None and (isinstance(n_eval, bool) or not isinstance(n_eval, (int, np.integer))):
        raise ConfigError(f"n_eval must be a whole number >= 1, got {n_eval!r}")
    if scheme == "fresh" and (source is None or not source.infinite):
        raise ConfigError("scheme 'fresh' needs a data source that can draw new samples (an infinite source)")
    prototype = _resolve_model(model)
    if not train_generation_0 and not (hasattr(prototype, "load_init") and getattr(prototype, "init", None)):
        raise ConfigError(
            "loop.train_generation_0: false needs a model started from a checkpoint (the model option init: PATH)"
        )
    metric_objs = _resolve_metrics(metrics)
    metric_objs_all = list(metric_objs)
    heldout = real if heldout is None else check_array(heldout, name="held-out data")
    n = real.shape[0]
    n_eval = heldout.shape[0] if n_eval is None else int(n_eval)
    if n_eval < 1:
        raise ConfigError(f"n_eval must be >= 1, got {n_eval}")
    main = is_main_process()
    if not main:  # under DDP every rank samples its share; rank 0 alone computes the metrics
        metric_objs = []
    for metric in metric_objs:
        metric.prepare(heldout)

    vcfg = parse_variant(variant)
    runner = VariantRunner(vcfg, real=real, seed=int(seed))
    runner.check_model(prototype)
    if eval_samples not in ("fresh", "reuse"):
        raise ConfigError(f"loop.eval_samples must be 'fresh' or 'reuse', got {eval_samples!r}")
    if eval_samples == "reuse" and vcfg.kind != "plain":
        raise ConfigError(
            f"loop.eval_samples: reuse needs the plain variant (the {vcfg.kind!r} variant's synthetic set is not "
            "a sample of the model); use eval_samples: fresh"
        )
    predrawn: dict[int, SyntheticDraw] = {}  # eval_samples: reuse — generation t+1's set, drawn at t
    if resume is None:
        prev: GenerativeModel | None = None
        pool: list[np.ndarray] = []
        start = 0
        history: dict[int, GenerativeModel] = {}
    else:
        prev, pool, start = resume.model, list(resume.pool), resume.generation + 1
        history = {}
        if runner.needs_history:
            known = {**resume.history, resume.generation: resume.model}
            history = _recover_history(known, vcfg, resume.generation, load_model)
    keep_pool = scheme in ("accumulate", "accumulate-subsample")

    for t in range(start, generations + 1):
        t0 = time.perf_counter()
        timings = {"sample": 0.0, "fit": 0.0, "eval": 0.0}
        synthetic: np.ndarray | None = None
        variant_metrics: dict[str, float] = {}
        if t == 0:
            X, n_real, n_synth = real, n, 0
        else:
            assert prev is not None
            lam_t = vcfg.lam_at(t, lam, generations)
            k = synthetic_count(lam_t, n)
            ts = time.perf_counter()
            models = history if runner.needs_history else {t - 1: prev}
            models[t - 1] = prev
            draw = predrawn.pop(t, None) or runner.draw(t, k, models, lambda stage, _t=t: stage_rng(seed, _t, stage))
            synthetic = draw.X
            variant_metrics = draw.metrics
            timings["sample"] = time.perf_counter() - ts
            if keep_pool:
                pool.append(synthetic)
            if math.isinf(lam_t):
                real_part = real[:0]
            elif scheme == "fresh":
                real_part = source.sample(real_count(lam_t, n), rng=stage_rng(seed, t, "fresh"))  # type: ignore[union-attr]
            else:
                real_part = real
            mix = assemble(scheme, real=real_part, synthetic=synthetic, pool=pool, lam=lam_t,
                           rng=stage_rng(seed, t, "subsample"))
            X, n_real, n_synth = mix.X, mix.n_real, mix.n_synthetic
        tf = time.perf_counter()
        learner = prototype.clone()
        if checkpoint_dir is not None and hasattr(learner, "enable_training_checkpoints"):
            learner.enable_training_checkpoints(Path(checkpoint_dir) / f"gen_{t:04d}", every_samples=checkpoint_every)
        if t == 0 and not train_generation_0:  # issue 12: the init checkpoint itself is generation 0
            fitted = learner.load_init(event_shape=tuple(int(s) for s in X.shape[1:]))
        else:
            fitted = learner.fit(
                X, rng=stage_rng(seed, t, "fit"), init=prev if (retrain == "finetune" and prev is not None) else None
            )
        timings["fit"] = time.perf_counter() - tf
        te = time.perf_counter()
        values: dict[str, float] = {}
        samples = None
        if not main and metric_objs_all:
            # the other ranks draw their share of the evaluation samples (a collective), no metrics
            if eval_samples == "reuse":
                samples, ahead = _reuse_draw(fitted, runner, vcfg, t, lam, generations, n, n_eval, seed,
                                             stage_rng(seed, t, "eval"))
                if ahead is not None:
                    predrawn[t + 1] = ahead
            else:
                samples = fitted.sample(n_eval, rng=stage_rng(seed, t, "eval"))
        elif metric_objs and eval_samples == "reuse":
            ts = time.perf_counter()
            eval_rng = stage_rng(seed, t, "eval")
            samples, ahead = _reuse_draw(fitted, runner, vcfg, t, lam, generations, n, n_eval, seed, eval_rng)
            if ahead is not None:
                predrawn[t + 1] = ahead
            timings["sample"] += time.perf_counter() - ts
            values = evaluate_samples(samples, fitted, metric_objs, heldout, rng=eval_rng)
        elif metric_objs:
            values, samples = evaluate(fitted, metric_objs, heldout, n_eval=n_eval, rng=stage_rng(seed, t, "eval"))
        if runner.reward is not None:
            if samples is None:
                samples = fitted.sample(n_eval, rng=stage_rng(seed, t, "eval"))
            values.update(runner.reward_metrics(samples))
        values.update(variant_metrics)
        timings["eval"] = time.perf_counter() - te
        seconds = time.perf_counter() - t0
        timings["other"] = max(seconds - timings["sample"] - timings["fit"] - timings["eval"], 0.0)
        log.debug("generation %d: n_real=%d n_synthetic=%d %s", t, n_real, n_synth, values)
        yield GenerationRecord(
            generation=t, n_real=n_real, n_synthetic=n_synth, metrics=values, model=fitted,
            seconds=seconds, timings=timings, samples=samples, synthetic=synthetic,
        )
        prev = fitted
        if runner.needs_history:
            history[t] = fitted
            _trim_history(history, vcfg, t + 1)


def _reuse_draw(
    fitted: GenerativeModel, runner: VariantRunner, vcfg: VariantConfig, t: int, lam: float, generations: int,
    n: int, n_eval: int, seed: int, eval_rng: np.random.Generator,
) -> tuple[np.ndarray, SyntheticDraw | None]:
    """``loop.eval_samples: reuse``: generation t+1's synthetic set (drawn now from its own
    stream, exactly as generation t+1 would draw it) and generation t's evaluation samples,
    its first ``n_eval`` rows plus a shortfall drawn from generation t's evaluation stream."""
    ahead: SyntheticDraw | None = None
    if t < generations:
        k = synthetic_count(vcfg.lam_at(t + 1, lam, generations), n)
        if k > 0:
            ahead = runner.draw(t + 1, k, {t: fitted}, lambda stage, _t=t + 1: stage_rng(seed, _t, stage))
    head = ahead.X[:n_eval] if ahead is not None else None
    short = n_eval - (0 if head is None else head.shape[0])
    if head is not None and short <= 0:
        return head, ahead
    extra = fitted.sample(short, rng=eval_rng)
    return (extra if head is None else np.concatenate([head, extra], axis=0)), ahead


def is_main_process() -> bool:
    """Whether this process computes metrics: always, except on ranks > 0 of a torch
    process group (``genloop run`` under ``torchrun``)."""
    import sys

    if "torch.distributed" not in sys.modules:  # no torch, no process group
        return True
    from genloop.models.neural.distributed import world

    return world().is_main


def _trim_history(history: dict[int, GenerativeModel], vcfg: VariantConfig, next_t: int) -> None:
    """Drop models that no later generation's mixture window can use."""
    window = getattr(vcfg, "window", None)
    keep = set(window(next_t)) if window is not None else set()
    for s in [s for s in history if s not in keep]:
        del history[s]


def _recover_history(history: dict[int, GenerativeModel], vcfg: VariantConfig, last: int,
                     load_model: Callable[[int], GenerativeModel] | None) -> dict[int, GenerativeModel]:
    """The models the mixture window after generation ``last`` needs, loaded when missing."""
    needed = vcfg.window(last + 1)  # type: ignore[union-attr]
    missing = [s for s in needed if s not in history]
    if missing and load_model is None:
        raise ConfigError(
            f"the mixture variant resumes after generation {last} but has no model of generation(s) {missing}; "
            "pass load_model (e.g. RunStore.load_model) or LoopState.history"
        )
    out = {s: history[s] if s in history else load_model(s) for s in needed}  # type: ignore[misc]
    return out
