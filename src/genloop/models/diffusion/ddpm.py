"""The ``ddpm`` family: epsilon-prediction diffusion (Ho et al. 2020) with ancestral or DDIM sampling.

Pieces (schedules, the L_simple objective, the samplers) live in their own modules; this class
only wires them to the shared network, trainer and :class:`TorchGenerativeModel` contract.
The network is called as ``net(x_t, t / T)`` with the 0-based step ``t`` (see
:func:`~genloop.models.diffusion.schedules.ddpm_time_input`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn
from typing_extensions import Self

from genloop._validation import check_option
from genloop.errors import ConfigError
from genloop.models import register_model
from genloop.models.base import GenerativeModel
from genloop.models.diffusion.objectives import EpsFn, ddpm_loss, randn
from genloop.models.diffusion.samplers import ddim_sample, ddpm_ancestral_sample
from genloop.models.diffusion.schedules import BetaKind, DDPMSchedule, SkipKind, ddim_timesteps, ddpm_time_input
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import NetworkConfig
from genloop.models.neural.trainer import TrainConfig


@register_model("ddpm")
class DDPM(TorchGenerativeModel):
    """Denoising diffusion probabilistic model (Ho et al. 2020), trained with L_simple.

    Options: ``T`` diffusion steps with a ``linear`` (1e-4 .. 0.02) or ``cosine`` (Nichol &
    Dhariwal) ``beta_schedule``; ``sampler="ddim"`` (Song et al. 2021; ``sample_steps`` network
    evaluations on a ``uniform`` or ``quadratic`` ``skip`` sequence, noise ``eta``, 0 =
    deterministic) or ``"ancestral"`` (Ho et al. Algorithm 2, ``T`` evaluations,
    sigma_t^2 = beta_tilde_t). The defaults are the genloop paper's DDPM recipe: DDIM,
    100 steps, quadratic skip (96 distinct steps of 1,000, so 96 network evaluations; see
    :func:`~genloop.models.diffusion.schedules.ddim_timesteps`). ``clip_denoised`` clips the predicted x_0 to [-1, 1] at each
    sampling step (images only, as in Ho et al.'s code). ``last_nfe_`` is the number of
    network evaluations per sample of the last :meth:`sample`.
    """

    def __init__(
        self,
        network: NetworkConfig = NetworkConfig(),
        train: TrainConfig = TrainConfig(samples=200_000, batch_size=256, lr=1e-3, warmup_samples=5_000),
        T: int = 1000,
        beta_schedule: BetaKind = "linear",
        sampler: Literal["ancestral", "ddim"] = "ddim",
        sample_steps: int = 100,
        skip: SkipKind = "quadratic",
        eta: float = 0.0,
        clip_denoised: bool = False,
        sample_batch_size: int = 4096,
        init: str | None = None,
    ) -> None:
        if T < 2:
            raise ConfigError(f"T (diffusion steps) must be >= 2, got {T}")
        if not 1 <= sample_steps <= T:
            raise ConfigError(f"sample_steps must be between 1 and T={T}, got {sample_steps}")
        check_option("eta", eta, ge=0)
        check_option("sample_batch_size", sample_batch_size, ge=1)
        self.network = network
        self.train = train
        self.T = T
        self.beta_schedule = beta_schedule
        self.sampler = sampler
        self.sample_steps = sample_steps
        self.skip = skip
        self.eta = eta
        self.clip_denoised = clip_denoised
        self.sample_batch_size = sample_batch_size
        self.init = init
        self.schedule = DDPMSchedule.make(beta_schedule, T)

    def eps_fn(self, net: nn.Module) -> EpsFn:
        """``eps_theta(x_t, t)`` for 0-based integer steps ``t``: ``net(x_t, t / T)``."""

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return net(x_t, ddpm_time_input(t, self.T).to(device=x_t.device, dtype=torch.float32))

        return eps

    def timesteps(self) -> np.ndarray:
        """The 0-based steps visited by the DDIM sampler."""
        return ddim_timesteps(self.T, self.sample_steps, self.skip)

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return ddpm_loss(self.eps_fn(net), x, self.schedule, generator)

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        if self.clip_denoised and np.ndim(X) != 4:
            raise ConfigError("clip_denoised clips to the image range [-1, 1]; it applies to images (n, C, H, W) only")
        return super().fit(X, rng=rng, init=init)

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        device = self.device_of(net)
        like = torch.empty(0, device=device)
        x_T = randn((n, *self.event_shape_), like, generator)
        clip = 1.0 if self.clip_denoised else None
        if self.sampler == "ancestral":
            self.last_nfe_ = self.T
            return ddpm_ancestral_sample(self.eps_fn(net), self.schedule, x_T, generator, clip_x0=clip)
        seq = self.timesteps()
        self.last_nfe_ = len(seq)
        return ddim_sample(self.eps_fn(net), self.schedule, x_T, seq, generator, eta=self.eta, clip_x0=clip)


__all__ = ["DDPM"]
