"""Normalizing flows with an exact likelihood (``"flow"``), built on zuko.

The paper's 2-D toy experiments retrain a normalizing flow on its own samples. A flow is an
invertible map ``f`` from data to a standard normal base, so (change of variables)

    log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|,

trained by maximum likelihood (per-example loss ``-log p(x)``) through the shared training
loop, and sampled as ``x = f⁻¹(z)``, ``z ~ N(0, I)``. Three architectures from zuko:

* ``"nsf"`` — neural spline flow (Durkan et al. 2019): autoregressive monotonic
  rational-quadratic splines (the default);
* ``"maf"`` — masked autoregressive flow (Papamakarios et al. 2017), affine;
* ``"realnvp"`` — affine coupling layers (Dinh et al. 2017).

The flow works on standardised data ``z = (x - shift) / scale`` (see
:mod:`genloop.models.neural.base`), so :meth:`Flow.log_prob` adds the Jacobian of the
standardisation, ``-Σ log scale``. Images are flattened to vectors. Training runs in float32
without autocast (exact likelihoods do not survive bfloat16).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
import zuko
from torch import nn

from genloop._validation import check_array, check_option
from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import init_parameters_, untouched_global_rng
from genloop.models.neural.trainer import TrainConfig

FlowKind = Literal["nsf", "maf", "realnvp"]


def build_flow(
    kind: FlowKind,
    features: int,
    *,
    transforms: int,
    hidden_features: tuple[int, ...],
    bins: int = 8,
    generator: torch.Generator | None = None,
) -> zuko.flows.Flow:
    """The zuko flow of ``kind`` on ``features`` dimensions, initialised from ``generator``."""
    if kind == "realnvp" and features < 2:
        raise ConfigError("flow kind 'realnvp' needs at least 2 features (coupling layers split them)")
    with untouched_global_rng():
        if kind == "nsf":
            flow = zuko.flows.NSF(features, transforms=transforms, hidden_features=hidden_features, bins=bins)
        elif kind == "maf":
            flow = zuko.flows.MAF(features, transforms=transforms, hidden_features=hidden_features)
        else:
            flow = zuko.flows.RealNVP(features, transforms=transforms, hidden_features=hidden_features)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return init_parameters_(flow, generator, others="normal")


def flow_nll(flow: zuko.flows.Flow, x: torch.Tensor) -> torch.Tensor:
    """Per-example negative log-likelihood ``-log p(x)`` of a batch ``(B, *event)``, shape ``(B,)``."""
    return -flow().log_prob(x.reshape(x.shape[0], -1))


@register_model("flow")
class Flow(TorchGenerativeModel):
    """Normalizing flow trained by maximum likelihood; exact ``log_prob``.

    Options: ``kind`` (``"nsf"``, ``"maf"``, ``"realnvp"``), ``transforms`` (number of
    layers), ``hidden_features`` (widths of each layer's conditioner MLP), ``bins`` (spline
    bins, NSF only), ``train`` (the shared :class:`TrainConfig`), ``sample_batch_size``.
    """

    has_log_prob: ClassVar[bool] = True
    amp_safe: ClassVar[bool] = False

    def __init__(
        self,
        kind: FlowKind = "nsf",
        transforms: int = 5,
        hidden_features: tuple[int, ...] = (64, 64),
        bins: int = 8,
        train: TrainConfig = TrainConfig(samples=400_000, batch_size=256, lr=1e-3, grad_clip=5.0),
        sample_batch_size: int = 4096,
    ) -> None:
        check_option("transforms", transforms, ge=1)
        if not hidden_features or any(h < 1 for h in hidden_features):
            raise ConfigError(f"hidden_features must be a non-empty list of positive widths, got {hidden_features}")
        check_option("bins", bins, ge=2)
        check_option("sample_batch_size", sample_batch_size, ge=1)
        if train.sample_precision != "float32":
            raise ConfigError(
                f"train.sample_precision {train.sample_precision!r} is not available for flows: their samples invert "
                "the exact transform in float32 (set train.sample_precision: float32)"
            )
        self.kind = kind
        self.transforms = transforms
        self.hidden_features = tuple(hidden_features)
        self.bins = bins
        self.train = train
        self.sample_batch_size = sample_batch_size

    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        return build_flow(
            self.kind, int(np.prod(event_shape)), transforms=self.transforms,
            hidden_features=self.hidden_features, bins=self.bins, generator=generator,
        )

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return flow_nll(net, x)

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        features = int(np.prod(self.event_shape_))
        z = torch.randn((n, features), generator=generator, device=self.device_of(net))
        return net().transform.inv(z).reshape(n, *self.event_shape_)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log p(x) = log p_flow((x - shift) / scale) - Σ log scale`` for each row, float64."""
        self._check_fitted()
        X = check_array(X, name="X", min_samples=0)
        if tuple(X.shape[1:]) != tuple(self.event_shape_):
            raise DataError(f"X must have events of shape {self.event_shape_}, got {X.shape[1:]}")
        net, device = self._prepare_net()
        out = []
        bs = max(1, int(self.sample_batch_size))
        with torch.no_grad():
            for start in range(0, X.shape[0], bs):
                z = self.to_model_space(X[start : start + bs]).to(device)
                out.append((-flow_nll(net, z)).to("cpu", torch.float64).numpy())
        lp = np.concatenate(out) if out else np.zeros(0)
        return lp - self.log_scale_sum


__all__ = ["Flow", "build_flow", "flow_nll"]
