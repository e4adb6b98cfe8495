"""The local executor: runs one after the other in this process, or in ``jobs`` spawned processes.

Each worker process dies with its parent, takes a GPU of its own on a machine with several,
shares the cores (``threads_per_job``) and, on SIGTERM, marks its run stopped with its finished
generations kept. A worker that dies is a :class:`~genloop.errors.RunFailedError` naming the
runs to resume.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from genloop.config import parse_config
from genloop.errors import RunFailedError
from genloop.sweep.runs import execute_run, unfinished
from genloop.sweep.spec import ProgressFn, RunSpec, Task


def run_local(tasks: list[Task], *, jobs: int = 1, threads_per_job: int | None = None,
              progress: ProgressFn | None = None, on_run_done: Callable[[RunSpec], None] | None = None,
              check_disk: bool = True) -> None:
    """Execute ``tasks`` here (``jobs`` 1, or a single task) or in ``jobs`` spawned processes.

    Each process is limited to ``threads_per_job`` BLAS / OpenMP / torch threads (default: the
    cores divided among the jobs; 0: no limit). ``progress`` (per generation) is called only
    when runs execute in this process; ``on_run_done`` per finished run.
    """
    if jobs <= 1 or len(tasks) == 1:
        for cfg, spec in tasks:
            execute_run(cfg, spec, progress=progress, check_disk=check_disk)
            if on_run_done is not None:
                on_run_done(spec)
        return
    _run_in_processes(tasks, jobs=jobs, threads_per_job=threads_per_job, on_run_done=on_run_done,
                      check_disk=check_disk)


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




__all__ = ["run_local"]
