"""Samplers of DDPM (ancestral, DDIM) and EDM (Heun with optional churn).

Each sampler takes the learned callable (epsilon network or denoiser), the initial noise and an
explicit ``torch.Generator`` for any fresh noise, and runs without gradients. Computation is
in the dtype of the initial noise (float64 in tests); callables receive that dtype.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from genloop.errors import ConfigError
from genloop.models.diffusion.objectives import Denoiser, EpsFn, randn
from genloop.models.diffusion.schedules import DDPMSchedule


def _steps(t: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((like.shape[0],), int(t), dtype=torch.long, device=like.device)


@torch.no_grad()
def ddpm_ancestral_sample(
    eps_fn: EpsFn,
    schedule: DDPMSchedule,
    x_T: torch.Tensor,
    generator: torch.Generator | None,
    *,
    variance: Literal["beta_tilde", "beta"] = "beta_tilde",
    clip_x0: float | None = None,
) -> torch.Tensor:
    """Ho et al. (2020) Algorithm 2: for t = T .. 1, x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    mu_theta is the posterior mean mu_tilde(x_t, x0_hat) with x0_hat = (x_t - sqrt(1 -
    alpha_bar_t) eps_theta) / sqrt(alpha_bar_t), which equals the paper's
    1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) when ``clip_x0`` is None
    (Ho's code clips x0_hat to [-1, 1] for images). sigma_t^2 is beta_tilde_t (default) or
    beta_t; no noise is added at the last step.
    """
    if variance not in ("beta_tilde", "beta"):
        raise ConfigError(f"unknown ancestral variance {variance!r}; known: beta_tilde, beta")
    x = x_T
    var_table = schedule.posterior_variance if variance == "beta_tilde" else schedule.betas
    for t in range(schedule.T - 1, -1, -1):
        tt = _steps(t, x)
        x0_hat = schedule.predict_x0(x, tt, eps_fn(x, tt))
        if clip_x0 is not None:
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
        mean, _ = schedule.posterior_mean_variance(x0_hat, x, tt)
        if t > 0:
            x = mean + math.sqrt(float(var_table[t])) * randn(x.shape, x, generator)
        else:
            x = mean
    return x


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    schedule: DDPMSchedule,
    x_T: torch.Tensor,
    timesteps: np.ndarray,
    generator: torch.Generator | None,
    *,
    eta: float = 0.0,
    clip_x0: float | None = None,
) -> torch.Tensor:
    """Song et al. (2021) eq. 12 on the increasing 0-based ``timesteps`` (visited backwards):

    x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps_theta + sigma z,
    sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev),

    with alpha_bar_prev = 1 after the first step, so the result is x0_hat at step
    ``timesteps[0]``. ``eta = 0`` is deterministic (DDIM); ``eta = 1`` matches DDPM's
    ancestral variance on the subsequence. Uses ``len(timesteps)`` network evaluations.
    """
    if eta < 0:
        raise ConfigError(f"DDIM eta must be >= 0, got {eta}")
    seq = [int(s) for s in np.asarray(timesteps)]
    if not seq or any(b <= a for a, b in zip(seq, seq[1:])) or seq[0] < 0 or seq[-1] >= schedule.T:
        raise ConfigError(f"DDIM timesteps must be strictly increasing within [0, {schedule.T}), got {seq[:5]}...")
    alpha_bar = schedule.alpha_bar
    x = x_T
    prev = [-1] + seq[:-1]
    for t, t_prev in zip(reversed(seq), reversed(prev)):
        ab = float(alpha_bar[t])
        ab_prev = float(alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        tt = _steps(t, x)
        eps = eps_fn(x, tt)
        x0_hat = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
        if clip_x0 is not None:
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)
            eps = (x - math.sqrt(ab) * x0_hat) / math.sqrt(1.0 - ab)
        sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * randn(x.shape, x, generator)
    return x


@torch.no_grad()
def edm_heun_sample(
    denoiser: Denoiser,
    latents: torch.Tensor,
    sigma_steps: torch.Tensor,
    generator: torch.Generator | None,
    *,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = float("inf"),
    S_noise: float = 1.0,
) -> tuple[torch.Tensor, int]:
    """Karras et al. (2022) Algorithm 2 (Algorithm 1 when ``S_churn = 0``): Heun's 2nd order
    method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma.

    ``latents`` are standard normal, scaled by sigma_0; ``sigma_steps`` is (sigma_0 > ... >
    sigma_{N-1}, 0) as from :func:`edm_sigma_steps`. With churn, each step with
    S_min <= sigma_i <= S_max first raises the noise to sigma_hat = (1 + gamma) sigma_i,
    gamma = min(S_churn / N, sqrt(2) - 1), adding noise of std S_noise sqrt(sigma_hat^2 -
    sigma_i^2). Returns the samples and the number of denoiser evaluations (2N - 1).
    """
    sig = [float(s) for s in sigma_steps]
    N = len(sig) - 1
    if N < 1 or sig[-1] != 0.0 or any(b >= a for a, b in zip(sig, sig[1:])):
        raise ConfigError("EDM sigma steps must be strictly decreasing and end with 0")
    x_next = latents * sig[0]
    nfe = 0

    def D(x: torch.Tensor, s: float) -> torch.Tensor:
        return denoiser(x, torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device))

    for i, (t_cur, t_next) in enumerate(zip(sig[:-1], sig[1:])):
        x_cur = x_next
        gamma = min(S_churn / N, math.sqrt(2.0) - 1.0) if S_min <= t_cur <= S_max else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            x_hat = x_cur + math.sqrt(t_hat**2 - t_cur**2) * S_noise * randn(x_cur.shape, x_cur, generator)
        else:
            x_hat = x_cur
        d_cur = (x_hat - D(x_hat, t_hat)) / t_hat
        nfe += 1
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < N - 1:  # second-order correction, skipped on the last step to sigma = 0
            d_prime = (x_next - D(x_next, t_next)) / t_next
            nfe += 1
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next, nfe
