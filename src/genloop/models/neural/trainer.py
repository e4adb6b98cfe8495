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
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import pydantic
import torch
from torch import nn

from genloop.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Budget used when neither ``samples`` nor ``epochs`` is given.
DEFAULT_SAMPLES = 200_000

CarryItem = Literal["weights", "ema", "optimizer"]
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
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    samples: int | None = pydantic.Field(None, ge=1)
    epochs: float | None = pydantic.Field(None, gt=0)
    finetune_samples: int | None = pydantic.Field(None, ge=1)
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
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    log_every: int = pydantic.Field(0, ge=0)

    @pydantic.model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if self.samples is not None and self.epochs is not None:
            raise ValueError("set only one of 'samples' and 'epochs' (the training budget)")
        return self

    def for_finetuning(self) -> TrainConfig:
        """This config with the fine-tuning budget (``finetune_samples``) when one is set."""
        if self.finetune_samples is None:
            return self
        return self.model_copy(update={"samples": self.finetune_samples, "epochs": None})

    def total_samples(self, n_data: int) -> int:
        """The budget in samples seen for a training set of ``n_data`` rows."""
        if self.epochs is not None:
            return max(1, int(round(self.epochs * n_data)))
        return self.samples if self.samples is not None else DEFAULT_SAMPLES

    def num_steps(self, n_data: int) -> int:
        """Optimiser steps: ``ceil(total_samples / batch_size)``."""
        return max(1, math.ceil(self.total_samples(n_data) / self.batch_size))


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
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA device is available")
    return torch.device(device)


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


@torch.no_grad()
def update_ema_(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """``ema ← β·ema + (1-β)·net`` for parameters; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), net.parameters()):
        p_ema.lerp_(p.detach().to(p_ema.dtype), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def train(
    net: nn.Module,
    loss_fn: LossFn,
    data: torch.Tensor,
    cfg: TrainConfig,
    *,
    generator: torch.Generator,
    ema: nn.Module | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Minimise ``mean(loss_fn(net, x_batch, g))`` over minibatches of ``data`` with Adam.

    ``net`` is trained in place (moved to the resolved device). ``data`` has shape
    ``(n, *event_shape)``; minibatches of ``cfg.batch_size`` rows follow a fresh permutation of
    the rows each epoch, drawn from ``generator``. ``loss_fn`` receives a generator on the
    batch's device for its own noise. ``ema`` is the starting EMA network (warm start); when
    ``None`` and ``cfg.ema_halflife_samples`` is set it starts as a copy of ``net``.
    ``optimizer_state`` restores Adam's moments (warm start with ``"optimizer"`` carried).
    """
    if data.ndim < 2 or data.shape[0] < 1:
        raise DataError(f"training data must have shape (n, *event_shape) with n >= 1, got {tuple(data.shape)}")
    device = resolve_device(cfg.device)
    use_amp = bool(cfg.amp and device.type == "cuda")
    net.to(device).train()
    data = data.to(device)
    n = data.shape[0]
    gen_dev = device_generator(generator, device)

    if cfg.ema_halflife_samples is not None:
        ema = copy.deepcopy(net) if ema is None else ema
        ema.to(device).eval().requires_grad_(False)
    else:
        ema = None

    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"cannot restore the optimizer state (network changed?): {exc}") from exc
        for group in optimizer.param_groups:  # this config's hyper-parameters win over the saved ones
            group.update(betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)

    steps = cfg.num_steps(n)
    B = min(cfg.batch_size, n)
    result = TrainResult(net=net, ema=ema, optimizer_state={})
    perm = torch.randperm(n, generator=generator).to(device)
    pos = 0
    seen = 0
    pending: list[torch.Tensor] = []  # step losses kept on the device: no host sync per step

    def flush(step: int) -> None:
        if not pending:
            return
        values = torch.stack(pending).cpu()
        first = len(result.losses)
        result.losses.extend(values.tolist())
        pending.clear()
        bad = torch.nonzero(~torch.isfinite(values))
        if len(bad):
            k = first + int(bad[0])
            raise FloatingPointError(
                f"training loss is not finite at step {k} (lr={result.lrs[k]:g}); lower lr or clip gradients"
            )

    check_every = 1 if device.type == "cpu" else 100
    for step in range(steps):
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
        x = data[idx_parts[0] if len(idx_parts) == 1 else torch.cat(idx_parts)]
        seen += B
        lr = learning_rate(cfg, seen)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            per_example = loss_fn(net, x, gen_dev)
        if per_example.ndim != 1 or per_example.shape[0] != x.shape[0]:
            raise ValueError(f"loss_fn must return per-example losses of shape ({x.shape[0]},), got {tuple(per_example.shape)}")
        loss = per_example.float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        if ema is not None:
            update_ema_(ema, net, ema_beta(cfg, seen - B))
        pending.append(loss.detach())
        result.lrs.append(lr)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            flush(step)
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            flush(step)
            log.info("step %d/%d  samples %d  loss %.5f  lr %.3g", step + 1, steps, seen, result.losses[-1], lr)
    net.eval()
    result.samples_seen = seen
    result.optimizer_state = optimizer.state_dict()
    return result


__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "learning_rate",
    "ema_beta",
    "halflife_from_decay",
    "update_ema_",
    "resolve_device",
    "device_generator",
    "DEFAULT_SAMPLES",
]
