"""``genloop run`` under ``torchrun``: one experiment, several processes (DDP).

``torchrun --nproc_per_node N -m genloop.cli run CONFIG --out DIR`` starts N copies of the
command. :func:`start_from_env` joins them into one process group (gloo on CPUs, NCCL on
GPUs, each rank on GPU ``LOCAL_RANK``); then, run after run, in the same order on every rank:

* **rank 0 alone writes**: it takes the experiment's and the run's locks, checks and rolls
  back the folder, writes the config, every generation's files, metrics and status, exactly
  as a single process does; it then tells the other ranks (:func:`tell_followers`) whether
  the run goes ahead and after which generation it resumes;
* **every rank trains its slice** of each global batch (the trainer's DDP step, so
  ``train.batch_size`` must be divisible by N — checked before anything is written) and
  **samples its share** of every synthetic and evaluation draw; the shares are gathered, so
  each rank holds the whole set and builds the same next training set;
* **metrics are computed once**, on rank 0 (:func:`genloop.loop.engine.is_main_process`).

The other ranks (:func:`genloop.sweep.runs.follow_run`) read a resumed run's state from the folder once rank 0
has recovered it and never write into it, except the per-rank random streams of the
in-generation training checkpoints (``training/gen_XXXX/step-*.rank<r>.safetensors``), which
an exact resume of a DDP fit needs. A killed rank makes ``torchrun`` stop the others; every
generation rank 0 completed stays in the folder, and the same command with ``--resume``
continues it (also with another number of processes: only the batch split changes).

With one process (plain ``genloop run``) nothing here does anything.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.models.neural.distributed import World

log = logging.getLogger(__name__)


def start_from_env() -> World | None:
    """Join ``torchrun``'s process group when ``WORLD_SIZE`` > 1 (else None, nothing imported)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} in the environment is not a number") from None
    if size <= 1:
        return None
    from genloop.models.neural.distributed import init_from_env

    return init_from_env()


def process_group() -> World | None:
    """This process's place in a process group of several ranks, or None (single process)."""
    if "torch.distributed" not in sys.modules:
        return None
    from genloop.models.neural.distributed import world

    w = world()
    return w if w.distributed else None


def tell_followers(ok: bool, last: int = -1, message: str = "") -> None:
    """On rank 0: tell the other ranks whether the run goes ahead (``ok``) and the generation
    it resumes after (``last``; -1 for a fresh run), or the error that stopped it."""
    if process_group() is None:
        return
    from genloop.models.neural.distributed import broadcast_status

    broadcast_status(ok, last, message)


__all__ = ["start_from_env", "process_group", "tell_followers"]
