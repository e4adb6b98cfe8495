"""Experiments over λ × seeds (and grids of them): planning, the single run, executors.

Layout, top to bottom: :mod:`.experiment` plans an experiment (its grid cells, validation of
everything before a write, the folder lock) and hands its tasks to an executor
(:mod:`.executors`: ``local`` processes or ``ray``); executors call the single run function
:func:`.runs.execute_run`; :mod:`.spec` holds the task types; :mod:`.grid` expands sweeps,
:mod:`.preflight` estimates resources, :mod:`.tracking` logs to MLflow, :mod:`.progress`
draws progress.
"""

from genloop.sweep.experiment import run_experiment
from genloop.sweep.runs import RunSpec, execute_run, find_runs, plan_runs, prepare_experiment, real_data

__all__ = ["RunSpec", "execute_run", "find_runs", "plan_runs", "prepare_experiment", "real_data", "run_experiment"]
