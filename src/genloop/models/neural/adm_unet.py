"""The ADM-style ``UNetModel`` (Dhariwal & Nichol 2021) as used by OT-CFM's CIFAR-10 model.

Tong et al. (2024) train their CIFAR-10 flow-matching models with guided-diffusion's U-Net
(through torchcfm's ``UNetModelWrapper``: 128 channels, multipliers (1, 2, 2, 2), 2 residual
blocks per level, attention at 16×16 with 64 channels per head, dropout 0.1; 35.7 M
parameters); the genloop paper fine-tunes that checkpoint. This is an independent
implementation with the same module names and parameter shapes (``time_embed.*``,
``input_blocks.*``, ``middle_block.*``, ``output_blocks.*``, ``out.*``) so the checkpoint's
``ema_model`` state dict loads one to one.

Architecture: sinusoidal embedding of ``t`` (``[cos(t ω_i), sin(t ω_i)]``, ``ω_i =
10000^(-i/half)``, ``t`` used as given: flow-matching time in [0, 1]) → Linear → SiLU → Linear;
residual blocks GN → SiLU → conv, ``+ Linear(SiLU(emb))``, GN → SiLU → dropout → conv, plus a
1×1 skip when the width changes; self-attention with guided-diffusion's legacy head order and
``1/⁴√c`` scaling of q and k; 3×3 stride-2 convolutions down, nearest ×2 + 3×3 convolution up.
Group norms (32 groups) run in float32. Called as ``net(x, t)`` (torchcfm calls ``net(t, x)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """Group norm computed in float32 (guided-diffusion's ``GroupNorm32``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[cos(t ω_i), sin(t ω_i)]``, ``ω_i = max_period^(-i/half)``, ``i < half = dim // 2``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _zero(module: nn.Module) -> nn.Module:
    module.small_init = True  # type: ignore[assignment]  # guided-diffusion's zero_module (genloop: x 1e-5)
    return module


class ResBlock(nn.Module):
    """``skip(x) + out_layers(in_layers(x) + emb_layers(emb))`` (no scale-shift norm)."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 groups: int = 32) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(groups, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(groups, out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Self-attention over positions with ``channels / num_head_channels`` heads (legacy order:
    the qkv channels are grouped per head as [q, k, v])."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, groups: int = 32) -> None:
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        q, k, v = qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class Downsample(nn.Module):
    """3×3 convolution with stride 2 (``op``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 convolution (``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """A sequence whose residual blocks also receive the embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel`` (unconditional, no scale-shift norm, conv resampling).

    ``attention_ds`` are the downsampling rates with attention (2 = 16×16 for 32×32 inputs).
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_ds: tuple[int, ...], dropout: float = 0.0, channel_mult: tuple[int, ...] = (1, 2, 2, 2),
                 num_heads: int = 1, num_head_channels: int = -1, groups: int = 32) -> None:
        super().__init__()
        self.image_size = image_size
        self.model_channels = model_channels
        emb = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        attn = dict(num_heads=num_heads, num_head_channels=num_head_channels, groups=groups)
        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb, dropout, int(mult * model_channels), groups)]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, **attn))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb, dropout, groups=groups), AttentionBlock(ch, **attn), ResBlock(ch, emb, dropout, groups=groups)
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb, dropout, int(model_channels * mult), groups)]
                ch = int(model_channels * mult)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, **attn))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), _zero(nn.Conv2d(input_ch, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t.reshape(x.shape[0]), self.model_channels))
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


__all__ = ["ADMUNet", "ResBlock", "AttentionBlock", "timestep_embedding", "GroupNorm32"]
