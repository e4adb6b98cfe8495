"""Conditional flow matching: I-CFM (``"cfm"``) and exact mini-batch OT-CFM (``"otcfm"``).

Lipman et al. 2023, "Flow Matching for Generative Modeling"; Tong et al. 2024, "Improving and
generalizing flow-based generative models with minibatch optimal transport" (the OT-CFM of the
paper's CIFAR-10 experiments). A velocity network ``v_θ(x, t)`` is regressed on the
conditional velocity of a Gaussian path between a source ``x0 ~ N(0, I)`` and a data point
``x1`` (Tong et al., Eq. 14 / 20):

    x_t = (1 - t) x0 + t x1 + σ ε,        u_t = x1 - x0,        t ~ U(0, 1), ε ~ N(0, I)
    L(θ) = E ‖v_θ(x_t, t) - u_t‖²

The pairs ``(x0, x1)`` are independent in I-CFM. In OT-CFM they are drawn from the exact
optimal-transport plan π between the mini-batch of noise and the mini-batch of data with
squared Euclidean cost (POT ``ot.emd``), by sampling index pairs from π with replacement, as
torchcfm's ``OTPlanSampler`` does. Sampling integrates ``dx/dt = v_θ(x, t)`` from ``t = 0``
to ``1`` with torchdiffeq (dopri5 with rtol = atol = 1e-5 in the official recipe, or a
fixed-step Euler / midpoint solver); the network evaluations of the last call to ``sample``
are in ``last_nfe_``.

torchcfm itself is not a dependency: it pulls torchvision and a CUDA build of torch, while
its objective is the few lines below.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import ot
import torch
import torchdiffeq
from torch import nn

from genloop._validation import check_option
from genloop.errors import ConfigError
from genloop.models import register_model
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import NetworkConfig
from genloop.models.neural.trainer import TrainConfig, halflife_from_decay

Solver = Literal["dopri5", "euler", "midpoint"]

#: Options of the official OT-CFM CIFAR-10 recipe (Tong et al.; torchcfm ``train_cifar10.py``,
#: as used by the paper): U-Net with 128 channels, multipliers (1, 2, 2, 2), 2 blocks per level,
#: attention at 16×16, dropout 0.1 (35.7 M parameters); Adam lr 2e-4, batch 128, gradient
#: clipping at 1, EMA 0.9999 per step; σ = 0; dopri5 with rtol = atol = 1e-5. The budget is the
#: paper's fine-tuning budget per generation (0.05 M images). The from-scratch recipe ramps the
#: learning rate over 5000 steps (640 k samples), longer than that budget; for fine-tuning with
#: a restarted optimizer we ramp over 10 k samples (our choice). ``make_model("otcfm",
#: **OTCFM_CIFAR10)``.
OTCFM_CIFAR10: dict[str, Any] = {
    "network": NetworkConfig(
        kind="unet", channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1
    ),
    "train": TrainConfig(
        samples=50_000, batch_size=128, lr=2e-4, warmup_samples=10_000, grad_clip=1.0,
        ema_halflife_samples=halflife_from_decay(0.9999, 128),
    ),
    "sigma": 0.0,
    "solver": "dopri5",
    "rtol": 1e-5,
    "atol": 1e-5,
}


# ---- pieces (objective, coupling, sampler) -----------------------------------------------------
def sample_time(n: int, generator: torch.Generator, *, device: torch.device | None = None) -> torch.Tensor:
    """``t ~ U(0, 1)``, shape ``(n,)``."""
    return torch.rand(n, generator=generator, device=device)


def interpolant(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float, eps: torch.Tensor | None = None) -> torch.Tensor:
    """``x_t = (1 - t) x0 + t x1 + σ ε`` (Tong et al. 2024, Eq. 14), ``t`` of shape ``(B,)``."""
    tb = t.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    xt = (1 - tb) * x0 + tb * x1
    if sigma > 0:
        if eps is None:
            raise ValueError("interpolant: sigma > 0 needs the noise eps")
        xt = xt + sigma * eps
    return xt


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The conditional velocity ``u_t(x | x0, x1) = x1 - x0`` (independent of ``t`` and σ)."""
    return x1 - x0


def cfm_loss(
    net: nn.Module, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-example flow-matching loss ``mean_dims (v_θ(x_t, t) - u_t)²``, shape ``(B,)``."""
    xt = interpolant(x0, x1, t, sigma, eps)
    err = net(xt, t) - target_velocity(x0, x1)
    return err.float().square().reshape(err.shape[0], -1).mean(dim=1)


def ot_plan(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The exact OT plan between uniform empirical measures on ``x0`` and ``x1`` (rows), with
    cost ``‖x0_i - x1_j‖²``: POT's network simplex ``ot.emd``. Shape ``(len(x0), len(x1))``,
    entries sum to 1."""
    a = x0.reshape(x0.shape[0], -1).detach().to("cpu", torch.float64)
    b = x1.reshape(x1.shape[0], -1).detach().to("cpu", torch.float64)
    M = torch.cdist(a, b).square().numpy()
    plan = ot.emd(np.full(len(a), 1.0 / len(a)), np.full(len(b), 1.0 / len(b)), M, numItermax=1_000_000)
    if not np.all(np.isfinite(plan)) or abs(plan.sum() - 1.0) > 1e-6:
        raise FloatingPointError("ot.emd returned an invalid plan (numerical problem in the OT cost)")
    return torch.as_tensor(plan, device=x0.device)


def sample_from_plan(
    plan: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` index pairs ``(i, j)`` drawn with replacement with probabilities ``π_ij``
    (torchcfm ``OTPlanSampler.sample_plan``)."""
    flat = plan.reshape(-1).to(torch.float64)
    choice = torch.multinomial(flat / flat.sum(), n, replacement=True, generator=generator)
    return torch.div(choice, plan.shape[1], rounding_mode="floor"), choice % plan.shape[1]


def ot_couple(x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-pair a mini-batch by the exact OT plan: ``(x0[i], x1[j])`` with ``(i, j) ~ π``."""
    i, j = sample_from_plan(ot_plan(x0, x1), x0.shape[0], generator)
    return x0[i], x1[j]


class _CountingField(nn.Module):
    """``f(t, x) = v_θ(x, t)`` for torchdiffeq, counting evaluations."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.nfe = 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.net(x, t.to(x.dtype).expand(x.shape[0]))


def solve_ode(
    net: nn.Module,
    x0: torch.Tensor,
    *,
    solver: Solver = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int = 100,
) -> tuple[torch.Tensor, int]:
    """Integrate ``dx/dt = v_θ(x, t)`` from ``t = 0`` (``x0``) to ``t = 1``; return ``(x1, nfe)``.

    ``dopri5`` is adaptive (``rtol``, ``atol``); ``euler`` / ``midpoint`` take ``steps`` fixed
    steps (``steps`` / ``2·steps`` evaluations).
    """
    field = _CountingField(net)
    t = torch.tensor([0.0, 1.0], device=x0.device, dtype=x0.dtype)
    if solver == "dopri5":
        traj = torchdiffeq.odeint(field, x0, t, method="dopri5", rtol=rtol, atol=atol)
    else:
        traj = torchdiffeq.odeint(field, x0, t, method=solver, options={"step_size": 1.0 / steps})
    return traj[-1], field.nfe


# ---- the families ---------------------------------------------------------------------------------
class _FlowMatching(TorchGenerativeModel):
    coupling: str = "independent"

    def __init__(
        self,
        network: NetworkConfig = NetworkConfig(),
        train: TrainConfig = TrainConfig(samples=200_000, batch_size=256, lr=1e-3, warmup_samples=5_000),
        sigma: float = 0.0,
        solver: Solver = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int = 100,
        sample_batch_size: int = 4096,
        init: str | None = None,
    ) -> None:
        check_option("sigma", sigma, ge=0)
        check_option("steps", steps, ge=1)
        if rtol <= 0 or atol <= 0:
            raise ConfigError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
        check_option("sample_batch_size", sample_batch_size, ge=1)
        self.network = network
        self.train = train
        self.sigma = sigma
        self.solver = solver
        self.rtol = rtol
        self.atol = atol
        self.steps = steps
        self.sample_batch_size = sample_batch_size
        self.init = init

    def couple(self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs ``(x0, x1)`` of the coupling (identity: independent coupling)."""
        return x0, x1

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x1 = x
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        x0, x1 = self.couple(x0, x1, generator)
        t = sample_time(x1.shape[0], generator, device=x1.device)
        eps = (
            torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype) if self.sigma > 0 else None
        )
        return cfm_loss(net, x0, x1, t, self.sigma, eps)

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        device = self.device_of(net)
        x0 = torch.randn((n, *self.event_shape_), generator=generator, device=device)
        x1, nfe = solve_ode(net, x0, solver=self.solver, rtol=self.rtol, atol=self.atol, steps=self.steps)
        self._nfes.append(nfe)
        return x1

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples by ODE solve; ``last_nfe_`` is the network evaluations per sample
        (mean over the batches of this call)."""
        self._nfes: list[int] = []
        out = super().sample(n, rng=rng)
        self.nfe_per_batch_ = list(self._nfes)
        self.last_nfe_ = int(round(float(np.mean(self._nfes)))) if self._nfes else 0
        return out


@register_model("cfm")
class CFM(_FlowMatching):
    """Conditional flow matching with the independent coupling (I-CFM, Tong et al. 2024)."""


@register_model("otcfm")
class OTCFM(_FlowMatching):
    """Flow matching with the exact mini-batch OT coupling (OT-CFM, Tong et al. 2024).

    Official CIFAR-10 recipe (paper §2.3): Adam lr 2e-4, batch 128, grad clip 1, EMA 0.9999
    per step (``ema_halflife_samples = halflife_from_decay(0.9999, 128)`` ≈ 887 k), σ = 0,
    dopri5 with rtol = atol = 1e-5.
    """

    coupling = "ot"

    def couple(self, x0: torch.Tensor, x1: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return ot_couple(x0, x1, generator)


__all__ = [
    "OTCFM_CIFAR10",
    "CFM",
    "OTCFM",
    "interpolant",
    "target_velocity",
    "cfm_loss",
    "ot_plan",
    "sample_from_plan",
    "ot_couple",
    "solve_ode",
    "sample_time",
]
