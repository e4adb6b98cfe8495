"""One training loop shared by every neural family (as EDM's ``training_loop.py``).

The loop knows nothing about the objective: a family passes ``loss_fn(net, x_batch,
generator) -> per-example losses (B,)`` and the loop minimises their mean with Adam. What it
owns is the schedule of the official image recipes:

* the budget counted in **samples seen** (EDM's ``kimg``; the paper's fine-tuning uses
  0.05 M images per generation) or in epochs of the training set;
* a linear learning-rate warm-up from 0 over ``warmup_samples`` (EDM's ``lr_rampup_kimg``):
  ``lr_k = lr · min(s_k / warmup_samples, 1)`` with ``s_k`` the samples seen after step ``k``;
* gradient clipping by global norm (OT-CFM: 1.0);
* an exponential moving average of the weights with a half-life in samples (EDM's
  ``ema_halflife_kimg``): decay per step ``β = 0.5 ** (batch_size / halflife)``, the half-life
  optionally capped at ``ema_rampup_ratio`` × samples seen before the step (EDM's
  ``ema_rampup_ratio``, 0.05 in its recipes). A per-step decay ``β`` (OT-CFM's 0.9999)
  converts with :func:`halflife_from_decay`;
* mixed precision (bfloat16 autocast) on CUDA only.

Minibatches are drawn with the caller's ``torch.Generator`` (a fresh permutation per epoch),
so on CPU the result is a deterministic function of the generator's seed.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import pydantic
import torch
from torch import nn

from genloop.errors import ConfigError, DataError
from genloop.models.neural.distributed import barrier, mean_over_ranks, world
from genloop.models.neural.train_checkpoint import (
    TrainCheckpointing,
    check_fingerprint,
    data_digest,
    load_latest,
    load_rank_streams,
    module_signature,
    optimizer_from_parts,
    optimizer_to_parts,
    save_rank_streams,
    save_train_checkpoint,
    sub_state,
    tensor_state,
)

log = logging.getLogger(__name__)

#: Budget used when neither ``samples`` nor ``epochs`` is given.
DEFAULT_SAMPLES = 200_000

CarryItem = Literal["weights", "ema", "optimizer", "ema_as_weights"]
#: EDM's ``ema_rampup_ratio``, used by ``carry_over: [ema_as_weights]`` when none is set
EDM_EMA_RAMPUP_RATIO = 0.05
#: steps between two reads of the loss history on a GPU (or under DDP): one synchronisation each
LOSS_READ_EVERY = 100
LossFn = Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]


class TrainConfig(pydantic.BaseModel):
    """Option group of the training loop.

    Exactly one of ``samples`` (budget in samples seen, like the official code's images per
    generation) and ``epochs`` (passes over the training set, fractional allowed) sets the
    budget; when neither is given ``samples = DEFAULT_SAMPLES``. ``carry_over`` lists what a warm
    start (``fit(..., init=previous)``) copies from the previous generation: the default
    ``["weights", "ema"]`` is the official EDM fine-tuning (optimizer restarted, learning rate
    ramped from 0 again); ``[]`` trains from scratch even when ``init`` is given; add
    ``"optimizer"`` to continue Adam's moments. ``finetune_samples`` is the budget of a warm
    start that carries the weights (the paper's image runs train generation 0 long, then
    fine-tune every later generation for 0.05 M images); ``None`` uses the same budget as
    generation 0.

    ``carry_over: [ema_as_weights]`` is how the paper's scripts actually fine-tune (EDM's
    ``--transfer``): the previous generation's *EMA* weights are loaded into both the network
    and its EMA, and the EMA half-life ramps up from zero (``ema_rampup_ratio``, EDM's 0.05
    when unset), so each generation ends with EMA ≈ weights. The learning-rate warm-up also
    restarts from 0 on every warm start; with EDM's ``warmup_samples`` of 10 M images a
    0.05 M-image fine-tune never exceeds 0.5 % of ``lr`` (the official code behaves the same).
    ``finetune_warmup_samples`` sets a separate warm-up for warm starts (e.g. 0: full ``lr`` at
    once).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    samples: int | None = pydantic.Field(None, ge=1)
    epochs: float | None = pydantic.Field(None, gt=0)
    finetune_samples: int | None = pydantic.Field(None, ge=1)
    finetune_warmup_samples: int | None = pydantic.Field(None, ge=0)
    batch_size: int = pydantic.Field(256, ge=1)
    lr: float = pydantic.Field(1e-3, gt=0)
    warmup_samples: int = pydantic.Field(0, ge=0)
    grad_clip: float | None = pydantic.Field(None, gt=0)
    ema_halflife_samples: float | None = pydantic.Field(None, gt=0)
    ema_rampup_ratio: float | None = pydantic.Field(None, gt=0)
    weight_decay: float = pydantic.Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = pydantic.Field(1e-8, gt=0)
    carry_over: tuple[CarryItem, ...] = ("weights", "ema")
    device: str = pydantic.Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    amp: bool = True
    log_every: int = pydantic.Field(0, ge=0)
    #: CUDA only: cuDNN / cuBLAS in deterministic mode (see :func:`set_deterministic_cuda`)
    deterministic: bool = False
    #: CUDA only: ``torch.compile`` the network for training
    compile: bool = False
    #: images in channels-last memory layout (faster convolutions on recent GPUs)
    channels_last: bool = False
    #: precision of the network evaluations when sampling: ``float32`` (default) or ``bfloat16``
    #: (autocast around each evaluation; the sampler's state, steps and noise stay float32, as
    #: EDM's ``use_fp16`` networks do). Applies on every device; fast on GPUs and on CPUs with
    #: bfloat16 units. Refused for families whose exactness needs float32 (flows).
    sample_precision: Literal["float32", "bfloat16"] = "float32"
    #: CUDA only: ``torch.compile`` the sampling network once per :meth:`sample` call
    sample_compile: bool = False

    @pydantic.model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.samples is not None and self.epochs is not None:
            raise ValueError("set only one of 'samples' and 'epochs' (the training budget)")
        return self

    def for_finetuning(self, *, ema_from_zero: bool = False) -> TrainConfig:
        """This config for a warm start that carries weights: the fine-tuning budget
        (``finetune_samples``) and warm-up (``finetune_warmup_samples``) when set; with
        ``ema_from_zero`` (``carry_over: [ema_as_weights]``) the EMA half-life ramps up from
        zero (``ema_rampup_ratio``, EDM's 0.05 when unset), as EDM's transfer path does."""
        update: dict[str, Any] = {}
        if self.finetune_samples is not None:
            update.update(samples=self.finetune_samples, epochs=None)
        if self.finetune_warmup_samples is not None:
            update["warmup_samples"] = self.finetune_warmup_samples
        if ema_from_zero and self.ema_rampup_ratio is None:
            update["ema_rampup_ratio"] = EDM_EMA_RAMPUP_RATIO
        return self.model_copy(update=update) if update else self

    def total_samples(self, n_data: int) -> int:
        """The budget in samples seen for a training set of ``n_data`` rows."""
        if self.epochs is not None:
            return max(1, int(round(self.epochs * n_data)))
        return self.samples if self.samples is not None else DEFAULT_SAMPLES

    def num_steps(self, n_data: int) -> int:
        """Optimiser steps: ``ceil(total_samples / batch_size)``."""
        return max(1, math.ceil(self.total_samples(n_data) / self.batch_size))


#: A training whose learning rate never exceeds this fraction of ``lr`` learns (almost) nothing:
#: it is warned about (a log line at fit time, a line in ``genloop show``).
LR_WARN_FRACTION = 0.01


def peak_lr_fraction(cfg: TrainConfig, n_data: int) -> float:
    """max_k lr_k / lr over a training with ``cfg`` on ``n_data`` rows: the warm-up's value after
    the last step, min(S / warmup_samples, 1) with S = steps · batch_size the samples seen
    (:func:`learning_rate` is non-decreasing in the samples seen)."""
    return learning_rate(cfg, cfg.num_steps(n_data) * cfg.batch_size) / cfg.lr


def learning_rate(cfg: TrainConfig, samples_seen: int) -> float:
    """``lr · min(samples_seen / warmup_samples, 1)`` (EDM's linear ramp; no ramp when 0)."""
    if cfg.warmup_samples <= 0:
        return cfg.lr
    return cfg.lr * min(samples_seen / cfg.warmup_samples, 1.0)


def ema_beta(cfg: TrainConfig, samples_seen: int | None = None) -> float:
    """Per-step EMA decay ``β = 0.5 ** (batch_size / h)`` with ``h = ema_halflife_samples``,
    or ``h = min(ema_halflife_samples, ema_rampup_ratio · samples_seen)`` when a ramp-up ratio
    is set (``samples_seen`` before the step; EDM ``training_loop.py``)."""
    if cfg.ema_halflife_samples is None:
        raise ConfigError("ema_halflife_samples is not set")
    halflife = cfg.ema_halflife_samples
    if cfg.ema_rampup_ratio is not None and samples_seen is not None:
        halflife = min(halflife, samples_seen * cfg.ema_rampup_ratio)
    return 0.5 ** (cfg.batch_size / max(halflife, 1e-8))


def halflife_from_decay(decay: float, batch_size: int) -> float:
    """The half-life in samples of a per-step EMA decay (0.9999 at batch 128 ≈ 887 k samples)."""
    if not 0 < decay < 1:
        raise ConfigError(f"EMA decay must be in (0, 1), got {decay}")
    return batch_size * math.log(0.5) / math.log(decay)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` / ``"cuda:N"`` (a pinned GPU)
    without that GPU is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but no CUDA device is available")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} was requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device(device)


def set_deterministic_cuda() -> None:
    """Ask CUDA for reproducible results: deterministic cuDNN kernels without autotuning and
    ``torch.use_deterministic_algorithms`` (warning, not failing, where an op has no
    deterministic kernel). cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the
    environment *before* CUDA starts (set here when absent, which only helps if CUDA has not
    started yet). What stays non-deterministic: ops whose CUDA backward uses atomic adds
    without a deterministic variant (e.g. nearest-neighbour up-sampling's backward), NCCL
    reductions across a different number of GPUs, and bf16 autocast across GPU models.
    These are process-wide settings.
    """
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (itself when already there)."""
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return torch.Generator(device=device).manual_seed(seed)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained network, its EMA (or None), Adam's state,
    the mean loss and learning rate of every step, and the number of samples seen."""

    net: nn.Module
    ema: nn.Module | None
    optimizer_state: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    samples_seen: int = 0
    resumed_from_step: int | None = None


@torch.no_grad()
def update_ema_(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """``ema ← β·ema + (1-β)·net`` for parameters; buffers are copied (EDM ``training_loop.py``).

    One call of :class:`EMAUpdater`; a loop that updates every step builds the updater once.
    """
    EMAUpdater(ema, net)(beta)


class EMAUpdater:
    """``ema ← β·ema + (1-β)·net`` as one fused multi-tensor op per dtype group.

    The parameter and buffer lists are collected once; each call is ``torch._foreach_lerp_``
    (and ``torch._foreach_copy_`` for buffers) instead of a Python loop with one kernel launch
    per tensor, which on a GPU costs hundreds of launches per step for the paper's networks.
    ``lerp`` per element is the same operation either way, so the result is identical to the
    per-tensor loop (bit for bit on CPU).
    """

    def __init__(self, ema: nn.Module, net: nn.Module) -> None:
        pairs = list(zip(ema.parameters(), net.parameters()))
        self._same = [(a, b) for a, b in pairs if a.dtype == b.dtype and a.device == b.device]
        self._cast = [(a, b) for a, b in pairs if not (a.dtype == b.dtype and a.device == b.device)]
        self._ema_params = [a for a, _ in self._same]
        self._net_params = [b for _, b in self._same]
        self._ema_bufs = list(ema.buffers())
        self._net_bufs = list(net.buffers())

    @torch.no_grad()
    def __call__(self, beta: float) -> None:
        weight = 1.0 - float(beta)
        if self._ema_params:
            torch._foreach_lerp_(self._ema_params, self._net_params, weight)
        for a, b in self._cast:
            a.lerp_(b.detach().to(a.device, a.dtype), weight)
        if self._ema_bufs:
            torch._foreach_copy_(self._ema_bufs, self._net_bufs)


def _dropout_rng_scope(device: torch.device):  # noqa: ANN202 - context manager
    """A scope whose changes to torch's global RNG (dropout draws from it) are undone on exit."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _seed_global_rng(seed: int, device: torch.device) -> None:
    # Inside _dropout_rng_scope only: dropout layers draw from torch's global RNG, so the
    # scope seeds it from the training generator, which makes dropout a function of the
    # fit's seed too; the scope restores the caller's global state afterwards.
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _global_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.global_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.global_cuda"] = torch.cuda.get_rng_state()
    return out


def _set_global_rng_state(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.global_cpu"])
    if device.type == "cuda" and "rng.global_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.global_cuda"])


class _Progress:
    """A tqdm bar in samples (loss, samples/s) on a terminal; a log line a minute otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.bar = None
        self.last_log = time.monotonic()
        self.start = time.monotonic()
        self.start_seen = initial
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="training", unit="sample", unit_scale=True,
                            file=sys.stderr, dynamic_ncols=True, leave=False, delay=2.0)

    def update(self, step: int, steps: int, seen: int, batch: int, loss: float | None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(batch)
            if loss is not None:
                self.bar.set_postfix_str(f"step {step}/{steps} loss {loss:.4g}", refresh=False)
            return
        now = time.monotonic()
        if now - self.last_log >= 60.0 or step == steps:
            rate = (seen - self.start_seen) / max(now - self.start, 1e-9)
            log.info("training: step %d/%d, %d/%d samples, loss %s, %.0f samples/s", step, steps, seen, self.total,
                     "n/a" if loss is None else f"{loss:.5g}", rate)
            self.last_log = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    net: nn.Module,
    loss_fn: LossFn,
    data: torch.Tensor,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    ema: nn.Module | None = None,
    optimizer_state: dict[str, Any] | None = None,
    checkpoint: TrainCheckpointing | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Minimise ``mean(loss_fn(net, x_batch, g))`` over minibatches of ``data`` with Adam.

    ``net`` is trained in place (moved to the resolved device). ``data`` has shape
    ``(n, *event_shape)``; minibatches of ``cfg.batch_size`` rows follow a fresh permutation of
    the rows each epoch, drawn from ``generator``. ``loss_fn`` receives a generator on the
    batch's device for its own noise. ``ema`` is the starting EMA network (warm start); when
    ``None`` and ``cfg.ema_halflife_samples`` is set it starts as a copy of ``net``.
    ``optimizer_state`` restores Adam's moments (warm start with ``"optimizer"`` carried).

    ``checkpoint`` saves the whole training state every ``checkpoint.every_samples`` samples
    (and after the last step) and, when its directory already holds a complete checkpoint of
    this fit, continues from the newest one (:mod:`~genloop.models.neural.train_checkpoint`);
    ``fingerprint`` adds caller entries (model family, options) to what identifies the fit.
    ``progress`` shows a tqdm bar on a terminal, or logs a line a minute otherwise.

    Under ``torch.distributed`` with several processes the step is DDP's
    (:mod:`~genloop.models.neural.distributed`): each rank takes its slice of the global batch.
    """
    if data.ndim < 2 or data.shape[0] < 1:
        raise DataError(f"training data must have shape (n, *event_shape) with n >= 1, got {tuple(data.shape)}")
    w = world()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    use_amp = bool(cfg.amp and device.type == "cuda")
    if cfg.deterministic and device.type == "cuda":
        set_deterministic_cuda()
    net.to(device).train()
    n = data.shape[0]
    digest = data_digest(data) if checkpoint is not None else None
    data = data.to(device)
    if cfg.channels_last and data.ndim == 4:
        net.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    B = min(cfg.batch_size, n)
    if w.distributed and B % w.size:
        raise ConfigError(f"batch_size {B} must be divisible by the number of processes ({w.size}) for DDP")
    local = slice(w.rank * (B // w.size), (w.rank + 1) * (B // w.size))
    if w.distributed:
        # per-rank noise streams seeded from a copy of the shared generator, which is left as a
        # single process would use it: the minibatch order is the single-process one
        probe = torch.Generator().set_state(generator.get_state())
        base_seed = int(torch.randint(0, 2**62, (1,), generator=probe).item())
        gen_dev = torch.Generator(device=device).manual_seed((base_seed + 7919 * (w.rank + 1)) % 2**62)
    else:
        gen_dev = device_generator(generator, device)
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=generator).item()) + w.rank

    if cfg.ema_halflife_samples is not None:
        ema = copy.deepcopy(net) if ema is None else ema
        ema.to(device).eval().requires_grad_(False)
    else:
        ema = None

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        _restore_optimizer(optimizer, optimizer_state, cfg)
    model: nn.Module = net
    if w.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        if device.type == "cuda":
            model = torch.compile(model)  # type: ignore[assignment]
        else:
            log.info("train.compile applies on CUDA only; training uncompiled on %s", device)

    steps = cfg.num_steps(n)
    ema_update = EMAUpdater(ema, net) if ema is not None else None
    result = TrainResult(net=net, ema=ema, optimizer_state={})
    perm = torch.randperm(n, generator=generator).to(device)
    pos = 0
    seen = 0
    start = 0
    pending: list[torch.Tensor] = []  # step losses kept on the device: no host sync per step
    expected_fp: dict[str, Any] = {}
    if checkpoint is not None:
        expected_fp = {
            "steps": steps, "batch_size": B, "n": n, "data": digest, "data_shape": list(data.shape),
            "net": module_signature(net), "has_ema": ema is not None, "world_size": w.size,
            "train": cfg.model_dump(mode="json", exclude={"log_every", "device", "amp", "compile", "channels_last", "deterministic",
                                               "sample_precision", "sample_compile"}),
            **{str(k): v for k, v in (fingerprint or {}).items()},
        }
        expected_fp = json.loads(json.dumps(expected_fp))

    def flush() -> None:
        if not pending:
            return
        values = mean_over_ranks(torch.stack(pending)).cpu()
        first = len(result.losses)
        result.losses.extend(values.tolist())
        pending.clear()
        bad = torch.nonzero(~torch.isfinite(values))
        if len(bad):
            k = first + int(bad[0])
            raise FloatingPointError(
                f"training loss is not finite at step {k} (lr={result.lrs[k]:g}); lower lr or clip gradients"
            )

    def save(step: int) -> None:
        flush()
        assert checkpoint is not None
        tensors: dict[str, torch.Tensor] = {}
        if w.is_main:
            tensor_state("net.", net.state_dict(), tensors)
            if ema is not None:
                tensor_state("ema.", ema.state_dict(), tensors)
            opt_tensors, opt_meta = optimizer_to_parts(optimizer.state_dict())
            tensors.update(opt_tensors)
            tensors["order.perm"] = perm.to("cpu").clone()
            tensors["history.losses"] = torch.tensor(result.losses, dtype=torch.float64)
            tensors["history.lrs"] = torch.tensor(result.lrs, dtype=torch.float64)
            tensors["rng.generator"] = generator.get_state()
        rank_tensors = {"rng.device": gen_dev.get_state(), **_global_rng_state(device)}
        if w.distributed:
            # every rank's own streams, in a file of its own, before rank 0 completes the checkpoint
            if not w.is_main:
                save_rank_streams(checkpoint, step, w.rank, rank_tensors)
            barrier()
        if w.is_main:
            tensors.update({f"rank0.{k}": v.clone() for k, v in rank_tensors.items()})
            save_train_checkpoint(
                checkpoint, step=step, tensors=tensors,
                meta={"fingerprint": expected_fp, "pos": pos, "seen": seen, "optimizer": opt_meta},
            )
        barrier()

    with _dropout_rng_scope(device):
        _seed_global_rng(dropout_seed, device)
        if checkpoint is not None:
            found = load_latest(checkpoint)
            if found is not None:
                tensors, meta = found
                check_fingerprint(meta["fingerprint"], expected_fp, checkpoint.directory)
                net.load_state_dict(sub_state(tensors, "net."))
                if ema is not None:
                    ema.load_state_dict(sub_state(tensors, "ema."))
                optimizer.load_state_dict(optimizer_from_parts(tensors, meta["optimizer"]))
                perm = tensors["order.perm"].to(device)
                generator.set_state(tensors["rng.generator"])
                streams = sub_state(tensors, "rank0.") if w.is_main else load_rank_streams(checkpoint, meta["step"], w.rank)
                if gen_dev is not generator:
                    gen_dev.set_state(streams["rng.device"])
                _set_global_rng_state(streams, device)
                pos, seen, start = int(meta["pos"]), int(meta["seen"]), int(meta["step"])
                result.losses = tensors["history.losses"].tolist()
                result.lrs = tensors["history.lrs"].tolist()
                log.info("training resumed from %s at step %d/%d (%d samples seen)",
                         checkpoint.directory, start, steps, seen)
        result.resumed_from_step = start if start else None

        # losses stay on the device and are read (one host-device synchronisation) every
        # ``check_every`` steps; a single CPU process reads them at once (no cost there)
        check_every = 1 if device.type == "cpu" and not w.distributed else LOSS_READ_EVERY
        lr_prev: float | None = None
        bar = _Progress(steps * B, seen, enabled=progress and w.is_main and start < steps)
        try:
            for step in range(start, steps):
                idx_parts = []
                need = B
                while need > 0:
                    if pos >= n:
                        perm = torch.randperm(n, generator=generator).to(device)
                        pos = 0
                    take = min(need, n - pos)
                    idx_parts.append(perm[pos : pos + take])
                    pos += take
                    need -= take
                idx = idx_parts[0] if len(idx_parts) == 1 else torch.cat(idx_parts)
                x = data[idx[local] if w.distributed else idx]
                seen += B
                lr = learning_rate(cfg, seen)
                if lr != lr_prev:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    lr_prev = lr
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    per_example = loss_fn(model, x, gen_dev)
                if per_example.ndim != 1 or per_example.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"loss_fn must return per-example losses of shape ({x.shape[0]},), got {tuple(per_example.shape)}"
                    )
                loss = per_example.float().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                if ema_update is not None:
                    ema_update(ema_beta(cfg, seen - B))
                pending.append(loss.detach())
                result.lrs.append(lr)
                if (step + 1) % check_every == 0 or step + 1 == steps:
                    flush()
                if cfg.log_every and (step + 1) % cfg.log_every == 0:
                    flush()
                    log.info("step %d/%d  samples %d  loss %.5f  lr %.3g", step + 1, steps, seen, result.losses[-1], lr)
                if checkpoint is not None and (
                    seen // checkpoint.every_samples > (seen - B) // checkpoint.every_samples or step + 1 == steps
                ):
                    save(step + 1)
                bar.update(step + 1, steps, seen, B, result.losses[-1] if result.losses else None)
        finally:
            bar.close()
    net.eval()
    result.samples_seen = seen
    result.optimizer_state = optimizer.state_dict()
    return result


def _restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], cfg: TrainConfig) -> None:
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"cannot restore the optimizer state (network changed?): {exc}") from exc
    for group in optimizer.param_groups:  # this config's hyper-parameters win over the saved ones
        group.update(betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "learning_rate",
    "ema_beta",
    "halflife_from_decay",
    "update_ema_",
    "EMAUpdater",
    "resolve_device",
    "device_generator",
    "set_deterministic_cuda",
    "DEFAULT_SAMPLES",
    "TrainCheckpointing",
]
