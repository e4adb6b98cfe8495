"""Deprecated: ``genloop.sweep.local`` was split into :mod:`genloop.sweep.runs` (the single run,
the experiment folder), :mod:`genloop.sweep.executors.local` (local processes),
:mod:`genloop.sweep.spec` (task types) and :mod:`genloop.sweep.experiment` (``run_experiment``).
This module re-exports their names for old imports and will be removed."""

from __future__ import annotations

import warnings

from genloop.config import real_data
from genloop.sweep.executors import run_tasks
from genloop.sweep.experiment import run_experiment
from genloop.sweep.runs import (
    check_experiment,
    check_jobs,
    execute_run,
    experiment_lock,
    find_runs,
    make_folder,
    plan_runs,
    prepare_experiment,
    run_folder_problems,
    unfinished,
)
from genloop.sweep.spec import ProgressFn, RunSpec, Task, run_folder_name

warnings.warn("genloop.sweep.local is deprecated: import from genloop.sweep (or genloop.sweep.runs, "
              "genloop.sweep.executors)", DeprecationWarning, stacklevel=2)

__all__ = [
    "ProgressFn", "RunSpec", "Task", "check_experiment", "check_jobs", "execute_run", "experiment_lock", "find_runs",
    "make_folder", "plan_runs", "prepare_experiment", "real_data", "run_experiment", "run_folder_name",
    "run_folder_problems", "run_tasks", "unfinished",
]
