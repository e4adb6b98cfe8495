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
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genloop.config import RunConfig, format_lambda, parse_config
from genloop.data import RealSplit, make_data, split_real
from genloop.data.base import DataSource
from genloop.errors import ConfigError, RunFailedError
from genloop.loop.engine import GenerationRecord, LoopState, run_loop
from genloop.models import make_model
from genloop.rng import stage_rng
from genloop.store.run import FolderLock, RunStore, atomic_write_text

log = logging.getLogger(__name__)

ProgressFn = Callable[["RunSpec", GenerationRecord], None]


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment (``cell`` names its grid cell, empty outside grids)."""

    lam: float
    seed: int
    path: Path
    cell: str = ""

    @property
    def label(self) -> str:
        run = f"lam={format_lambda(self.lam)} seed={self.seed}"
        return f"{self.cell} {run}" if self.cell else run


#: One unit of work for an executor: a run and the (cell's) config it runs.
Task = tuple[RunConfig, RunSpec]


def run_folder_name(lam: float, seed: int) -> str:
    return f"lam={format_lambda(lam)}/seed={seed}"


def plan_runs(cfg: RunConfig, out: Path, cell: str = "") -> list[RunSpec]:
    """Every (λ, seed) of ``cfg`` with its folder under ``out``."""
    return [RunSpec(lam, seed, out / run_folder_name(lam, seed), cell) for lam in cfg.loop.lambdas for seed in cfg.loop.seeds]


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


def check_experiment(cfg: RunConfig, out: Path | None = None, *, jobs: int = 1,
                     check_resources: bool = True) -> None:
    """Everything that can fail before a folder is written (nothing is created here).

    The output folder, the model, every metric with its options, the scheme against the data
    source, the held-out split, the data's shape against the model, and (unless
    ``check_resources`` is false) the memory and disk the experiment needs.
    """
    from genloop.loop.engine import _resolve_metrics
    from genloop.sweep import preflight

    if out is not None:
        preflight.check_output_folder(out)
    model = make_model(cfg.model.name, **cfg.model.options)
    metrics = _resolve_metrics(cfg.metrics)
    source = make_data(cfg.data.name, **cfg.data.options)
    if cfg.loop.scheme == "fresh" and not source.infinite:
        raise ConfigError(
            f"loop.scheme 'fresh' draws new real data every generation, but data set {cfg.data.name!r} "
            "is a fixed set; use a source that can draw new samples (a toy set or gaussian) or another scheme"
        )
    if cfg.data.n_heldout == 0 and cfg.loop.eval_against == "heldout" and cfg.metrics:
        raise ConfigError(
            "data.n_heldout is 0, which leaves no held-out samples for the metrics; "
            "set data.n_heldout >= 1, or loop.eval_against: train"
        )
    event_shape, rows = preflight.event_shape_of(source, cfg.data.name)
    if rows is not None and cfg.data.n > rows:
        raise ConfigError(f"data set {cfg.data.name!r} has {rows} samples; data.n={cfg.data.n} is more")
    n_heldout = _heldout_size(cfg, source, rows)
    model.check_data(event_shape, cfg.data.n)
    preflight.check_gpu_run(model, event_shape, world_size=preflight.world_size_from_env())
    if not cfg.loop.train_generation_0 and not getattr(model, "init", None):  # issue 12
        raise ConfigError("loop.train_generation_0: false needs a model started from a checkpoint (model.init: PATH)")
    for metric in metrics:
        metric.check_ready(event_shape)
    if check_resources and out is not None:
        res = preflight.estimate_resources(cfg, event_shape, rows, jobs=jobs, n_heldout=n_heldout)
        preflight.check_resources(res, out)
    for seed in cfg.loop.seeds:
        real_data(cfg, seed)


def _heldout_size(cfg: RunConfig, source: DataSource, rows: int | None) -> int:
    if cfg.data.n_heldout is not None:
        return cfg.data.n_heldout
    if cfg.loop.eval_against == "train":
        return 0
    return cfg.data.n if rows is None else max(0, min(cfg.data.n, rows - cfg.data.n))


def prepare_experiment(cfg: RunConfig, out: Path, *, resume: bool) -> list[RunSpec]:
    """Create (or check, when resuming) the experiment folder; call under its lock.

    On resume the stored config must equal this one except ``loop.generations``, which may
    grow (every run is extended) but not shrink: the stored config always says what the runs
    hold.
    """
    doc = cfg.resolved()
    cfg_path = out / "config.yaml"
    if cfg_path.exists():
        if not resume:
            raise ConfigError(f"output folder {out} already holds an experiment; pass --resume to continue it or choose another --out")
        from genloop.config import read_yaml

        old = read_yaml(cfg_path, what="experiment config")
        if not isinstance(old, dict) or _comparable(old) != _comparable(doc):
            raise ConfigError(
                f"cannot resume {out}: its config differs from this one (only loop.generations may change on resume)"
            )
        old_generations = old.get("loop", {}).get("generations")
        if isinstance(old_generations, int) and cfg.loop.generations < old_generations:
            raise ConfigError(
                f"cannot resume {out} with loop.generations={cfg.loop.generations}: the experiment has "
                f"{old_generations} generations and shortening would leave runs longer than their config; "
                f"resume with {old_generations} or more, or choose another --out"
            )
        if old == doc:
            return plan_runs(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg_path, yaml.safe_dump(doc, sort_keys=False))
    return plan_runs(cfg, out)


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A config without what may change on resume: generations, tracking, resources.

    The document is re-validated first, so a config stored by an older genloop (which did not
    write options added since, at their defaults) compares equal to the same config today.
    """
    try:
        doc = parse_config(doc).resolved()
    except ConfigError:  # no longer valid: compare it as written (it will differ)
        pass
    doc = yaml.safe_load(yaml.safe_dump(doc))
    doc.get("loop", {}).pop("generations", None)
    for key in ("tracking", "resources"):  # how a run is observed and scheduled, not what it computes
        doc.pop(key, None)
    return doc


def experiment_lock(out: Path) -> FolderLock:
    """The lock held by the one process that writes an experiment folder (``OUT/.experiment.lock``)."""
    return FolderLock(out, ".experiment.lock", what="experiment folder")


def _run_doc(cfg: RunConfig, spec: RunSpec) -> dict[str, Any]:
    doc = cfg.resolved()
    doc["loop"]["lambdas"] = [format_lambda(spec.lam)]
    doc["loop"]["seeds"] = [spec.seed]
    return doc


def execute_run(cfg: RunConfig, spec: RunSpec, *, progress: ProgressFn | None = None,
                check_disk: bool = True) -> dict[str, Any]:
    """Run (or resume) one (λ, seed) run to ``cfg.loop.generations``; return its last metrics.

    A resume first verifies the folder against its checksums and rolls back to the last
    intact generation (logged as a warning). An interruption (Ctrl-C, SIGTERM, a full disk, an
    error) marks the run ``stopped`` with the reason; finished generations stay. With
    ``check_disk``, once generation 0's checkpoint size is known a run whose remaining
    checkpoints cannot fit the disk stops with the estimate.
    """
    from genloop.sweep.distributed import process_group, tell_followers

    group = process_group()
    if group is not None and not group.is_main:  # under torchrun: rank 0 writes, this rank follows
        return follow_run(cfg, spec)
    source, split = real_data(cfg, spec.seed)
    keep_pool = cfg.loop.scheme in ("accumulate", "accumulate-subsample")
    with RunStore(spec.path) as store:
        try:
            last = store.recover() if store.exists else -1
            run_doc = _run_doc(cfg, spec)
            if last >= 0 and (spec.path / "config.yaml").exists():
                stored = store.read_config()
                if not isinstance(stored, dict) or _comparable(stored) != _comparable(run_doc):
                    raise ConfigError(f"run folder {spec.path}: its config.yaml differs from the experiment's (edited?); "
                                      "restore it or delete the run folder to redo this run")
            if last < 0:
                store.truncate_to(-1)
            if last >= cfg.loop.generations:
                log.info("%s already complete (generation %d)", spec.label, last)
                if store.status().get("state") != "completed":
                    store.write_status("completed", last)
                tell_followers(True, last)
                return store.read_metrics()[-1]
            store.write_config(run_doc)
            resume_state = store.load_state(last, keep_pool=keep_pool) if last >= 0 else None
        except BaseException as exc:
            tell_followers(False, message=str(exc))
            raise
        tell_followers(True, last)  # under torchrun the other ranks now load the same state
        if resume_state is not None:
            log.info("%s resumes after generation %d", spec.label, last)
        records = run_loop_for(cfg, spec, source=source, split=split, resume=resume_state, load_model=store.load_model)
        last_line: dict[str, Any] = {}
        tracker = None
        if cfg.tracking.backend == "mlflow":
            from genloop.sweep.tracking import MlflowTracker

            tracker = MlflowTracker(cfg, spec)
        try:
            for record in records:
                store.write_generation(
                    record, keep_pool=keep_pool, keep_samples=cfg.output.keep_samples,
                    keep_checkpoints=cfg.output.checkpoints,
                )
                if tracker is not None:
                    tracker.log_generation(record.generation, record.metrics)
                last_line = {"generation": record.generation, **record.metrics}
                shutil.rmtree(spec.path / "training" / f"gen_{record.generation:04d}", ignore_errors=True)
                if check_disk and record.generation == 0 and cfg.loop.generations > 0:
                    from genloop.sweep.preflight import check_disk_for_checkpoints

                    check_disk_for_checkpoints(store.generation_bytes(0), cfg.loop.generations, 1,
                                               cfg.output.checkpoints, spec.path)
                if progress is not None:
                    progress(spec, record)
        except BaseException as exc:
            store.mark_stopped(_stop_reason(exc))
            if tracker is not None:
                tracker.client.set_terminated(tracker.run_id, status="KILLED")
            raise
        finally:
            records.close()
        store.write_status("completed", cfg.loop.generations)
        if tracker is not None:
            tracker.finish(spec.path, cfg.loop.generations)
        return last_line or store.read_metrics()[-1]


def run_loop_for(cfg: RunConfig, spec: RunSpec, *, source: DataSource, split: RealSplit,
                 resume: LoopState | None, load_model: Callable[[int], Any]) -> Iterator[GenerationRecord]:
    """The generation loop of run ``spec`` of ``cfg`` (not started: a generator)."""
    return run_loop(
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
        resume=resume,
        checkpoint_dir=spec.path / "training",
        checkpoint_every=cfg.output.training_checkpoint_every,
        variant=cfg.loop.variant,
        load_model=load_model,
        train_generation_0=cfg.loop.train_generation_0,
        eval_samples=cfg.loop.eval_samples,
    )


def follow_run(cfg: RunConfig, spec: RunSpec) -> dict[str, Any]:
    """On ranks > 0: run the loop of ``spec`` alongside rank 0 without writing anything.

    Waits for rank 0's word (:func:`~genloop.sweep.distributed.tell_followers`); raises its
    error, returns at once when the run is already complete, else loads the state rank 0
    resumes from and iterates the same generations (training its slices, sampling its shares). Returns ``{}``: the metrics
    live on rank 0.
    """
    from genloop.models.neural.distributed import broadcast_status

    ok, last, message = broadcast_status(False)
    if not ok:
        raise ConfigError(message or f"rank 0 could not start run {spec.label}")
    if last >= cfg.loop.generations:
        return {}
    source, split = real_data(cfg, spec.seed)
    keep_pool = cfg.loop.scheme in ("accumulate", "accumulate-subsample")
    store = RunStore(spec.path)  # read only: rank 0 holds the lock and writes
    resume = store.load_state(last, keep_pool=keep_pool) if last >= 0 else None
    records = run_loop_for(cfg, spec, source=source, split=split, resume=resume, load_model=store.load_model)
    try:
        for _ in records:
            pass
    finally:
        records.close()
    return {}


def _stop_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit):
        return f"stopped by a signal (exit {exc.code})"
    return f"{type(exc).__name__}: {exc}"


def _execute_in_child(doc: dict[str, Any], spec: RunSpec, check_disk: bool) -> tuple[RunSpec, dict[str, Any]]:
    try:
        return spec, execute_run(parse_config(doc), spec, check_disk=check_disk)
    except SystemExit as exc:
        # SIGTERM (from the parent, or because the parent died): the run is marked stopped;
        # a worker told to stop must not go back to the pool for the next run.
        logging.shutdown()
        os._exit(exc.code if isinstance(exc.code, int) else 1)


def _init_worker(threads: int, parent_pid: int, counter: Any = None) -> None:
    """Worker initializer: die with the parent, take a GPU of its own, stop cleanly on SIGTERM,
    share the cores.

    On a machine with GPUs, worker i (numbered by ``counter``, a shared integer) sees only GPU
    i mod (number of GPUs) through ``CUDA_VISIBLE_DEVICES``, so ``--jobs N`` spreads the runs
    over the GPUs instead of stacking them on the first.

    A worker whose parent is gone (killed) must not take queued runs nor wait forever: on
    Linux the kernel sends it SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), elsewhere a
    watcher thread notices the new parent pid. SIGTERM raises ``SystemExit`` in the worker, so
    its run is marked ``stopped`` with its finished generations kept.
    """
    import signal

    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers
    # with SIGTERM, so each run is marked stopped exactly once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    if counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        from genloop.models.neural.distributed import pin_job_to_gpu

        pin_job_to_gpu(index)  # before anything starts CUDA in this process
    _limit_threads(threads)
    # Last: a SIGTERM while still importing (no run started) just ends the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM in a worker: stop once. Further SIGTERMs (the parent-death signal and the
    watcher can both send one) are ignored, so they cannot interrupt the clean-up that marks
    the run stopped."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _die_with_parent(parent_pid: int) -> None:
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:  # portable fallback (and a guard against a missed signal)
        import time

        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30.0)  # time to mark the run stopped; then leave whatever the main thread does
        os._exit(1)

    threading.Thread(target=watch, name="genloop-parent-watch", daemon=True).start()


def _limit_threads(threads: int) -> None:
    """Share the cores among the workers instead of oversubscribing them.

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


def run_experiment(cfg: RunConfig, out: str | Path, **options: Any) -> list[RunSpec]:
    """Run every λ × seed of ``cfg`` under ``out``; return the run specs.

    Everything is validated first (:func:`check_experiment`); then the experiment folder is
    locked for the whole experiment (one writer per folder: a second is refused naming the
    first), and only then is anything written. ``options`` are those of
    :func:`genloop.sweep.experiment.run_grid` (``resume``, ``jobs``, ``threads_per_job``,
    ``progress``, ``on_run_done``, ``check_resources``, ``executor``, ``address``); runs
    execute as :func:`run_tasks` says.
    """
    from genloop.sweep.experiment import run_grid, single_experiment

    return [spec for _, spec in run_grid(single_experiment(cfg), out, **options)]


def check_jobs(jobs: object) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a whole number >= 1, got {jobs!r}")


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None


def run_tasks(
    tasks: list[Task],
    *,
    jobs: int = 1,
    threads_per_job: int | None = None,
    progress: ProgressFn | None = None,
    on_run_done: Callable[[RunSpec], None] | None = None,
    check_disk: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> None:
    """Execute runs: one after the other, in ``jobs`` local processes, or as Ray tasks.

    ``local`` with ``jobs > 1`` runs each in a spawned process limited to ``threads_per_job``
    BLAS / OpenMP / torch threads (default: the cores divided among the jobs; 0: no limit);
    ``ray`` submits each run as a Ray Core task (see :mod:`genloop.sweep.ray_executor`).
    ``progress`` (per generation) is called only when runs execute in this process;
    ``on_run_done`` is called per finished run in every mode. A worker that dies is a
    :class:`RunFailedError` naming the runs to resume.
    """
    if executor == "ray":
        from genloop.sweep.ray_executor import run_on_ray

        run_on_ray(tasks, address=address, on_run_done=on_run_done, check_disk=check_disk)
        return
    if executor != "local":
        raise ConfigError(f"unknown executor {executor!r}; known executors: local, ray")
    if jobs <= 1 or len(tasks) == 1:
        for cfg, spec in tasks:
            execute_run(cfg, spec, progress=progress, check_disk=check_disk)
            if on_run_done is not None:
                on_run_done(spec)
        return
    _run_in_processes(tasks, jobs=jobs, threads_per_job=threads_per_job, on_run_done=on_run_done,
                      check_disk=check_disk)


def _run_in_processes(tasks: list[Task], *, jobs: int, threads_per_job: int | None,
                      on_run_done: Callable[[RunSpec], None] | None, check_disk: bool) -> None:
    from concurrent.futures.process import BrokenProcessPool

    # "spawn", not fork: a forked child of a process whose BLAS / OpenMP / torch thread pools
    # are running can deadlock inside them.
    threads = max(1, (os.cpu_count() or 1) // jobs) if threads_per_job is None else threads_per_job
    done: set[RunSpec] = set()
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                               initargs=(threads, os.getpid(), context.Value("i", 0)))
    try:
        futures = [pool.submit(_execute_in_child, cfg.resolved(), spec, check_disk) for cfg, spec in tasks]
        for fut in as_completed(futures):
            spec, _ = fut.result()
            done.add(spec)
            if on_run_done is not None:
                on_run_done(spec)
    except BrokenProcessPool:
        raise RunFailedError(
            "a worker process died (killed, or out of memory) before these runs finished: "
            f"{unfinished(tasks, done)}; their finished generations are saved: rerun the same command with --resume"
        ) from None
    except BaseException:
        # One run failed or we were interrupted: stop the others now (SIGTERM marks each run
        # stopped, keeping its finished generations) instead of waiting for them to finish.
        for proc in list(getattr(pool, "_processes", {}).values()):  # no public API for this
            if proc.is_alive():
                proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def unfinished(tasks: list[Task], done: set[RunSpec]) -> str:
    """The labels of the runs not in ``done`` (for messages)."""
    return ", ".join(spec.label for _, spec in tasks if spec not in done)


def run_folder_problems(run: Path) -> list[str]:
    """What a resume of ``run`` would refuse beyond its checksums: a lock that is a folder, a
    run config that no longer matches the experiment's (read-only)."""
    from genloop.config import read_yaml
    from genloop.errors import GenloopError

    problems = []
    if (run / ".lock").is_dir():
        problems.append(".lock is a folder, not a lock file")
    exp_cfg = run.parent.parent / "config.yaml"
    if exp_cfg.is_file() and (run / "config.yaml").is_file():
        try:
            exp, own = read_yaml(exp_cfg), read_yaml(run / "config.yaml")
        except GenloopError as exc:
            return [*problems, str(exc)]
        strip = lambda d: {**_comparable(d), "loop": {k: v for k, v in _comparable(d).get("loop", {}).items()  # noqa: E731
                                                      if k not in ("lambdas", "seeds")}}
        if not isinstance(exp, dict) or not isinstance(own, dict) or strip(exp) != strip(own):
            problems.append("config.yaml differs from the experiment's config.yaml (edited?)")
    return problems


def find_runs(folder: str | Path) -> list[Path]:
    """Run folders under ``folder`` (itself, when it is one), sorted by cell, λ, then seed.

    ``folder`` may be a run, one λ of an experiment (its seeds), an experiment, or a grid
    experiment (the runs of every cell).
    """
    folder = Path(folder)
    if (folder / "status.json").exists():
        return [folder]
    runs = [p.parent for p in folder.glob("lam=*/seed=*/status.json")]
    if not runs and folder.name.startswith("lam="):  # one λ of an experiment: its seeds
        runs = [p.parent for p in folder.glob("seed=*/status.json")]
    if not runs and (folder / "cells.csv").exists():  # a grid: every cell's runs
        runs = [p.parent for p in folder.glob("*/lam=*/seed=*/status.json")]

    def key(p: Path) -> tuple[str, float, int]:
        lam = p.parent.name.split("=", 1)[1]
        cell = p.parent.parent.name if p.parent.parent != folder else ""
        return (cell, math.inf if lam == "inf" else float(lam), int(p.name.split("=", 1)[1]))

    return sorted(runs, key=key)
