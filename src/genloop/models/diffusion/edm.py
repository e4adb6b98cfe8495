"""The ``edm`` family: Karras et al. (2022) preconditioned denoiser, loss and Heun sampler.

The shared network plays the raw network F_theta(c_in x; c_noise) of the paper's eq. 7; the
preconditioning, the objective and the sampler are the pieces in :mod:`.objectives` and
:mod:`.samplers`. Sampling runs in float64 with the network in float32, as in EDM's
``generate.py``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from genloop._validation import check_option
from genloop.errors import ConfigError
from genloop.models import register_model
from genloop.models.diffusion.augment import EDM_CIFAR10_AUGMENT, AugmentConfig, augment
from genloop.models.diffusion.objectives import Denoiser, edm_denoise, edm_loss, randn, vp_denoise, vp_loss, vp_sigma
from genloop.models.diffusion.samplers import edm_heun_sample
from genloop.models.diffusion.schedules import edm_sigma_steps
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import NetworkConfig
from genloop.models.neural.trainer import TrainConfig


@register_model("edm")
class EDM(TorchGenerativeModel):
    """EDM (Karras et al. 2022): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise).

    Training: ln(sigma) ~ N(``P_mean``, ``P_std``^2), loss weight lambda(sigma) =
    (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. Sampling: Heun's method (Algorithm 1)
    on ``num_steps`` noise levels of the rho schedule between ``sigma_max`` and ``sigma_min``
    (2 num_steps - 1 network evaluations, ``last_nfe_``); ``S_churn > 0`` adds the stochastic
    churn of Algorithm 2 for sigma in [``S_min``, ``S_max``]. Official recipes: 18 steps for
    CIFAR-10, 40 for FFHQ-64. ``sigma_data`` is the data's standard deviation; ``"auto"``
    (default) takes 0.5 for images in [-1, 1] (EDM's value) and 1.0 for vectors, which the base
    class standardises.

    ``precond="vp"`` uses the VP preconditioning of Song et al. as written in Karras et al.
    Table 1 (for networks trained that way, e.g. EDM's VP baseline snapshot):
    D(x; sigma) = x - sigma F(x / sqrt(sigma^2 + 1); 999 t(sigma)), trained with t ~ U(1e-5, 1)
    and weight 1 / sigma^2; sampling then starts no lower than sigma(1e-5), as EDM's
    ``generate.py`` clamps to the network's range.

    ``augment`` is EDM's non-leaking augmentation (:mod:`genloop.models.diffusion.augment`):
    every training batch is augmented with the explicit training stream and the network gets
    the augmentation labels on its ``augment_dim`` input. ``"auto"`` (default) uses EDM's
    CIFAR-10 recipe (p = 0.12, 9 labels) for the ``songunet`` networks built with
    ``augment_dim: 9`` and EDM preconditioning (the EDM presets, which the official code
    trains and fine-tunes with it) and nothing otherwise; ``"off"`` disables it; an option
    block (``{p: 0.12, xflip: 1e8, ...}``) sets it, for a ``songunet`` whose ``augment_dim``
    equals the number of labels.
    """

    def __init__(
        self,
        network: NetworkConfig = NetworkConfig(),
        train: TrainConfig = TrainConfig(samples=200_000, batch_size=256, lr=1e-3, warmup_samples=5_000),
        sigma_data: float | Literal["auto"] = "auto",
        P_mean: float = -1.2,
        P_std: float = 1.2,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        num_steps: int = 18,
        S_churn: float = 0.0,
        S_min: float = 0.0,
        S_max: float = math.inf,
        S_noise: float = 1.0,
        sample_batch_size: int = 4096,
        init: str | None = None,
        precond: Literal["edm", "vp"] = "edm",
        augment: AugmentConfig | Literal["auto", "off"] = "auto",
    ) -> None:
        if sigma_data != "auto" and sigma_data <= 0:
            raise ConfigError(f"sigma_data must be > 0, got {sigma_data}")
        check_option("P_std", P_std, gt=0)
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        check_option("rho", rho, gt=0)
        check_option("num_steps", num_steps, ge=1)
        if S_churn < 0 or S_noise <= 0 or S_min > S_max:
            raise ConfigError(
                f"need S_churn >= 0, S_noise > 0, S_min <= S_max; got {S_churn}, {S_noise}, {S_min}, {S_max}"
            )
        check_option("sample_batch_size", sample_batch_size, ge=1)
        if network.kind == "songunet":
            from genloop.models.neural.paper_networks import resolve_preset

            name, preset = resolve_preset("songunet", network.preset)
            if preset.precond is not None and preset.precond != precond:
                raise ConfigError(
                    f"network preset {name!r} was trained with {preset.precond!r} preconditioning; set precond: {preset.precond}"
                )
        self.network = network
        self.train = train
        self.sigma_data = sigma_data
        self.P_mean = P_mean
        self.P_std = P_std
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho
        self.num_steps = num_steps
        self.S_churn = S_churn
        self.S_min = S_min
        self.S_max = S_max
        self.S_noise = S_noise
        self.sample_batch_size = sample_batch_size
        self.init = init
        self.precond = precond
        self.augment = augment
        self.augment_config()  # refuse an augmentation the network cannot be conditioned on

    def augment_config(self) -> AugmentConfig | None:
        """The augmentation used in training (None: none); see the class docstring."""
        key = (id(self.augment), id(self.network), self.precond)
        cached = getattr(self, "_augment_cache", None)
        if cached is not None and cached[0] == key:  # resolved once, not in every training step
            return cached[1]
        resolved = self._resolve_augment()
        self._augment_cache = (key, resolved)
        return resolved

    def _resolve_augment(self) -> AugmentConfig | None:
        dim = self._augment_dim()
        if self.augment == "off":
            return None
        if self.augment == "auto":
            return EDM_CIFAR10_AUGMENT if dim == EDM_CIFAR10_AUGMENT.label_dim and self.precond == "edm" else None
        cfg = self.augment if isinstance(self.augment, AugmentConfig) else AugmentConfig.model_validate(self.augment)
        if dim != cfg.label_dim:
            raise ConfigError(
                f"augment gives {cfg.label_dim} labels but the network takes {dim or 'no'} augmentation labels "
                "(network kind songunet with augment_dim equal to the number of enabled transforms)"
            )
        return cfg

    def _augment_dim(self) -> int:
        if self.network.kind != "songunet":
            return 0
        from genloop.models.neural.paper_networks import preset_options

        overrides = {k: getattr(self.network, k) for k in self.network.model_fields_set}
        return int(preset_options("songunet", self.network.preset, overrides).get("augment_dim", 0) or 0)

    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        net = super().build_net(event_shape, generator)
        if self.augment_config() is not None and len(event_shape) == 3:
            net.model.map_augment.requires_grad_(True)  # trained on the augmentation labels
        return net

    def sigma_data_for(self, x: torch.Tensor) -> float:
        """sigma_data for a batch ``x``: the option, or with ``"auto"`` 0.5 for images, 1.0 for vectors."""
        if self.sigma_data != "auto":
            return float(self.sigma_data)
        return 0.5 if x.ndim == 4 else 1.0

    def denoiser(self, net: nn.Module, augment_labels: torch.Tensor | None = None) -> Denoiser:
        """D(x; sigma) with ``net`` as F; the network runs in float32, D in ``x``'s dtype.
        ``augment_labels`` go to the network's augmentation input (training only)."""

        def F(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            if augment_labels is not None:
                return net(x_in.to(torch.float32), c_noise.to(torch.float32), augment_labels=augment_labels).to(x_in.dtype)
            return net(x_in.to(torch.float32), c_noise.to(torch.float32)).to(x_in.dtype)

        def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            if self.precond == "vp":
                return vp_denoise(F, x, sigma)
            return edm_denoise(F, x, sigma, self.sigma_data_for(x))

        return D

    def sigma_steps(self) -> torch.Tensor:
        """The sampler's noise levels (sigma_0 = sigma_max > ... > sigma_min, 0), float64."""
        sigma_min = self.sigma_min
        if self.precond == "vp":
            sigma_min = max(sigma_min, float(vp_sigma(torch.tensor(1e-5, dtype=torch.float64))))
        return edm_sigma_steps(self.num_steps, sigma_min, self.sigma_max, self.rho)

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        labels = None
        aug = self.augment_config() if x.ndim == 4 else None
        if aug is not None:  # EDM loss.py: y, augment_labels = augment_pipe(images)
            x, labels = augment(x, aug, generator)
        if self.precond == "vp":
            return vp_loss(self.denoiser(net, labels), x, generator)
        return edm_loss(
            self.denoiser(net, labels), x, generator, sigma_data=self.sigma_data_for(x), P_mean=self.P_mean,
            P_std=self.P_std,
        )

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        device = self.device_of(net)
        like = torch.empty(0, device=device, dtype=torch.float64)
        latents = randn((n, *self.event_shape_), like, generator)
        x, nfe = edm_heun_sample(
            self.denoiser(net), latents, self.sigma_steps(), generator,
            S_churn=self.S_churn, S_min=self.S_min, S_max=self.S_max, S_noise=self.S_noise,
        )
        self.last_nfe_ = nfe
        return x


__all__ = ["EDM"]
