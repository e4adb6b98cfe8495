"""Per-example training objectives of DDPM and EDM, and EDM's preconditioning.

Objectives take a callable (the epsilon network or the denoiser) and a batch, draw their noise
from an explicit ``torch.Generator`` and return one loss per example, shape ``(B,)`` (the mean
over the example's dimensions). The shared trainer averages them over the batch.
"""

from __future__ import annotations

from typing import Callable

import torch

from genloop.models.diffusion.schedules import DDPMSchedule

#: ``eps_fn(x_t, t)``: predicted noise for a batch x_t at 0-based integer steps t (shape (B,)).
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``denoiser(x, sigma)``: D(x; sigma), the denoised batch, for noise levels sigma (shape (B,)).
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``F(x_in, c_noise)``: the raw network of EDM (input and noise conditioning already scaled).
RawNet = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def randn(shape: tuple[int, ...] | torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``shape`` with ``like``'s dtype and device, drawn from ``generator``.

    The noise is drawn on the generator's own device and then moved, so a CPU generator also
    drives a model held on a GPU (same numbers on every device).
    """
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _per_example_mean(sq: torch.Tensor) -> torch.Tensor:
    return sq.reshape(sq.shape[0], -1).mean(dim=1)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


# ---- DDPM -----------------------------------------------------------------------------------
def ddpm_loss(
    eps_fn: EpsFn, x0: torch.Tensor, schedule: DDPMSchedule, generator: torch.Generator | None
) -> torch.Tensor:
    """Ho et al. (2020) eq. 14, L_simple per example: || eps - eps_theta(x_t, t) ||^2 / dim,
    with t uniform on the T steps and x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    B = x0.shape[0]
    device = generator.device if generator is not None else x0.device
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=device).to(x0.device)
    eps = randn(x0.shape, x0, generator)
    x_t = schedule.q_sample(x0, t, eps)
    return _per_example_mean((eps_fn(x_t, t) - eps) ** 2)


# ---- EDM ------------------------------------------------------------------------------------
def edm_precond(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Karras et al. (2022) Table 1, EDM column: (c_skip, c_out, c_in, c_noise) at ``sigma``.

    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 +
    sigma_data^2), c_in = 1 / sqrt(sigma^2 + sigma_data^2), c_noise = ln(sigma) / 4.
    """
    s2 = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / s2
    c_out = sigma * sigma_data / s2.sqrt()
    c_in = 1.0 / s2.sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


def edm_denoise(F: RawNet, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) (Karras et al. eq. 7); ``sigma`` has shape (B,)."""
    c_skip, c_out, c_in, c_noise = edm_precond(sigma, sigma_data)
    F_x = F(_bcast(c_in, x) * x, c_noise)
    return _bcast(c_skip, x) * x + _bcast(c_out, x) * F_x


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (Karras et al. Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_sample_sigma(
    B: int, like: torch.Tensor, generator: torch.Generator | None, P_mean: float = -1.2, P_std: float = 1.2
) -> torch.Tensor:
    """Training noise levels ln(sigma) ~ N(P_mean, P_std^2) (Karras et al. Table 1), shape (B,)."""
    return (randn((B,), like, generator) * P_std + P_mean).exp()


def edm_loss(
    denoiser: Denoiser,
    y: torch.Tensor,
    generator: torch.Generator | None,
    *,
    sigma_data: float = 0.5,
    P_mean: float = -1.2,
    P_std: float = 1.2,
) -> torch.Tensor:
    """Karras et al. (2022) eq. 8 per example: lambda(sigma) || D(y + n; sigma) - y ||^2 / dim,
    with n ~ N(0, sigma^2 I) and ln(sigma) ~ N(P_mean, P_std^2)."""
    sigma = edm_sample_sigma(y.shape[0], y, generator, P_mean, P_std)
    n = randn(y.shape, y, generator) * _bcast(sigma, y)
    D = denoiser(y + n, sigma)
    weight = edm_loss_weight(sigma, sigma_data)
    return weight * _per_example_mean((D - y) ** 2)


# ---- VP preconditioning (Song et al. 2021 as in Karras et al. 2022, Table 1) -----------------
def vp_sigma(t: torch.Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), the VP noise level at time t."""
    return ((0.5 * beta_d * t**2 + beta_min * t).exp() - 1).sqrt()


def vp_sigma_inv(sigma: torch.Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """t(sigma) = (sqrt(beta_min^2 + 2 beta_d ln(1 + sigma^2)) - beta_min) / beta_d, inverse of :func:`vp_sigma`."""
    return ((beta_min**2 + 2 * beta_d * (1 + sigma**2).log()).sqrt() - beta_min) / beta_d


def vp_denoise(
    F: RawNet, x: torch.Tensor, sigma: torch.Tensor, *, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000
) -> torch.Tensor:
    """D(x; sigma) = x - sigma F(x / sqrt(sigma^2 + 1); (M - 1) t(sigma)) (Karras et al. Table 1, VP column)."""
    c_in = 1.0 / (sigma**2 + 1).sqrt()
    c_noise = (M - 1) * vp_sigma_inv(sigma, beta_d, beta_min)
    return x - _bcast(sigma, x) * F(_bcast(c_in, x) * x, c_noise)


def vp_loss(
    denoiser: Denoiser,
    y: torch.Tensor,
    generator: torch.Generator | None,
    *,
    beta_d: float = 19.9,
    beta_min: float = 0.1,
    epsilon_t: float = 1e-5,
) -> torch.Tensor:
    """The VP training loss per example (Karras et al. Table 1): sigma = sigma(t) with
    t ~ U(epsilon_t, 1), weight lambda(sigma) = 1 / sigma^2, || D(y + n; sigma) - y ||^2 / dim."""
    device = generator.device if generator is not None else y.device
    u = torch.rand((y.shape[0],), generator=generator, device=device, dtype=y.dtype).to(y.device)
    sigma = vp_sigma(1 + u * (epsilon_t - 1), beta_d, beta_min)
    n = randn(y.shape, y, generator) * _bcast(sigma, y)
    return _per_example_mean((denoiser(y + n, sigma) - y) ** 2) / sigma**2
