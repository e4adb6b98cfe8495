"""The DDPM CIFAR-10 network (Ho et al. 2020) with the key names of the PyTorch DDIM code.

The genloop paper's DDPM runs use the DDIM code base (Song et al. 2021), whose ``Model`` is a
PyTorch port of Ho et al.'s TensorFlow U-Net and whose converted CIFAR-10 checkpoint
(``model-790000.ckpt``, a plain ``state_dict``) is the public one; pesser/pytorch_diffusion
uses the same module names. This is an independent implementation with those names and
shapes (``temb.dense.*``, ``conv_in``, ``down.{i}.block.{j}.*``, ``down.{i}.attn.{j}.*``,
``down.{i}.downsample.conv``, ``mid.*``, ``up.{i}.*``, ``norm_out``, ``conv_out``); CIFAR-10:
128 channels, multipliers (1, 2, 2, 2), 2 blocks, attention at 16×16, dropout 0.1 (35.7 M).

We do not depend on ``diffusers`` for it: its ``UNet2DModel`` uses other parameter names (the
checkpoint needs a key map either way), it brings ``huggingface_hub`` and network-oriented
loading, and the network is 200 lines.

Differences from the other U-Nets that matter for loading: the step embedding is
``[sin(t ω_i), cos(t ω_i)]`` with ``ω_i = 10000^(-i/(half-1))`` of the *integer* step
``t ∈ {0, …, 999}``; group norms use ``eps = 1e-6``; down-sampling pads (0, 1, 0, 1) and uses a
stride-2 3×3 convolution without padding. genloop's ``ddpm`` family passes ``t / T``, so the
network multiplies by ``time_scale = T`` and rounds to the integer step (``round_time``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def get_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[sin(t ω_i), cos(t ω_i)]``, ``ω_i = exp(-i ln(10000)/(half-1))`` (Ho et al.'s embedding)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(10000) / (half - 1)))
    emb = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return F.pad(emb, (0, 1, 0, 0)) if dim % 2 else emb


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GN → swish → conv → (+ temb_proj(swish(temb))) → GN → swish → dropout → conv, plus a 1×1
    ``nin_shortcut`` when the width changes (no rescaling)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv2.small_init = True  # type: ignore[assignment]  # Ho et al. initialise it at zero scale
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if self.in_channels != self.out_channels else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention with 1×1 ``q``, ``k``, ``v``, ``proj_out`` convolutions."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.proj_out.small_init = True  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        w = torch.bmm(q.reshape(b, c, hh * ww).permute(0, 2, 1), k.reshape(b, c, hh * ww)) * (int(c) ** -0.5)
        w = torch.softmax(w, dim=2)
        out = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class _Down(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Up(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DDPMUNet(nn.Module):
    """Ho et al.'s U-Net, ``forward(x, t)`` with ``t`` the network time input (see module docs)."""

    def __init__(self, *, resolution: int, in_channels: int, out_ch: int, ch: int = 128,
                 ch_mult: tuple[int, ...] = (1, 2, 2, 2), num_res_blocks: int = 2, attn_resolutions: tuple[int, ...] = (16,),
                 dropout: float = 0.1, groups: int = 32, time_scale: float = 1000.0, round_time: bool = True) -> None:
        super().__init__()
        self.ch, self.resolution = ch, resolution
        self.time_scale, self.round_time = time_scale, round_time
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        temb_ch = ch * 4
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        curr_res = resolution
        in_ch_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, temb_ch, dropout, groups))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, groups))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i != self.num_resolutions - 1:
                down.downsample = _Down(block_in)
                curr_res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, temb_ch, dropout, groups)
        self.mid.attn_1 = AttnBlock(block_in, groups)
        self.mid.block_2 = ResnetBlock(block_in, block_in, temb_ch, dropout, groups)
        ups: list[nn.Module] = []
        for i in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = skip_in = ch * ch_mult[i]
            for j in range(num_res_blocks + 1):
                if j == num_res_blocks:
                    skip_in = ch * in_ch_mult[i]
                block.append(ResnetBlock(block_in + skip_in, block_out, temb_ch, dropout, groups))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, groups))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i != 0:
                up.upsample = _Up(block_in)
                curr_res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = _norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)
        self.conv_out.small_init = True  # type: ignore[assignment]

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=torch.float64)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        step = t.reshape(x.shape[0]) * self.time_scale
        if self.round_time:
            step = torch.round(step)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](get_timestep_embedding(step, self.ch))))
        hs = [self.conv_in(x)]
        for i in range(self.num_resolutions):
            for j in range(self.num_res_blocks):
                h = self.down[i].block[j](hs[-1], temb)
                if len(self.down[i].attn) > 0:
                    h = self.down[i].attn[j](h)
                hs.append(h)
            if i != self.num_resolutions - 1:
                hs.append(self.down[i].downsample(hs[-1]))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)
        for i in reversed(range(self.num_resolutions)):
            for j in range(self.num_res_blocks + 1):
                h = self.up[i].block[j](torch.cat([h, hs.pop()], dim=1), temb)
                if len(self.up[i].attn) > 0:
                    h = self.up[i].attn[j](h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


__all__ = ["DDPMUNet", "ResnetBlock", "AttnBlock", "get_timestep_embedding"]
