"""Experiments over λ × seeds: planning, local (multi-process) execution, run discovery."""

from genloop.sweep.local import RunSpec, execute_run, find_runs, plan_runs, prepare_experiment, real_data, run_experiment

__all__ = ["RunSpec", "execute_run", "find_runs", "plan_runs", "prepare_experiment", "real_data", "run_experiment"]
