"""Executors: how the runs of an experiment are carried out, behind one interface.

The planner (:mod:`genloop.sweep.experiment`) hands :func:`run_tasks` its list of
(config, run) tasks; an executor runs each through the single run function
:func:`genloop.sweep.runs.execute_run`. ``local`` runs them here or in local processes
(:mod:`.local`), ``ray`` as Ray Core tasks (:mod:`.ray`). genloop schedules nothing itself
beyond a process pool: clusters are Ray's job.
"""

from __future__ import annotations

from collections.abc import Callable

from genloop.errors import ConfigError
from genloop.sweep.spec import ProgressFn, RunSpec, Task

#: the executors ``genloop run --executor`` accepts
EXECUTORS: tuple[str, ...] = ("local", "ray")


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
    ``ray`` submits each run as a Ray Core task (see :mod:`genloop.sweep.executors.ray`).
    ``progress`` (per generation) is called only when runs execute in this process;
    ``on_run_done`` is called per finished run in every mode. A worker that dies is a
    :class:`~genloop.errors.RunFailedError` naming the runs to resume.
    """
    if executor == "ray":
        from genloop.sweep.executors.ray import run_on_ray

        run_on_ray(tasks, address=address, on_run_done=on_run_done, check_disk=check_disk)
        return
    if executor != "local":
        raise ConfigError(f"unknown executor {executor!r}; known executors: {', '.join(EXECUTORS)}")
    from genloop.sweep.executors.local import run_local

    run_local(tasks, jobs=jobs, threads_per_job=threads_per_job, progress=progress, on_run_done=on_run_done,
              check_disk=check_disk)


__all__ = ["EXECUTORS", "run_tasks"]
