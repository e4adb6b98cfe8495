"""Data-parallel training across processes (PyTorch DDP, launched by ``torchrun``).

When ``torch.distributed`` is initialised with more than one process, the shared training loop
(:func:`~genloop.models.neural.trainer.train`) runs as PyTorch's DistributedDataParallel:

* every rank holds the same training set and draws the *same* minibatch order from the same
  generator (all ranks fit with the same ``rng``), and takes its slice of each global batch:
  rank ``r`` of ``W`` uses rows ``r·B/W … (r+1)·B/W`` of the global batch of ``B`` rows, so the
  global batch is the single-process one (``B`` must be divisible by ``W``);
* the objective's own noise (and dropout) comes from per-rank streams derived from the shared
  one, so ranks do not repeat each other's noise;
* DDP averages the gradients, so one step equals the single-process step on the global batch
  when the objective draws no noise (the CPU test ``tests/test_ddp.py`` checks this with the
  ``gloo`` backend) and has the same distribution when it does;
* sampling is sharded: each rank draws a contiguous share of the sampling batches, batch ``b``
  from a stream seeded by ``(seed, b)``, and the shares are gathered on every rank
  (:func:`gather_rows`): the samples are those a single process draws with the same network.

Without ``torch.distributed`` (or with one process) every function here is the identity and
the loop is today's single-process loop. :func:`init_from_env` starts the process group from
``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the process group: ``rank`` of ``size`` (``local_rank`` on its host)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains together."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and computes metrics."""
        return self.rank == 0


def world() -> World:
    """The current :class:`World` (rank 0 of 1 when ``torch.distributed`` is not initialised)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_from_env(backend: str | None = None) -> World:
    """Initialise the process group from ``torchrun``'s variables (no-op without them).

    The backend defaults to ``nccl`` when CUDA is available (and selects the GPU
    ``LOCAL_RANK``), else ``gloo``. Returns the resulting :class:`World`.
    """
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return World()
    if dist.is_initialized():
        return world()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    # Tear the group down at exit: a gloo group still alive when the interpreter finalises can
    # abort the process ("terminate called without an active exception", exit -6).
    import atexit

    atexit.register(_destroy_process_group)
    w = world()
    log.info("distributed training: rank %d of %d (%s)", w.rank, w.size, backend)
    return w


def _destroy_process_group() -> None:
    """Leave the process group at interpreter exit.

    After a clean run every rank first meets the others: a rank that tears its gloo pairs down
    while a peer is still finishing can make that peer abort at exit (``terminate called without
    an active exception``, exit -6). After an uncaught exception (``sys.last_value`` is set) no
    rank is waited for, since the peers may be stuck in another collective.
    """
    import sys

    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if getattr(sys, "last_value", None) is None:
        dist.barrier()
    dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world().distributed:
        import torch.distributed as dist

        dist.barrier()


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``t`` over ranks (``t`` itself in a single process)."""
    w = world()
    if not w.distributed:
        return t
    import torch.distributed as dist

    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / w.size


def broadcast_status(ok: bool, value: int = 0, message: str = "") -> tuple[bool, int, str]:
    """Rank 0's ``(ok, value, message)`` on every rank (the arguments of the other ranks are
    ignored); the identity in a single process.

    How rank 0 tells the others whether what only it does (take the lock, write the folder)
    succeeded, and e.g. the generation to resume after. Sent as integer tensors: nothing is
    pickled. ``message`` is cut to 4000 UTF-8 bytes.
    """
    w = world()
    if not w.distributed:
        return ok, value, message
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    raw = message.encode("utf-8")[:4000]
    buf = torch.zeros(4003, dtype=torch.int64, device=device)
    buf[0], buf[1], buf[2] = int(bool(ok)), int(value), len(raw)
    if raw:
        buf[3 : 3 + len(raw)] = torch.tensor(list(raw), dtype=torch.int64, device=device)
    dist.broadcast(buf, src=0)
    out = buf.cpu()
    length = int(out[2])
    text = bytes(int(c) for c in out[3 : 3 + length].tolist()).decode("utf-8", errors="replace")
    return bool(out[0]), int(out[1]), text


def shard_sizes(n: int, size: int) -> list[int]:
    """Split ``n`` rows over ``size`` ranks as evenly as possible (earlier ranks get the extra)."""
    base, extra = divmod(int(n), int(size))
    return [base + (1 if r < extra else 0) for r in range(size)]


def gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's ``local`` rows (rank order); ``sizes[r]`` rows on rank ``r``."""
    w = world()
    if not w.distributed:
        return local
    import torch.distributed as dist

    width = max(sizes)
    padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)




def gpu_for_job(job_index: int, n_gpus: int | None = None) -> int | None:
    """The GPU a parallel job should use: job ``i`` of ``--jobs N`` gets GPU ``i mod n_gpus``
    (``None`` without GPUs). ``n_gpus`` defaults to the GPUs this process sees."""
    if n_gpus is None:
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus <= 0:
        return None
    return int(job_index) % int(n_gpus)


def pin_job_to_gpu(job_index: int, n_gpus: int | None = None, environ: dict[str, str] | None = None) -> int | None:
    """In a worker process, before CUDA starts: restrict it to its GPU (:func:`gpu_for_job`) by
    setting ``CUDA_VISIBLE_DEVICES``, so ``cuda`` / ``auto`` in the job means that GPU. A list
    already in ``CUDA_VISIBLE_DEVICES`` is respected (the job takes its entry of that list).
    Returns the chosen physical GPU, or ``None`` (nothing changed) without GPUs."""
    env = os.environ if environ is None else environ
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    count = len(visible) if visible else n_gpus
    gpu = gpu_for_job(job_index, count)
    if gpu is None:
        return None
    chosen = visible[gpu] if visible else str(gpu)
    env["CUDA_VISIBLE_DEVICES"] = chosen
    return int(chosen) if chosen.isdigit() else gpu


__all__ = ["World", "world", "init_from_env", "barrier", "broadcast_status", "mean_over_ranks", "shard_sizes",
           "gather_rows",
           "gpu_for_job", "pin_job_to_gpu"]
