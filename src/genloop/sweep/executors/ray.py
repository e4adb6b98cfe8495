"""The Ray executor: every run is a Ray Core task (``genloop run CONFIG --executor ray``).

Ray does the scheduling, the placement on a cluster's nodes and the retries; genloop only
submits one task per (cell, λ, seed) run, asking for the run's ``resources`` (``num_cpus``,
``num_gpus``). A task whose worker process dies (killed, out of memory, a lost node) is
retried by Ray (up to ``MAX_RETRIES`` times) and, like any resume, continues from the run's last
completed and verified generation: the run folder is the only state, so no generation is lost
or done twice.

On a cluster, the output folder must be on a file system every node mounts at the same path
(NFS, Lustre, a cloud file store) and genloop must be installed on every node; ``--address``
connects to the running cluster (``ray start --head`` on one node, ``ray start
--address=HEAD:6379`` on the others). Without ``--address`` a local Ray instance is started
for this command and shut down at its end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from genloop.errors import ConfigError, GenloopError, RunFailedError

if TYPE_CHECKING:
    from genloop.sweep.spec import RunSpec, Task

log = logging.getLogger(__name__)

#: How often Ray re-runs a task whose worker died (each retry resumes the run).
MAX_RETRIES = 3


def _execute(doc: dict[str, Any], spec: RunSpec, check_disk: bool) -> dict[str, Any]:
    """The body of a Ray task: run (or resume) one run in the worker process."""
    from genloop.config import parse_config
    from genloop.sweep.runs import execute_run

    return execute_run(parse_config(doc), spec, check_disk=check_disk)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'genloop[ray]' (or pip install ray)") from None
    return ray


@contextmanager
def ray_session(address: str | None, requests: list[tuple[float, float]]) -> Iterator[None]:
    """Start or join Ray for one experiment, before its folder is written, and shut down at the
    end what was started here.

    ``requests`` are the runs' ``(num_cpus, num_gpus)``; a run asking for more CPUs or GPUs
    than the whole cluster has would wait for ever, so it is refused here (a
    :class:`ConfigError`) instead.
    """
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address)
    try:
        total = ray.cluster_resources()
        for cpus, gpus in requests:
            for name, need in (("CPU", cpus), ("GPU", gpus)):
                if need > total.get(name, 0.0):
                    raise ConfigError(
                        f"a run asks for resources.num_{name.lower()}s={need:g} but the Ray cluster has "
                        f"{total.get(name, 0.0):g} {name}s in all: it would never start; lower it or add nodes"
                    )
        yield
    finally:
        if started_here:
            ray.shutdown()


def _init(ray: Any, address: str | None) -> None:
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        kwargs["address"] = address
    else:  # a local instance sized to this machine, with a modest object store (runs pass no data)
        kwargs.update(num_cpus=os.cpu_count() or 1, object_store_memory=128 * 2**20)
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {first}") from None


def run_on_ray(tasks: list[Task], *, address: str | None = None,
               on_run_done: Callable[[RunSpec], None] | None = None, check_disk: bool = True) -> None:
    """Submit every run as a Ray task and wait for all of them (see the module docs)."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address)
    remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_execute)
    pending: dict[Any, RunSpec] = {}
    try:
        for cfg, spec in tasks:
            ref = remote.options(num_cpus=cfg.resources.num_cpus, num_gpus=cfg.resources.num_gpus).remote(
                cfg.resolved(), spec, check_disk)
            pending[ref] = spec
        done: set[RunSpec] = set()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, GenloopError):
                        raise cause from None
                    raise
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError, ray.exceptions.LocalRayletDiedError) as exc:
                    left = ", ".join(s.label for s in [spec, *pending.values()])
                    raise RunFailedError(
                        f"Ray gave up on {spec.label} after {MAX_RETRIES} retries ({type(exc).__name__}); "
                        f"unfinished runs: {left}; finished generations are saved: rerun with --resume"
                    ) from None
                done.add(spec)
                if on_run_done is not None:
                    on_run_done(spec)
    except BaseException:
        for ref in pending:  # stop what still runs; each run keeps its finished generations
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
