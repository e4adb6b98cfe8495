"""Denoiser / velocity networks shared by the neural families (DDPM, EDM, CFM).

Two architectures, both called as ``net(x, t)`` and returning a tensor shaped like ``x``:

* :class:`MLPNet` for vectors ``x`` of shape ``(B, d)``;
* :class:`UNet` for images ``x`` of shape ``(B, C, H, W)`` — residual blocks with GroupNorm, a
  time embedding added in every block, self-attention at chosen resolutions, channel
  multipliers and dropout, in the style of DDPM / ADM / EDM's ``SongUNet`` (``ddpmpp``).

``t`` is one scalar per example, shape ``(B,)``: the flow-matching time, a DDPM step
``t / T`` or EDM's ``c_noise``. It is embedded with sinusoidal position features of
``time_scale * t`` (Vaswani et al. 2017; DDPM's embedding of integer steps 0..999 is recovered
with ``t`` in [0, 1] and the default ``time_scale = 1000``) or with random Fourier features
(Tancik et al. 2020; NCSN++), then mapped by a small MLP.

Parameters are initialised from an explicit ``torch.Generator`` (:func:`init_parameters_`), so a
network is a deterministic function of its seed and nothing touches torch's global RNG.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from genloop.errors import ConfigError

Activation = Literal["silu", "relu", "gelu", "tanh"]


class NetworkConfig(pydantic.BaseModel):
    """Option group of the network of a neural family.

    ``kind="auto"`` picks :class:`MLPNet` for 1-D events ``(d,)`` and :class:`UNet` for images
    ``(C, H, W)``. The MLP fields (``hidden``, ``depth``) and the U-Net fields (``channels``,
    ``channel_mult``, ``num_res_blocks``, ``attn_resolutions``, ``dropout``, ``norm_groups``)
    sit side by side; each architecture reads its own. The defaults are small, for 2-D toy
    data and 8×8 / 28×28 digits on a CPU; :data:`UNET_CIFAR10` and :data:`UNET_FFHQ64` give the
    scale of the paper's image experiments.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: Literal["auto", "mlp", "unet", "songunet", "adm", "ddpm"] = "auto"
    #: a public network of the paper's experiments (kinds ``songunet``, ``adm``, ``ddpm``; see
    #: :mod:`genloop.models.neural.paper_networks`); U-Net fields set next to it override its sizes
    preset: str | None = None
    # time embedding (both)
    embedding: Literal["positional", "fourier"] = "positional"
    embed_dim: int = pydantic.Field(64, ge=2)
    time_scale: float = pydantic.Field(1000.0, gt=0)
    fourier_scale: float = pydantic.Field(16.0, gt=0)
    activation: Activation = "silu"
    # MLP
    hidden: int = pydantic.Field(256, ge=1)
    depth: int = pydantic.Field(3, ge=1)
    # U-Net
    channels: int = pydantic.Field(32, ge=1)
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = pydantic.Field(1, ge=1)
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = pydantic.Field(0.0, ge=0.0, lt=1.0)
    norm_groups: int = pydantic.Field(32, ge=1)
    head_channels: int = pydantic.Field(64, ge=1)

    @pydantic.field_validator("channel_mult")
    @classmethod
    def _check_mult(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(m < 1 for m in v):
            raise ValueError("channel_mult must be a non-empty list of positive integers")
        return v

    @pydantic.model_validator(mode="after")
    def _check_preset(self) -> NetworkConfig:
        from genloop.models.neural.paper_networks import PAPER_KINDS, resolve_preset

        if self.kind in PAPER_KINDS:
            resolve_preset(self.kind, self.preset)
        elif self.preset is not None:
            raise ValueError(f"'preset' applies to the network kinds {', '.join(PAPER_KINDS)}, not {self.kind!r}")
        return self

    @pydantic.field_validator("embed_dim")
    @classmethod
    def _check_even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("embed_dim must be even (cosine and sine halves)")
        return v


#: genloop's U-Net at the scale of the CIFAR-10 32×32 experiments (EDM ``ddpmpp`` sizes: 128
#: channels, multipliers (2, 2, 2), 4 blocks per level, attention at 16×16, dropout 0.13;
#: 54.2 M parameters with these blocks). EDM's exact network, which its public checkpoint
#: loads into, is ``NetworkConfig(kind="songunet", preset="edm-cifar10-uncond-vp")`` (55.7 M).
UNET_CIFAR10 = NetworkConfig(
    kind="unet", channels=128, channel_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.13
)
#: U-Net at the scale of the FFHQ 64×64 experiments (EDM ``ddpmpp``, ``cres=1,2,2,2``, dropout 0.05).
UNET_FFHQ64 = NetworkConfig(
    kind="unet", channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,), dropout=0.05
)


def _activation(name: Activation) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[name]()


# ---- time embedding ---------------------------------------------------------------------------
class PositionalEmbedding(nn.Module):
    """Sinusoidal features ``[cos(s t ω_i), sin(s t ω_i)]`` with ``ω_i = 10000^(-i/(dim/2))``.

    Equation (Vaswani et al. 2017, §3.5) as used for the diffusion step in DDPM, with ``s`` =
    ``time_scale``.
    """

    def __init__(self, dim: int, time_scale: float = 1000.0, max_positions: float = 10_000.0) -> None:
        super().__init__()
        half = dim // 2
        freqs = max_positions ** (-torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs)
        self.time_scale = float(time_scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = (self.time_scale * t.to(self.freqs.dtype))[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos(2π t b_i), sin(2π t b_i)]``, ``b_i ~ N(0, scale²)`` fixed."""

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.freqs.copy_(torch.randn(self.freqs.shape, generator=generator) * self.scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = (2 * math.pi * t.to(self.freqs.dtype))[:, None] * self.freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


def _time_embedding(cfg: NetworkConfig) -> nn.Module:
    if cfg.embedding == "positional":
        return PositionalEmbedding(cfg.embed_dim, cfg.time_scale)
    return FourierEmbedding(cfg.embed_dim, cfg.fourier_scale)


# ---- MLP ----------------------------------------------------------------------------------------
class MLPNet(nn.Module):
    """``f(x, t)`` for vectors: ``[x, MLP(emb(t))]`` through ``depth`` hidden layers of width ``hidden``.

    Input ``x`` of shape ``(B, d)`` and ``t`` of shape ``(B,)``; output ``(B, d)``.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        depth: int = 3,
        embed_dim: int = 64,
        activation: Activation = "silu",
        embedding: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.embed = embedding if embedding is not None else PositionalEmbedding(embed_dim)
        self.embed_mlp = nn.Sequential(nn.Linear(embed_dim, hidden), _activation(activation))
        layers: list[nn.Module] = [nn.Linear(dim + hidden, hidden), _activation(activation)]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), _activation(activation)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _broadcast_t(t, x)
        h = torch.cat([x, self.embed_mlp(self.embed(t)).to(x.dtype)], dim=1)
        return self.out(self.body(h))


# ---- U-Net --------------------------------------------------------------------------------------
def _groups(channels: int, max_groups: int) -> int:
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """Residual block: GN → act → conv → (+ emb) → GN → act → dropout → conv, plus a skip."""

    def __init__(
        self, cin: int, cout: int, emb_ch: int, *, dropout: float, groups: int, act: Activation
    ) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_ch, cout)
        self.norm1 = nn.GroupNorm(_groups(cout, groups), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv1.small_init = True  # type: ignore[assignment]  # EDM's init_zero (weight 1e-5)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = _activation(act)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self.act(self.norm0(x)))
        h = h + self.affine(emb)[:, :, None, None].to(h.dtype)
        h = self.conv1(self.dropout(self.act(self.norm1(h))))
        return (self.skip(x) + h) * math.sqrt(0.5)  # EDM's skip_scale keeps variance constant


class AttnBlock(nn.Module):
    """Multi-head self-attention over the ``H·W`` positions, residual."""

    def __init__(self, ch: int, *, groups: int, head_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch, groups), ch)
        self.heads = max(1, ch // head_channels)
        while ch % self.heads:
            self.heads -= 1
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        self.proj.small_init = True  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        a = a.transpose(-1, -2).reshape(B, C, H, W)
        return (x + self.proj(a)) * math.sqrt(0.5)


class UNet(nn.Module):
    """U-Net ``f(x, t)`` for images ``x`` of shape ``(B, C, H, W)``; output shaped like ``x``.

    Level ``i`` works at resolution ``H / 2^i`` with ``channels * channel_mult[i]`` channels and
    ``num_res_blocks`` residual blocks (encoder) / ``num_res_blocks + 1`` (decoder, with skip
    connections); self-attention follows each block whose resolution is in
    ``attn_resolutions`` and sits in the middle. Odd sizes are handled (upsampling targets the
    skip's size), so 28×28 MNIST works with three levels (28, 14, 7).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        resolution: int,
        channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.0,
        norm_groups: int = 32,
        head_channels: int = 64,
        embed_dim: int = 64,
        activation: Activation = "silu",
        embedding: nn.Module | None = None,
    ) -> None:
        super().__init__()
        emb_ch = 4 * channels
        self.embed = embedding if embedding is not None else PositionalEmbedding(embed_dim)
        self.embed_mlp = nn.Sequential(
            nn.Linear(embed_dim, emb_ch), _activation(activation), nn.Linear(emb_ch, emb_ch), _activation(activation)
        )
        kw = dict(dropout=dropout, groups=norm_groups, act=activation)
        self.conv_in = nn.Conv2d(in_channels, channels * channel_mult[0], 3, padding=1)
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        skips = [channels * channel_mult[0]]
        ch, res = channels * channel_mult[0], resolution
        for level, mult in enumerate(channel_mult):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, channels * mult, emb_ch, **kw))  # type: ignore[arg-type]
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch, groups=norm_groups, head_channels=head_channels))
                skips.append(ch)
            self.enc.append(blocks)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
                res = (res + 1) // 2
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_ch, **kw),  # type: ignore[arg-type]
                AttnBlock(ch, groups=norm_groups, head_channels=head_channels),
                ResBlock(ch, ch, emb_ch, **kw),  # type: ignore[arg-type]
            ]
        )
        self.dec = nn.ModuleList()
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(ch + skips.pop(), channels * mult, emb_ch, **kw))  # type: ignore[arg-type]
                ch = channels * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch, groups=norm_groups, head_channels=head_channels))
            self.dec.append(blocks)
            if level > 0:
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
                res = res * 2
        self.norm_out = nn.GroupNorm(_groups(ch, norm_groups), ch)
        self.act_out = _activation(activation)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        self.conv_out.small_init = True  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _broadcast_t(t, x)
        emb = self.embed_mlp(self.embed(t))
        h = self.conv_in(x)
        hs = [h]
        for level, blocks in enumerate(self.enc):
            for block in blocks:
                h = block(h, emb) if isinstance(block, ResBlock) else block(h)
                if isinstance(block, ResBlock):
                    hs.append(h)
            if level < len(self.down):
                h = self.down[level](h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        for i, blocks in enumerate(self.dec):
            for block in blocks:
                if isinstance(block, ResBlock):
                    h = block(torch.cat([h, hs.pop()], dim=1), emb)
                else:
                    h = block(h)
            if i < len(self.up):
                h = self.up[i](F.interpolate(h, size=hs[-1].shape[-2:], mode="nearest"))
        return self.conv_out(self.act_out(self.norm_out(h)))


def _broadcast_t(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a ``(B,)`` tensor: a scalar (solvers pass one) is broadcast over the batch."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t.reshape(x.shape[0])


# ---- construction and initialisation ------------------------------------------------------------
def build_network(
    cfg: NetworkConfig, event_shape: tuple[int, ...], *, generator: torch.Generator | None = None
) -> nn.Module:
    """The network of ``cfg`` for events of shape ``event_shape`` (``(d,)`` or ``(C, H, W)``).

    With ``generator`` the parameters are initialised from it (:func:`init_parameters_`);
    without, a fixed seed 0 is used, so the result is still deterministic.
    """
    kind = cfg.kind
    if kind in ("songunet", "adm", "ddpm"):
        from genloop.models.neural.paper_networks import build_paper_network

        overrides = {k: getattr(cfg, k) for k in cfg.model_fields_set}
        with untouched_global_rng():
            net = build_paper_network(kind, cfg.preset, overrides, tuple(event_shape), time_scale=cfg.time_scale)
        init_parameters_(net, generator if generator is not None else torch.Generator().manual_seed(0))
        return net
    if kind == "auto":
        if len(event_shape) == 1:
            kind = "mlp"
        elif len(event_shape) == 3:
            kind = "unet"
        else:
            raise ConfigError(f"network kind 'auto' needs events of shape (d,) or (C, H, W), got {event_shape}")
    with untouched_global_rng():  # torch's constructors draw a default init we overwrite
        embedding = _time_embedding(cfg)
        if kind == "mlp":
            if len(event_shape) != 1:
                raise ConfigError(f"network kind 'mlp' needs vector events (d,), got shape {event_shape}")
            net: nn.Module = MLPNet(
                event_shape[0], hidden=cfg.hidden, depth=cfg.depth, embed_dim=cfg.embed_dim,
                activation=cfg.activation, embedding=embedding,
            )
        else:
            if len(event_shape) != 3:
                raise ConfigError(f"network kind 'unet' needs image events (C, H, W), got shape {event_shape}")
            C, H, W = event_shape
            net = UNet(
                C, resolution=max(H, W), channels=cfg.channels, channel_mult=cfg.channel_mult,
                num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions, dropout=cfg.dropout,
                norm_groups=cfg.norm_groups, head_channels=cfg.head_channels, embed_dim=cfg.embed_dim,
                activation=cfg.activation, embedding=embedding,
            )
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    init_parameters_(net, generator)
    return net


def untouched_global_rng() -> contextlib.AbstractContextManager[None]:
    """Run module constructors without changing torch's global CPU RNG state.

    ``nn.Linear`` and friends draw a default initialisation from the global RNG when they are
    built; :func:`init_parameters_` overwrites it from an explicit generator, and this context
    restores the global state afterwards, so building a network has no side effect.
    """
    return torch.random.fork_rng(devices=[])


def init_parameters_(
    module: nn.Module, generator: torch.Generator, *, others: Literal["raise", "normal"] = "raise"
) -> nn.Module:
    """Re-initialise every ``Linear`` / ``Conv`` / norm layer of ``module`` from ``generator``.

    Linear and convolution layers get PyTorch's default scheme (Kaiming-uniform weights with
    ``a = √5``, biases ``U(±1/√fan_in)``), drawn from ``generator`` instead of the global RNG;
    layers flagged ``small_init`` (last convolution of a block, output layer) are scaled by
    1e-5, EDM's ``init_zero``; norms get ones / zeros; modules with a
    ``reset_parameters_with(generator)`` method (random Fourier features) use it. Any other
    parameter raises (``others="raise"``), so nothing is left on the global RNG silently, or
    is drawn from N(0, 1) (``others="normal"``: zuko's element-wise transforms). Returns
    ``module``.
    """
    covered: set[int] = set()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if getattr(m, "small_init", False):
                    m.weight.mul_(1e-5)
                covered.add(id(m.weight))
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
                    if getattr(m, "small_init", False):
                        m.bias.zero_()
                    covered.add(id(m.bias))
            elif type(m).__name__ == "Linear" and isinstance(getattr(m, "weight", None), nn.Parameter):
                # other libraries' linear layers (zuko.nn.Linear, possibly stacked): their own
                # scheme, U(±1/√fan_in) for weight and bias, drawn from the generator
                bound = 1 / math.sqrt(m.weight.shape[-1])
                nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                covered.add(id(m.weight))
                if getattr(m, "bias", None) is not None:
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
                    covered.add(id(m.bias))
            elif isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    covered.add(id(m.weight))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
                    covered.add(id(m.bias))
            reset = getattr(m, "reset_parameters_with", None)
            if callable(reset):
                reset(generator)
                covered.update(id(p) for p in m.parameters(recurse=False))
    missing = [name for name, p in module.named_parameters() if id(p) not in covered]
    if missing and others == "normal":
        with torch.no_grad():
            for name, p in module.named_parameters():
                if id(p) not in covered:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
        missing = []
    if missing:
        raise TypeError(f"init_parameters_ does not know how to initialise: {', '.join(missing)}")
    return module


__all__ = [
    "NetworkConfig",
    "MLPNet",
    "UNet",
    "PositionalEmbedding",
    "FourierEmbedding",
    "build_network",
    "init_parameters_",
    "untouched_global_rng",
    "UNET_CIFAR10",
    "UNET_FFHQ64",
]
