"""The single run function and the experiment folder it lives in.

An experiment folder holds the resolved ``config.yaml`` and one run folder per (λ, seed)
named ``lam=<λ>/seed=<seed>``. :func:`execute_run` runs (or resumes) one of them; runs are
independent, so executors (:mod:`genloop.sweep.executors`) may run them in any order, in
parallel processes or on a cluster; each resumes on its own from its last completed
generation. Everything a run needs is checked first by :func:`check_experiment`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from genloop.config import RunConfig, format_lambda, parse_stored_config, real_data
from genloop.data import RealSplit, make_data
from genloop.data.base import DataSource
from genloop.errors import ConfigError
from genloop.loop.engine import GenerationRecord, LoopState, run_loop
from genloop.loop.variants import check_variant, check_variant_callables
from genloop.models import make_model
from genloop.store.links import refuse_links_on_path, remove_inside
from genloop.sweep.cells import CELLS_TABLE, listed_cells
from genloop.store.run import FolderLock, RunStore, atomic_write_text
from genloop.sweep.spec import ProgressFn, RunSpec, Task, run_folder_name

log = logging.getLogger(__name__)

def plan_runs(cfg: RunConfig, out: Path, cell: str = "") -> list[RunSpec]:
    """Every (λ, seed) of ``cfg`` with its folder under ``out``."""
    return [RunSpec(lam, seed, out / run_folder_name(lam, seed), cell) for lam in cfg.loop.lambdas for seed in cfg.loop.seeds]


def check_experiment(cfg: RunConfig, out: Path | None = None, *, jobs: int = 1,
                     check_resources: bool = True) -> None:
    """Everything that can fail before a folder is written (nothing is created here).

    The output folder, the model, every metric with its options and against the sample sizes
    it will see (FID's feature dimension against ``n_eval``), the scheme against the data
    source, the held-out split, the data's shape against the model, (unless
    ``check_resources`` is false) the memory and disk the experiment needs, and the variant
    (:func:`~genloop.loop.variants.check_variant`: the λ schedule over every generation, the
    correction against the data type, the reward against the data's dimension, the sampler
    options against the family, the mixture weights).
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
    probe = preflight.probe_data(source)
    event_shape, rows = probe.event_shape, probe.rows
    if rows is not None and cfg.data.n > rows:
        raise ConfigError(f"data set {cfg.data.name!r} has {rows} samples; data.n={cfg.data.n} is more")
    n_heldout = _heldout_size(cfg, source, rows)
    model.check_data(event_shape, cfg.data.n)
    preflight.check_gpu_run(model, event_shape, world_size=preflight.world_size_from_env())
    if not cfg.loop.train_generation_0 and not getattr(model, "init", None):  # issue 12
        raise ConfigError("loop.train_generation_0: false needs a model started from a checkpoint (model.init: PATH)")
    n_real = cfg.data.n if cfg.loop.eval_against == "train" else n_heldout
    n_generated = cfg.loop.n_eval or n_real
    for metric in metrics:
        metric.check_ready(event_shape)
        metric.check_sizes(event_shape, n_generated=n_generated, n_real=n_real)
    if check_resources and out is not None:
        res = preflight.estimate_resources(cfg, event_shape, rows, jobs=jobs, n_heldout=n_heldout)
        preflight.check_resources(res, out)
    check_variant(cfg.loop.variant, model, event_shape=event_shape, tokens=probe.tokens, n=cfg.data.n,
                  lambdas=cfg.loop.lambdas, generations=cfg.loop.generations)
    for i, seed in enumerate(cfg.loop.seeds):
        _, split = real_data(cfg, seed)
        if i == 0:  # module:function rewards / corrections: imported and probed (the start of a run)
            check_variant_callables(cfg.loop.variant, split.train)
    for line in preflight.learning_rate_warnings(cfg):
        log.warning("%s", line.removeprefix("warning: "))


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
    for spec in plan_runs(cfg, out):  # links where genloop writes: refused before anything is written
        refuse_links_on_path(out, spec.path, what="run folder")
        RunStore(spec.path).refuse_links()
    if cfg_path.exists() and only_failed_start(out):
        _take_over_failed_start(out, doc)
    elif cfg_path.exists():
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


def _run_folders(out: Path) -> list[Path]:
    """Every run folder under ``out`` (``lam=*/seed=*``), whether or not it has a status."""
    return sorted(p for p in out.glob("lam=*/seed=*") if p.is_dir())


def started_work(run: Path) -> bool:
    """Whether ``run`` holds work worth keeping: a completed generation, a status that cannot be
    read (it might vouch for one), or checkpoints inside a generation's training."""
    from genloop.errors import DataError

    try:
        if RunStore(run).last_generation >= 0:
            return True
    except DataError:
        return True
    training = run / "training"
    return training.is_dir() and any(training.iterdir())


def only_failed_start(out: Path) -> bool:
    """Whether ``out`` holds an experiment config but no work: no run has completed a
    generation or saved a training checkpoint (a start that failed, e.g. in generation 0).

    Such a folder is not an experiment: a rerun, corrected or not, starts it afresh.
    """
    out = Path(out)
    if not (out / "config.yaml").is_file():
        return False
    runs = _run_folders(out) + [p for cell in out.iterdir() if cell.is_dir() and not cell.name.startswith("lam=")
                                for p in _run_folders(cell)]
    return not any(started_work(run) for run in runs)


def _take_over_failed_start(out: Path, doc: dict[str, Any]) -> None:
    """Start afresh in a folder that holds only a failed start (see :func:`only_failed_start`):
    its run folders (no completed generation in any of them) are removed when the config
    changed, so nothing of the old config survives. Called under the experiment's lock."""
    from genloop.config import read_yaml
    from genloop.errors import GenloopError

    try:
        old = read_yaml(out / "config.yaml", what="experiment config")
        same = isinstance(old, dict) and _comparable(old) == _comparable(doc)
    except GenloopError:
        same = False
    if same:
        log.info("%s holds a start of this config that completed no generation; starting it again", out)
        return
    log.warning("%s holds a start that completed no generation, of another config; replacing it with this one", out)
    for run in _run_folders(out):
        remove_inside(out, run)  # never through a link (a linked run folder is refused)
    for lam in out.glob("lam=*"):
        if lam.is_dir() and not lam.is_symlink() and not any(lam.iterdir()):
            lam.rmdir()


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A config without what may change on resume: generations, tracking, resources.

    The document is re-validated first, so a config stored by an older genloop (which did not
    write options added since, at their defaults) compares equal to the same config today. It
    is validated as a stored config: code it names is not imported (``genloop check`` reads it).
    """
    try:
        doc = parse_stored_config(doc).resolved()
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
    # every folder genloop made from the experiment down to the run is checked not to be a link
    with RunStore(spec.path, root=spec.path.parents[2 if spec.cell else 1]) as store:
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
                    keep_checkpoints=cfg.output.policy(),
                )
                if tracker is not None:
                    tracker.log_generation(record.generation, record.metrics)
                last_line = {"generation": record.generation, **record.metrics}
                store.drop_training(record.generation)
                if check_disk and record.generation == 0 and cfg.loop.generations > 0:
                    from genloop.sweep.preflight import check_disk_for_checkpoints

                    check_disk_for_checkpoints(store.generation_bytes(0), cfg.loop.generations, 1,
                                               cfg.output.policy(), spec.path)
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


def check_jobs(jobs: object) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a whole number >= 1, got {jobs!r}")


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None


def unfinished(tasks: list[Task], done: set[RunSpec]) -> str:
    """The labels of the runs not in ``done`` (for messages)."""
    return ", ".join(spec.label for _, spec in tasks if spec not in done)


def run_folder_problems(run: Path, root: Path | None = None) -> list[str]:
    """What a resume of ``run`` would refuse beyond its checksums: a link where genloop writes
    (the run folder, a folder between ``root`` and it, or an entry inside), a lock that is a
    folder, a run config that no longer matches the experiment's (read-only; nothing is
    followed, nothing named in a config is imported)."""
    from genloop.config import read_yaml
    from genloop.errors import GenloopError
    from genloop.store.links import is_link, link_text

    problems = []
    root = run.parent if root is None else root
    node = root
    for part in run.relative_to(root).parts if run != root else ():
        node = node / part
        if is_link(node):
            problems.append(f"{link_text(node, root)} is a symbolic link where genloop keeps a folder (resume refuses it)")
    if problems:
        return problems
    problems += [f"{link} is a symbolic link where genloop writes (resume refuses it)" for link in RunStore(run).scan().links]
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


def run_folder_notes(run: Path) -> list[str]:
    """Foreign entries of ``run``: names genloop does not write (left alone by every resume)."""
    return [f"{name} is not written by genloop (left alone)" for name in RunStore(run).scan().foreign]


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
    if not runs and (folder / CELLS_TABLE).exists():  # a grid: the runs of every cell cells.csv lists
        runs = [p.parent for cell in listed_cells(folder) for p in (folder / cell).glob("lam=*/seed=*/status.json")]

    def key(p: Path) -> tuple[str, float, int]:
        lam = p.parent.name.split("=", 1)[1]
        cell = p.parent.parent.name if p.parent.parent != folder else ""
        return (cell, math.inf if lam == "inf" else float(lam), int(p.name.split("=", 1)[1]))

    return sorted(runs, key=key)


__all__ = [
    "RunSpec", "Task", "ProgressFn", "run_folder_name", "plan_runs", "real_data", "check_experiment",
    "prepare_experiment", "experiment_lock", "execute_run", "check_jobs", "make_folder", "unfinished",
    "run_folder_problems", "run_folder_notes", "find_runs", "only_failed_start", "started_work",
]
