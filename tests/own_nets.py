"""Small torch networks, a loss and a sampler for the ``torch-module`` family (tests only; import path ``own_nets:...``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyMLP(nn.Module):
    """net(x, t): an MLP on [x, t] for vector events (d,), output of x's shape."""

    def __init__(self, event_shape: tuple[int, ...], hidden: int = 32) -> None:
        super().__init__()
        d = int(event_shape[0])
        self.body = nn.Sequential(nn.Linear(d + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1).to(x.dtype).expand(x.shape[0], 1)
        return self.body(torch.cat([x, t], dim=1))


def denoising_loss(net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ε-prediction at a uniform noise level σ ∈ (0, 1): ‖net(x + σε, σ) − ε‖² per example."""
    sigma = torch.rand((x.shape[0], 1), generator=generator, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return (net(x + sigma * eps, sigma.squeeze(1)) - eps).square().mean(dim=1)


def one_step_sampler(net: nn.Module, n: int, event_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """x = z − σ·net(z, σ) at σ = 1 (one Tweedie step from pure noise)."""
    z = torch.randn((n, *event_shape), generator=generator)
    sigma = torch.ones(n)
    return z - net(z, sigma)


def not_a_network(event_shape: tuple[int, ...]) -> list[int]:
    """A factory that builds no nn.Module (for the error test)."""
    return list(event_shape)
