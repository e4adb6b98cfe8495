"""Experiments: every λ × seed of a config as one run folder, executed locally.

An experiment folder holds the resolved ``config.yaml`` and one run folder per
(λ, seed) named ``lam=<λ>/seed=<seed>``. Runs are independent, so they can execute in
parallel processes (``jobs``); each resumes on its own from its last completed generation.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genloop.config import RunConfig, format_lambda, parse_config
from genloop.data import RealSplit, make_data, split_real
from genloop.data.base import DataSource
from genloop.errors import ConfigError
from genloop.loop.engine import GenerationRecord, run_loop
from genloop.models import make_model
from genloop.rng import stage_rng
from genloop.store.run import RunStore, atomic_write_text

log = logging.getLogger(__name__)

ProgressFn = Callable[["RunSpec", GenerationRecord], None]


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment."""

    lam: float
    seed: int
    path: Path

    @property
    def label(self) -> str:
        return f"lam={format_lambda(self.lam)} seed={self.seed}"


def run_folder_name(lam: float, seed: int) -> str:
    return f"lam={format_lambda(lam)}/seed={seed}"


def plan_runs(cfg: RunConfig, out: Path) -> list[RunSpec]:
    """Every (λ, seed) of ``cfg`` with its folder under ``out``."""
    return [RunSpec(lam, seed, out / run_folder_name(lam, seed)) for lam in cfg.loop.lambdas for seed in cfg.loop.seeds]


def real_data(cfg: RunConfig, seed: int) -> tuple[DataSource, RealSplit]:
    """The data source and the (train, held-out) split of a run with ``seed``.

    The split depends only on the seed, so runs with the same seed and different λ share
    their real data.
    """
    source = make_data(cfg.data.name, **cfg.data.options)
    n_heldout = cfg.data.n_heldout
    if n_heldout is None and cfg.loop.eval_against == "train":
        n_heldout = 0
    if n_heldout is None:
        n_heldout = cfg.data.n if source.infinite else min(cfg.data.n, len(source) - cfg.data.n)
        if n_heldout < 1:
            raise ConfigError(
                f"data set {cfg.data.name!r} has {len(source)} samples: n={cfg.data.n} leaves none held out; "
                "lower data.n or set data.n_heldout"
            )
    return source, split_real(source, cfg.data.n, n_heldout, rng=stage_rng(seed, 0, "data"))


def check_experiment(cfg: RunConfig) -> None:
    """Everything that can fail before a folder is written: the model, the data of each seed."""
    make_model(cfg.model.name, **cfg.model.options)
    for seed in cfg.loop.seeds:
        real_data(cfg, seed)


def prepare_experiment(cfg: RunConfig, out: Path, *, resume: bool) -> list[RunSpec]:
    """Validate, then create (or check, when resuming) the experiment folder."""
    check_experiment(cfg)
    doc = cfg.resolved()
    cfg_path = out / "config.yaml"
    if cfg_path.exists():
        if not resume:
            raise ConfigError(f"output folder {out} already holds an experiment; pass --resume to continue it or choose another --out")
        old = yaml.safe_load(cfg_path.read_text())
        if _comparable(old) != _comparable(doc):
            raise ConfigError(
                f"cannot resume {out}: its config differs from this one (only loop.generations may change on resume)"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, yaml.safe_dump(doc, sort_keys=False))
    return plan_runs(cfg, out)


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(doc))
    doc.get("loop", {}).pop("generations", None)
    return doc


def execute_run(cfg: RunConfig, spec: RunSpec, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run (or resume) one (λ, seed) run to ``cfg.loop.generations``; return its last metrics."""
    source, split = real_data(cfg, spec.seed)
    keep_pool = cfg.loop.scheme in ("accumulate", "accumulate-subsample")
    with RunStore(spec.path) as store:
        last = store.last_generation
        resume_state = None
        if last >= 0:
            store.truncate_to(last)
            if last >= cfg.loop.generations:
                log.info("%s already complete (generation %d)", spec.label, last)
                store.write_status("completed", last)
                return store.read_metrics()[-1]
            resume_state = store.load_state(last, keep_pool=keep_pool)
            log.info("%s resumes after generation %d", spec.label, last)
        else:
            store.truncate_to(-1)
            run_doc = cfg.resolved()
            run_doc["loop"]["lambdas"] = [format_lambda(spec.lam)]
            run_doc["loop"]["seeds"] = [spec.seed]
            store.write_config(run_doc)
        records = run_loop(
            make_model(cfg.model.name, **cfg.model.options),
            split.train,
            lam=spec.lam,
            generations=cfg.loop.generations,
            scheme=cfg.loop.scheme,
            retrain=cfg.loop.retrain,
            seed=spec.seed,
            metrics=cfg.metrics,
            heldout=split.train if cfg.loop.eval_against == "train" else split.heldout,
            source=source,
            n_eval=cfg.loop.n_eval,
            resume=resume_state,
        )
        last_line: dict[str, Any] = {}
        for record in records:
            store.write_generation(
                record, keep_pool=keep_pool, keep_samples=cfg.output.keep_samples,
                keep_checkpoints=cfg.output.checkpoints,
            )
            last_line = {"generation": record.generation, **record.metrics}
            if progress is not None:
                progress(spec, record)
        store.write_status("completed", cfg.loop.generations)
        return last_line or store.read_metrics()[-1]


def _execute_in_child(doc: dict[str, Any], spec: RunSpec) -> tuple[RunSpec, dict[str, Any]]:
    return spec, execute_run(parse_config(doc), spec)


def _limit_child_threads(threads: int) -> None:
    """Worker initializer: share the cores among the workers instead of oversubscribing them.

    Sets the BLAS / OpenMP pools (threadpoolctl) and torch's intra-op pool of this worker
    process only; ``threads <= 0`` leaves the libraries' defaults (one thread per core in every
    worker, which oversubscribes the machine).
    """
    if threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    import torch

    torch.set_num_threads(threads)


def run_experiment(
    cfg: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    threads_per_job: int | None = None,
    progress: ProgressFn | None = None,
    on_run_done: Callable[[RunSpec], None] | None = None,
) -> list[RunSpec]:
    """Run every λ × seed of ``cfg`` under ``out``; return the run specs.

    With ``jobs > 1`` runs execute in that many processes, each limited to
    ``threads_per_job`` BLAS / OpenMP / torch threads (default: the cores divided among the
    jobs; 0: no limit); ``progress`` is then not called (``on_run_done`` is, per run).
    """
    out = Path(out)
    specs = prepare_experiment(cfg, out, resume=resume)
    if jobs <= 1 or len(specs) == 1:
        for spec in specs:
            execute_run(cfg, spec, progress=progress)
            if on_run_done is not None:
                on_run_done(spec)
        return specs
    doc = cfg.resolved()
    # "spawn", not fork: a forked child of a process whose BLAS / OpenMP / torch thread pools
    # are running can deadlock inside them.
    threads = max(1, (os.cpu_count() or 1) // jobs) if threads_per_job is None else threads_per_job
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_limit_child_threads, initargs=(threads,)) as pool:
        futures = [pool.submit(_execute_in_child, doc, spec) for spec in specs]
        for fut in as_completed(futures):
            spec, _ = fut.result()
            if on_run_done is not None:
                on_run_done(spec)
    return specs


def find_runs(folder: str | Path) -> list[Path]:
    """Run folders under ``folder`` (itself, when it is one), sorted by λ then seed."""
    folder = Path(folder)
    if (folder / "status.json").exists():
        return [folder]
    runs = [p.parent for p in folder.glob("lam=*/seed=*/status.json")]

    def key(p: Path) -> tuple[float, int]:
        lam = p.parent.name.split("=", 1)[1]
        return (math.inf if lam == "inf" else float(lam), int(p.name.split("=", 1)[1]))

    return sorted(runs, key=key)
