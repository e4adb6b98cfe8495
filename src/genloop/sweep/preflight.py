"""Checks made before an experiment writes anything: the output folder, every component of the
config, and the memory and disk the experiment will need.

Everything here reads; nothing creates a file or folder. A problem is a
:class:`~genloop.errors.ConfigError` (or ``DataError``) naming it, so the CLI exits with code 2
before the experiment folder exists and a corrected rerun needs no ``--resume``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genloop._text import human_size as _size
from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.config import RunConfig
    from genloop.data.base import DataSource

log = logging.getLogger(__name__)

#: Bytes per stored number: the loop holds vectors as float64; images are kept as float32.
_FLOAT64 = 8


def check_output_folder(out: Path) -> None:
    """``out`` is, or can become, a writable folder (not a file, not below a file)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose a folder path")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {out} is below {probe}, which is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder {probe} is not writable (read-only or no permission)")


def event_shape_of(source: DataSource, name: str) -> tuple[tuple[int, ...], int | None]:
    """The shape of one sample of ``source`` and the data set's size (None: infinite)."""
    probe = probe_data(source)
    return probe.event_shape, probe.rows


@dataclass(frozen=True)
class DataProbe:
    """What the preflight knows of a data source: one sample's shape, the data set's size
    (None: infinite) and whether the samples are token codes (integers)."""

    event_shape: tuple[int, ...]
    rows: int | None
    tokens: bool


def probe_data(source: DataSource) -> DataProbe:
    """Look at ``source`` once (one drawn sample, or the fixed set) without writing anything."""
    if source.infinite:
        one = np.asarray(source.sample(1, rng=np.random.default_rng(0)))
        rows = None
    else:
        one = np.asarray(source.load())
        rows = int(one.shape[0])
    tokens = bool(getattr(source, "discrete", False)) or bool(np.issubdtype(one.dtype, np.integer))
    return DataProbe(tuple(int(s) for s in one.shape[1:]), rows, tokens)


@dataclass(frozen=True)
class Resources:
    """What an experiment needs, estimated from its config (see :func:`estimate_resources`)."""

    memory_bytes: int
    disk_bytes: int
    runs: int
    parallel: int

    def describe(self) -> str:
        return (f"about {_size(self.memory_bytes)} of memory ({self.parallel} run(s) at once) and "
                f"{_size(self.disk_bytes)} of disk for {self.runs} run(s)")


def estimate_resources(cfg: RunConfig, event_shape: tuple[int, ...], dataset_rows: int | None, *,
                       jobs: int, n_heldout: int) -> Resources:
    """Memory and disk an experiment needs, from its config alone.

    Memory counts the arrays one run holds at once, at float64: the real training and held-out
    sets, the largest training mix and the synthetic pool (which grows every generation under
    ``accumulate``), twice the evaluation samples, a curated variant's candidates, and a copy of
    each for the concatenations,
    times the runs executed at once, plus a finite data set loaded whole. The model's own
    memory (a network, a KDE's copy of its data) is not included, so this is a lower bound.
    Disk counts what every generation keeps (evaluation samples, the synthetic pool of the
    accumulate schemes, a metrics line, an image grid); checkpoints are checked once their
    size is known, after generation 0 (see :func:`check_disk_for_checkpoints`).
    """
    from genloop.loop.schemes import synthetic_count

    d = int(np.prod(event_shape)) if event_shape else 1
    n, G = cfg.data.n, cfg.loop.generations
    m = max(synthetic_count(lam, n) for lam in cfg.loop.lambdas)
    scheme = cfg.loop.scheme
    pool_rows = G * m if scheme in ("accumulate", "accumulate-subsample") else 0
    train_rows = n + (pool_rows if scheme == "accumulate" else m)
    n_eval = cfg.loop.n_eval or max(n_heldout, n if cfg.loop.eval_against == "train" else 0)
    variant = getattr(cfg.loop, "variant", None)
    candidates = 0  # curated retraining draws its candidates before keeping ⌊λn⌋ of them
    if getattr(variant, "kind", "") == "curated":
        per_kept = variant.K if variant.select == "softmax" else 1 / variant.fraction
        candidates = int(math.ceil(m * per_kept))
    rows = n + n_heldout + 2 * train_rows + pool_rows + 2 * n_eval + candidates
    runs = len(cfg.loop.lambdas) * len(cfg.loop.seeds)
    parallel = max(1, min(jobs, runs))
    memory = _FLOAT64 * d * rows * parallel + (_FLOAT64 * d * dataset_rows if dataset_rows else 0)
    images = len(event_shape) == 3
    per_gen = 400 + min(cfg.output.keep_samples, n_eval) * d * (4 if images else _FLOAT64)
    if images:
        per_gen += 64 * d  # the PNG grid, roughly one byte per pixel and channel
    disk = runs * ((G + 1) * per_gen + _FLOAT64 * d * pool_rows)
    return Resources(memory_bytes=int(memory), disk_bytes=int(disk), runs=runs, parallel=parallel)


def available_memory() -> int | None:
    """Memory available to new allocations (``MemAvailable`` on Linux), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(out: Path) -> int:
    """Free bytes on the file system that holds (or will hold) ``out``."""
    probe = Path(out)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


def check_resources(res: Resources, out: Path) -> None:
    """Refuse, with the estimate, an experiment that cannot fit this machine."""
    mem = available_memory()
    hint = "lower data.n, loop.n_eval, loop.generations or --jobs, or pass --skip-resource-check (e.g. on a cluster node)"
    if mem is not None and res.memory_bytes > mem:
        raise ConfigError(f"this experiment needs {res.describe()}; only {_size(mem)} of memory is available: {hint}")
    disk = free_disk(out)
    if res.disk_bytes > disk:
        raise ConfigError(f"this experiment needs {res.describe()}; only {_size(disk)} is free at {out}: {hint}")
    log.debug("resources: %s", res.describe())


def check_disk_for_checkpoints(checkpoint_bytes: int, generations_left: int, runs_left: int, keep: str | dict,
                               out: Path) -> None:
    """After generation 0 of the first run: refuse when the remaining checkpoints cannot fit
    (``keep``: ``output.checkpoints`` as :func:`genloop.store.run.checkpoints_kept` counts it)."""
    from genloop.store.run import checkpoints_kept

    count = checkpoints_kept(keep, generations_left) * max(1, runs_left)
    need = checkpoint_bytes * count
    disk = free_disk(out)
    if need > disk:
        raise ConfigError(
            f"the remaining checkpoints need about {_size(need)} ({_size(checkpoint_bytes)} each); only "
            f"{_size(disk)} is free at {out}: set output.checkpoints: last (or every: k), fewer generations, or free space "
            "(finished generations are kept; continue with --resume)"
        )


def learning_rate_warnings(cfg: RunConfig) -> list[str]:
    """One line per training of ``cfg`` whose learning rate never exceeds
    :data:`~genloop.models.neural.trainer.LR_WARN_FRACTION` of ``train.lr``.

    The trainer's rate is lr_k = lr · min(s_k / warmup_samples, 1) and restarts at every
    training (EDM's ``lr_rampup_kimg``, counted from the start of each training), so a
    fine-tune budget far below the warm-up (EDM's 10 M images against 0.05 M) runs at a tiny
    fraction of ``lr`` and learns almost nothing: λ = 0.5 and λ = ∞ then give the same run.
    Only families configured with ``train`` options are looked at (the others' defaults reach
    their ``lr``, and a config without them needs no import of torch to be shown). The size of
    a training set is taken as ``data.n`` (it matters only for budgets given in epochs).
    """
    if "train" not in cfg.model.options:
        return []
    from genloop.models import make_model
    from genloop.models.neural.trainer import LR_WARN_FRACTION, peak_lr_fraction

    model = make_model(cfg.model.name, **cfg.model.options)
    configs = getattr(model, "training_configs", None)
    if configs is None:
        return []
    lines = []
    for kind, train in configs(finetune=cfg.loop.retrain == "finetune").items():
        if kind == "scratch" and not cfg.loop.train_generation_0 and cfg.loop.retrain == "finetune" and cfg.loop.generations:
            continue  # generation 0 is the init checkpoint, and every later one fine-tunes
        peak = peak_lr_fraction(train, cfg.data.n)
        if peak < LR_WARN_FRACTION:
            which = "fine-tune generations (t >= 1)" if kind == "fine-tune" else "trainings from scratch"
            knob = "train.finetune_warmup_samples" if kind == "fine-tune" else "train.warmup_samples"
            lines.append(
                f"warning: {which} never exceed {100 * peak:.2g}% of train.lr={train.lr:g} (a warm-up of "
                f"{train.warmup_samples:,} samples, a budget of {train.total_samples(cfg.data.n):,}): they learn almost "
                f"nothing; lower {knob}"
            )
    return lines


#: bytes per parameter a training step holds at least: fp32 weights, gradients, Adam's two
#: moments and the EMA copy (activations come on top)
TRAIN_BYTES_PER_PARAMETER = 20


def world_size_from_env(environ: dict[str, str] | None = None) -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 without it)."""
    env = os.environ if environ is None else environ
    raw = env.get("WORLD_SIZE", "1")
    try:
        size = int(raw)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={raw!r} in the environment is not a number of processes") from None
    return max(size, 1)


def check_gpu_run(model: object, event_shape: tuple[int, ...], *, world_size: int = 1,
                  device_memory: int | None = None) -> None:
    """Refuse, before anything is written, a neural run the GPUs cannot do.

    * ``train.batch_size`` not divisible by the number of processes (DDP splits each global
      batch evenly over the ranks);
    * a ``train.device`` that does not exist here (``cuda`` without CUDA, ``cuda:7`` on a
      machine with fewer GPUs);
    * on CUDA, a network whose weights, gradients, Adam moments and EMA alone
      (:data:`TRAIN_BYTES_PER_PARAMETER` bytes per parameter, a lower bound: activations come
      on top) exceed the device's memory. ``device_memory`` overrides the device's total
      (bytes), for tests.

    Models without a ``train`` option group (non-neural families) pass.
    """
    cfg = getattr(model, "train", None)
    if cfg is None or not hasattr(cfg, "batch_size"):
        return
    from genloop.models.neural.trainer import TrainConfig, resolve_device

    if not isinstance(cfg, TrainConfig):
        return
    if world_size > 1 and cfg.batch_size % world_size:
        raise ConfigError(f"model.train.batch_size {cfg.batch_size} is not divisible by the {world_size} processes "
                          "(each rank trains batch_size / processes rows of every batch); choose a multiple of "
                          f"{world_size}")
    device = resolve_device(cfg.device)
    if device.type != "cuda" and device_memory is None:
        return
    import torch

    build = getattr(model, "build_net", None)
    if build is None:
        return
    with torch.device("meta"):
        net = build(tuple(event_shape), None)
    params = sum(p.numel() for p in net.parameters())
    need = params * TRAIN_BYTES_PER_PARAMETER
    if device_memory is None:
        index = device.index if device.index is not None else torch.cuda.current_device()
        device_memory = int(torch.cuda.get_device_properties(index).total_memory)
    if need > device_memory:
        raise ConfigError(
            f"the network has {params / 1e6:.1f} M parameters: training holds at least {_size(need)} on the GPU "
            f"(weights, gradients, Adam and EMA), more than the device's {_size(device_memory)}; "
            "choose a smaller network"
        )
