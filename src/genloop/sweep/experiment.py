"""Experiments with or without grids: planning, validation and execution of every cell.

A config without sweeps is one experiment folder (``OUT/lam=…/seed=…``), exactly as
:func:`run_experiment` writes it. A config with sweeps (see
:mod:`genloop.sweep.grid`) is an experiment folder whose cells are sub-folders, each itself an
experiment folder of one plain config::

    OUT/
      config.yaml        the grid as last run (with its sweep markers)
      cells.csv          one row per cell ever run here: folder, swept values, state
      name=gmm-3fa2c1d0/ a cell: config.yaml, lam=…/seed=… runs
      name=kde-91b0e2aa/

Rerunning a changed grid with ``--resume`` runs only the new cells and the unfinished work of
the old ones; cells no longer in the grid are reported, never deleted.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from genloop._fs import atomic_write_text
from genloop.config import RunConfig, parse_config, read_config_doc
from genloop.errors import ConfigError
from genloop.store.links import refuse_links_on_path, remove_inside
from genloop.sweep.cells import CELLS_TABLE, read_cells_table
from genloop.sweep.connect import check_ray_address, check_tracking
from genloop.sweep.grid import Cell, expand_grid
from genloop.sweep.executors import run_tasks
from genloop.sweep.runs import (
    check_experiment, check_jobs, experiment_lock, make_folder, only_failed_start, plan_runs, prepare_experiment,
)
from genloop.sweep.spec import ProgressFn, RunSpec, Task

log = logging.getLogger(__name__)


@dataclass
class CellPlan:
    """A validated cell: its swept values, config and folder name."""

    cell: Cell
    cfg: RunConfig

    @property
    def folder(self) -> str:
        return self.cell.folder


@dataclass
class Experiment:
    """A config as written (``doc``, sweeps included) and its validated cells."""

    doc: dict[str, Any]
    cells: list[CellPlan] = field(default_factory=list)

    @property
    def is_grid(self) -> bool:
        return bool(self.cells and self.cells[0].cell.values)

    @property
    def swept_keys(self) -> list[str]:
        return [key for key, _ in self.cells[0].cell.values] if self.cells else []

    @property
    def name(self) -> str | None:
        return self.cells[0].cfg.name if self.cells else None


def plan_experiment(doc: Any) -> Experiment:
    """Expand and validate every cell of ``doc``; a bad cell is an error naming it."""
    if not isinstance(doc, dict):
        raise ConfigError(f"the config must be a mapping with keys data, model, loop, metrics; got {type(doc).__name__}")
    cells = expand_grid(doc)
    plans = []
    for cell in cells:
        try:
            cfg = parse_config(cell.doc)
        except ConfigError as exc:
            if not cell.values:
                raise
            raise ConfigError(f"grid cell {cell.label}: {exc}") from None
        # the folder and hash follow the *resolved* config, so `n: 250` and `n: 250.0` agree
        plans.append(CellPlan(Cell(cell.values, cfg.resolved()), cfg))
    keys = [p.cell.key for p in plans]
    if len(set(keys)) != len(keys):
        raise ConfigError("two cells of the grid have the same resolved config; remove the duplicate sweep values")
    return Experiment(doc, plans)


def single_experiment(cfg: RunConfig) -> Experiment:
    """The experiment of one plain, validated config."""
    doc = cfg.resolved()
    return Experiment(doc, [CellPlan(Cell((), doc), cfg)])


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read a YAML config (sweeps allowed), apply ``--set`` overrides, validate every cell."""
    return plan_experiment(read_config_doc(path, overrides))


def run_grid(
    exp: Experiment,
    out: str | Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    threads_per_job: int | None = None,
    progress: ProgressFn | None = None,
    on_run_done: Callable[[RunSpec], None] | None = None,
    check_resources: bool = True,
    executor: str = "local",
    address: str | None = None,
) -> list[Task]:
    """Run every cell of ``exp`` under ``out`` (a plain experiment when there is no grid)."""
    from genloop.sweep.distributed import process_group, start_from_env, tell_followers

    out = Path(out)
    check_jobs(jobs)
    check_ray_address(address, executor)  # bounded probes: a server that is down never hangs
    group = start_from_env() or process_group()  # under torchrun: see genloop.sweep.distributed
    if group is not None and (jobs > 1 or executor != "local"):
        raise ConfigError("under torchrun each run uses every process: use --jobs 1 and the local executor")
    if not exp.is_grid:
        cfg = exp.cells[0].cfg
        check_experiment(cfg, out, jobs=jobs, check_resources=check_resources)
    for plan in exp.cells if exp.is_grid else ():  # everything is checked before the first folder is written
        try:
            check_experiment(plan.cfg, out / plan.folder, jobs=jobs, check_resources=check_resources)
        except ConfigError as exc:
            raise ConfigError(f"grid cell {plan.cell.label}: {exc}") from None
    for uri_cfg in {p.cfg.tracking.uri: p.cfg for p in exp.cells}.values():
        check_tracking(uri_cfg, out)
    if group is not None and not group.is_main:
        return _follow_grid(exp, out, progress=progress, on_run_done=on_run_done)
    with _executor_session(executor, address, exp):  # Ray is joined (and checked) before anything is written
        make_folder(out)
        with experiment_lock(out):
            try:
                if exp.is_grid:
                    tasks = prepare_grid(exp, out, resume=resume)
                else:
                    tasks = [(cfg, spec) for spec in prepare_experiment(cfg, out, resume=resume)]
            except BaseException as exc:
                tell_followers(False, message=str(exc))
                raise
            tell_followers(True)
            run_tasks(tasks, jobs=jobs, threads_per_job=threads_per_job, progress=progress, on_run_done=on_run_done,
                      check_disk=check_resources, executor=executor, address=address)
    return tasks


def _executor_session(executor: str, address: str | None, exp: Experiment) -> Any:
    if executor != "ray":
        return contextlib.nullcontext()
    from genloop.sweep.executors.ray import ray_session

    return ray_session(address, [(p.cfg.resources.num_cpus, p.cfg.resources.num_gpus) for p in exp.cells])


def run_experiment(cfg: RunConfig, out: str | Path, **options: Any) -> list[RunSpec]:
    """Run every λ × seed of ``cfg`` under ``out``; return the run specs.

    Everything is validated first (:func:`~genloop.sweep.runs.check_experiment`); then the experiment folder is
    locked for the whole experiment (one writer per folder: a second is refused naming the
    first), and only then is anything written. ``options`` are those of
    :func:`genloop.sweep.experiment.run_grid` (``resume``, ``jobs``, ``threads_per_job``,
    ``progress``, ``on_run_done``, ``check_resources``, ``executor``, ``address``); runs
    execute as :func:`genloop.sweep.executors.run_tasks` says.
    """
    return [spec for _, spec in run_grid(single_experiment(cfg), out, **options)]


def _follow_grid(exp: Experiment, out: Path, *, progress: ProgressFn | None,
                 on_run_done: Callable[[RunSpec], None] | None) -> list[Task]:
    """Ranks > 0 under torchrun: wait until rank 0 has prepared the folder, then run every run
    alongside it (the runs rank 0 planned, in its order), writing nothing."""
    from genloop.models.neural.distributed import broadcast_status

    ok, _, message = broadcast_status(False)
    if not ok:
        raise ConfigError(message or "rank 0 could not prepare the experiment folder")
    if exp.is_grid:
        tasks = [(plan.cfg, RunSpec(s.lam, s.seed, s.path, plan.cell.label))
                 for plan in exp.cells for s in plan_runs(plan.cfg, out / plan.folder)]
    else:
        tasks = [(exp.cells[0].cfg, spec) for spec in plan_runs(exp.cells[0].cfg, out)]
    run_tasks(tasks, progress=progress, on_run_done=on_run_done, check_disk=False)
    return tasks


def prepare_grid(exp: Experiment, out: Path, *, resume: bool) -> list[Task]:
    """Create or extend the grid's folders (under its lock); return every run to execute."""
    top = out / "config.yaml"
    failed_start = only_failed_start(out)  # no work anywhere: not an experiment, start afresh
    if failed_start:
        log.info("%s holds a start that completed no generation; starting the grid afresh", out)
        _clear_failed_start(out, {p.folder for p in exp.cells})
    elif top.exists() and not resume:
        raise ConfigError(f"output folder {out} already holds an experiment; pass --resume to continue it or choose another --out")
    elif top.exists() and not (out / CELLS_TABLE).exists():
        raise ConfigError(f"output folder {out} holds an experiment without a grid; run the grid in another --out")
    old_rows = read_cells_table(out)
    current = {p.folder for p in exp.cells}
    removed = [r for r in old_rows if r["cell"] not in current]
    for row in removed:
        log.warning("cell %s (%s) is no longer in the grid; its folder is kept", row["cell"], row.get("label", ""))
    listed = {r["cell"] for r in old_rows} | current
    for stray in sorted(p.name for p in out.iterdir() if p.is_dir() and p.name not in listed and any(p.glob("lam=*"))):
        log.warning("folder %s is not a cell of %s (renamed or copied?); it is left alone and not part of the results",
                    stray, CELLS_TABLE)
    tasks: list[Task] = []
    for plan in exp.cells:  # a cell folder that is a link is refused before anything is written
        refuse_links_on_path(out, out / plan.folder, what="grid cell")
    for plan in exp.cells:
        folder = out / plan.folder
        specs = prepare_experiment(plan.cfg, folder, resume=True)
        tasks += [(plan.cfg, RunSpec(s.lam, s.seed, s.path, plan.cell.label)) for s in specs]
    atomic_write_text(top, yaml.safe_dump(exp.doc, sort_keys=False))
    write_cells_table(out, exp, removed)
    return tasks


def _clear_failed_start(out: Path, keep: set[str]) -> None:
    """Remove what a failed start left (it completed no generation anywhere): the run folders of
    a plain experiment, the cells no longer in the grid, the grid's tables. The cells still in
    the grid are taken over by :func:`prepare_experiment`."""
    cells = [r["cell"] for r in read_cells_table(out)]
    plain = [c for c in cells if c not in keep and c not in ("", ".", "..") and "/" not in c and "\\" not in c]
    for path in [*out.glob("lam=*"), *(out / c for c in plain if _holds_only_a_cell(out / c))]:
        if path.is_dir() or path.is_symlink():
            remove_inside(out, path)  # never through a link (a link itself is refused)
    for name in (CELLS_TABLE, "config.yaml"):
        remove_inside(out, out / name)


def _holds_only_a_cell(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but what genloop writes in a cell (its ``config.yaml``,
    its lock and ``lam=*`` run folders): a folder ``cells.csv`` names but that holds anything
    else is left alone."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(e.name in ("config.yaml", ".experiment.lock") or e.name.startswith("lam=") for e in folder.iterdir())


def write_cells_table(out: Path, exp: Experiment, removed: list[dict[str, str]]) -> None:
    keys = exp.swept_keys
    extra = sorted({k for row in removed for k in row} - {"cell", "label", "in_grid", *keys})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["cell", "label", "in_grid", *keys, *extra], extrasaction="ignore")
    writer.writeheader()
    for plan in exp.cells:
        values = {k: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
                  for k, v in plan.cell.values}
        writer.writerow({"cell": plan.folder, "label": plan.cell.label, "in_grid": "yes", **values})
    for row in removed:
        writer.writerow({**row, "in_grid": "no (kept on disk)"})
    atomic_write_text(Path(out) / CELLS_TABLE, buf.getvalue())


def grid_cells(folder: str | Path) -> list[Path]:
    """The cell folders of a grid experiment (empty for a plain experiment or a run)."""
    folder = Path(folder)
    rows = read_cells_table(folder)
    return [folder / r["cell"] for r in rows if (folder / r["cell"]).is_dir()]
