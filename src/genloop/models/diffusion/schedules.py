"""Noise schedules of DDPM (Ho et al. 2020) and EDM (Karras et al. 2022).

Indexing convention for DDPM: arrays are indexed by a 0-based step ``t`` in ``0 .. T-1``;
index ``t`` is the paper's step ``t + 1`` (so ``alpha_bar[0] = 1 - beta_1`` and
``alpha_bar[T-1]`` is the last, noisiest level), exactly as in Ho et al.'s and the DDIM
authors' code. The network receives ``t / T`` in [0, 1) (see :func:`ddpm_time_input`); with the
shared networks' default ``time_scale = 1000`` its sinusoidal embedding is that of the integer
step, as in Ho et al.'s code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch

from genloop.errors import ConfigError

BetaKind = Literal["linear", "cosine"]
SkipKind = Literal["uniform", "quadratic"]


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. (2020) §4: beta_t linear from ``beta_start`` to ``beta_end`` over ``T`` steps (float64)."""
    if T < 1:
        raise ConfigError(f"number of diffusion steps T must be >= 1, got {T}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ConfigError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021) eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2,
    beta_t = 1 - alpha_bar(t)/alpha_bar(t-1) clipped at ``max_beta`` (float64)."""
    if T < 1:
        raise ConfigError(f"number of diffusion steps T must be >= 1, got {T}")
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def beta_schedule(kind: BetaKind, T: int) -> torch.Tensor:
    """The named beta schedule: ``"linear"`` (1e-4 .. 0.02) or ``"cosine"`` (s = 0.008)."""
    if kind == "linear":
        return linear_betas(T)
    if kind == "cosine":
        return cosine_betas(T)
    raise ConfigError(f"unknown beta schedule {kind!r}; known: linear, cosine")


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` reshaped to broadcast against a batch ``like`` of shape (B, ...)."""
    out = values.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True)
class DDPMSchedule:
    """The discrete variance-preserving process of Ho et al. (2020) built from ``betas``.

    ``alphas = 1 - betas``, ``alpha_bar[t] = prod_{s <= t} alphas[s]``; all float64 tensors,
    computed once per schedule.
    """

    betas: torch.Tensor

    @classmethod
    def make(cls, kind: BetaKind = "linear", T: int = 1000) -> DDPMSchedule:
        return cls(beta_schedule(kind, T))

    @property
    def T(self) -> int:
        return int(self.betas.shape[0])

    @cached_property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @cached_property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @cached_property
    def alpha_bar_prev(self) -> torch.Tensor:
        """alpha_bar at the previous step, with alpha_bar_prev[0] = 1 (x_0 is the data)."""
        return torch.cat([torch.ones(1, dtype=self.betas.dtype), self.alpha_bar[:-1]])

    @cached_property
    def posterior_variance(self) -> torch.Tensor:
        """beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t (Ho et al. eq. 7)."""
        return (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar) * self.betas

    # ---- forward process ------------------------------------------------------------------
    def q_mean_var(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. eq. 4)."""
        ab = _gather(self.alpha_bar, t, x0)
        return ab.sqrt() * x0, (1.0 - ab).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4 reparametrised)."""
        ab = _gather(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I) (Ho et al. eqs. 6-7):

        mu_tilde = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t.
        """
        ab = _gather(self.alpha_bar, t, x_t)
        ab_prev = _gather(self.alpha_bar_prev, t, x_t)
        beta = _gather(self.betas, t, x_t)
        coef_x0 = ab_prev.sqrt() * beta / (1.0 - ab)
        coef_xt = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab)
        var = _gather(self.posterior_variance, t, x_t)
        return coef_x0 * x0 + coef_xt * x_t, var.expand_as(x_t)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (inverse of :meth:`q_sample`)."""
        ab = _gather(self.alpha_bar, t, x_t)
        return (x_t - (1.0 - ab).sqrt() * eps) / ab.sqrt()


def ddpm_time_input(t: torch.Tensor, T: int) -> torch.Tensor:
    """The network's time input for 0-based step ``t``: ``t / T`` in [0, 1) (float64)."""
    return t.to(torch.float64) / T


def ddim_timesteps(T: int, steps: int, skip: SkipKind = "uniform") -> np.ndarray:
    """The increasing 0-based steps visited by DDIM (Song et al. 2021, their official code).

    ``uniform``: ``range(0, T, T // steps)``; ``quadratic``: ``int(linspace(0, sqrt(0.8 T),
    steps)^2)``, denser near the data, as in the DDIM code's CIFAR-10 setting (the recipe of
    the genloop paper's DDPM: 100 steps, quadratic skip). The official quadratic sequence
    repeats its first values (e.g. 0, 0, 0, 0, 1, ... for T = 1000, 100 steps); a repeated
    step maps x_t to itself exactly, so the repeats are dropped here and the result is
    strictly increasing (possibly a few entries shorter than ``steps``).
    """
    if not 1 <= steps <= T:
        raise ConfigError(f"sample_steps must be between 1 and T={T}, got {steps}")
    if skip == "uniform":
        seq = np.arange(0, T, T // steps)
    elif skip == "quadratic":
        seq = (np.linspace(0, np.sqrt(T * 0.8), steps) ** 2).astype(np.int64)
    else:
        raise ConfigError(f"unknown skip type {skip!r}; known: uniform, quadratic")
    return np.unique(seq)


def edm_sigma_steps(
    num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> torch.Tensor:
    """Karras et al. (2022) eq. 5 time steps, with sigma_N = 0 appended (float64, shape (N+1,)):

    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < N.
    """
    if num_steps < 1:
        raise ConfigError(f"number of sampling steps must be >= 1, got {num_steps}")
    if not 0.0 < sigma_min < sigma_max:
        raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(num_steps, dtype=torch.float64)
    denom = max(num_steps - 1, 1)
    sig = (sigma_max ** (1 / rho) + i / denom * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
