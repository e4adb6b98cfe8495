"""EDM's ``SongUNet`` (DDPM++ / NCSN++) and its ``EDMPrecond`` / ``VPPrecond`` wrappers.

Karras et al. (2022) re-implemented the DDPM++ and NCSN++ networks of Song et al. (2021) in one
class; the genloop paper fine-tunes EDM's public CIFAR-10 and FFHQ-64 snapshots of it. This is
an independent implementation written from the paper and the public architecture description,
with the *same module names and parameter shapes*, so a state dict of the official network
loads one to one (``tests/test_networks_paper.py`` checks the names and shapes against a list
recorded from the official code, and the outputs against outputs recorded from it).

Pieces (names as in the official code, because the state-dict keys are made of them):

* :class:`Linear`, :class:`Conv2d` (optional 2× up/down-sampling with a separable FIR
  ``resample_filter``, [1, 1] for DDPM++ and [1, 3, 3, 1] for NCSN++), :class:`GroupNorm`
  (``min(32, C/4)`` groups);
* :class:`UNetBlock`: GN → SiLU → conv → (+ affine(emb)) → GN → SiLU → dropout → conv, plus
  skip, times ``skip_scale = √½``; optional single-head self-attention;
* :class:`SongUNet`: noise embedding (positional with endpoint for DDPM++, random Fourier for
  NCSN++), a 2-layer mapping network, encoder ``{res}x{res}_conv|_down|_block{i}`` and decoder
  ``{res}x{res}_in0|_in1|_up|_block{i}|_aux_norm|_aux_conv``;
* :class:`EDMPrecond` (Karras et al. Table 1): ``D(x; σ) = c_skip x + c_out F(c_in x; c_noise)``
  with ``c_noise = ln(σ)/4``; :class:`VPPrecond` (Song et al.'s VP as in Karras et al. Table 1):
  ``c_skip = 1``, ``c_out = -σ``, ``c_in = 1/√(σ²+1)``, ``c_noise = (M-1) σ⁻¹(σ)``.

Parameters are initialised from an explicit generator by ``reset_parameters_with`` with the
official schemes (Xavier-uniform; ``init_zero`` layers scaled by 1e-5; attention qkv by √0.2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

InitMode = Literal["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]


def weight_init(
    shape: tuple[int, ...], mode: InitMode, fan_in: int, fan_out: int, generator: torch.Generator
) -> torch.Tensor:
    """The four initialisation schemes of the official code, drawn from ``generator``."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(shape, generator=generator) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(shape, generator=generator)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(shape, generator=generator) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(shape, generator=generator)
    raise ValueError(f"unknown init mode {mode!r}")


class Linear(nn.Module):
    """``y = x Wᵀ + b`` with the official initialisation options."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, init_mode: InitMode = "kaiming_normal",
                 init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.init = (init_mode, init_weight, init_bias)
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        mode, w, b = self.init
        kw = dict(mode=mode, fan_in=self.in_features, fan_out=self.out_features, generator=generator)
        with torch.no_grad():
            self.weight.copy_(weight_init(tuple(self.weight.shape), **kw) * w)  # type: ignore[arg-type]
            if self.bias is not None:
                self.bias.copy_(weight_init(tuple(self.bias.shape), **kw) * b)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.weight.to(x.dtype).t()
        return x + self.bias.to(x.dtype) if self.bias is not None else x


class Conv2d(nn.Module):
    """Convolution (``kernel`` 0 = none) with optional 2× up- or down-sampling by the FIR
    filter ``f fᵀ / (Σf)²`` (``resample_filter`` f); ``fused_resample`` applies the filter
    after (down) or before (up) the convolution in one pass, as NCSN++'s residual encoder."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter: tuple[int, ...] = (1, 1), fused_resample: bool = False, *,
                 init_mode: InitMode = "kaiming_normal", init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        super().__init__()
        if up and down:
            raise ValueError("a convolution cannot both up- and down-sample")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        self.kernel = kernel
        self.init = (init_mode, init_weight, init_bias)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel, kernel)) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        f = torch.as_tensor(resample_filter, dtype=torch.float32)
        f = torch.outer(f, f)[None, None] / f.sum().square()
        self.register_buffer("resample_filter", f if up or down else None)

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        if self.weight is None:
            return
        mode, w, b = self.init
        k = self.kernel
        kw = dict(mode=mode, fan_in=self.in_channels * k * k, fan_out=self.out_channels * k * k, generator=generator)
        with torch.no_grad():
            self.weight.copy_(weight_init(tuple(self.weight.shape), **kw) * w)  # type: ignore[arg-type]
            if self.bias is not None:
                self.bias.copy_(weight_init(tuple(self.bias.shape), **kw) * b)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        f = self.resample_filter.to(x.dtype) if self.resample_filter is not None else None
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            x = F.conv_transpose2d(x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2,
                                   padding=w_pad + f_pad)
            x = F.conv2d(x, w)
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, f.mul(4).tile([self.in_channels, 1, 1, 1]), groups=self.in_channels,
                                       stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if b is not None:
            x = x + b.reshape(1, -1, 1, 1)
        return x


class GroupNorm(nn.Module):
    """Group normalisation with ``min(num_groups, C / min_channels_per_group)`` groups."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = max(1, min(num_groups, num_channels // min_channels_per_group))
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """EDM's unified U-Net block (DDPM++ / NCSN++ / ADM features); see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int | None = None, channels_per_head: int = 64,
                 dropout: float = 0.0, skip_scale: float = 1.0, eps: float = 1e-5,
                 resample_filter: tuple[int, ...] = (1, 1), resample_proj: bool = False, adaptive_scale: bool = True,
                 init: dict | None = None, init_zero: dict | None = None, init_attn: dict | None = None) -> None:
        super().__init__()
        init = init or {}
        init_zero = init_zero if init_zero is not None else {"init_weight": 0.0}
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        self.num_heads = 0 if not attention else (num_heads if num_heads is not None else out_channels // channels_per_head)
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, **(init_attn if init_attn is not None else init))
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (self.skip(orig) if self.skip is not None else orig)) * self.skip_scale
        if self.num_heads:
            B, C = x.shape[:2]
            q, k, v = self.qkv(self.norm2(x)).reshape(B * self.num_heads, C // self.num_heads, 3, -1).unbind(2)
            # softmax(qᵀk / √c) in float32, as the official AttentionOp (also under autocast)
            with torch.autocast(x.device.type, enabled=False):
                w = torch.einsum("ncq,nck->nqk", q.float(), (k / math.sqrt(k.shape[1])).float()).softmax(dim=2)
            a = torch.einsum("nqk,nck->ncq", w.to(v.dtype), v)
            x = (self.proj(a.reshape(*x.shape)) + x) * self.skip_scale
        return x


class PositionalEmbedding(nn.Module):
    """``[cos(x ω_i), sin(x ω_i)]`` with ``ω_i = (1/max_positions)^(i / (half - endpoint))``."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos(2π x b_i), sin(2π x b_i)]``, ``b_i ~ N(0, scale²)`` (a buffer)."""

    def __init__(self, num_channels: int, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = scale
        self.register_buffer("freqs", torch.zeros(num_channels // 2))

    def reset_parameters_with(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.freqs.copy_(torch.randn(self.freqs.shape, generator=generator) * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


class SongUNet(nn.Module):
    """DDPM++ (``embedding_type="positional"``, ``encoder_type="standard"``, filter [1, 1],
    ``channel_mult_noise=1``) or NCSN++ (``"fourier"``, ``"residual"``, [1, 3, 3, 1], 2).

    ``forward(x, noise_labels, class_labels=None, augment_labels=None)`` with ``x`` of shape
    ``(B, in_channels, R, R)`` and ``noise_labels`` of shape ``(B,)`` (EDM's ``c_noise``).
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        embedding_type: Literal["positional", "fourier"] = "positional",
        channel_mult_noise: int = 1,
        encoder_type: Literal["standard", "skip", "residual"] = "standard",
        decoder_type: Literal["standard", "skip"] = "standard",
        resample_filter: tuple[int, ...] = (1, 1),
    ) -> None:
        super().__init__()
        if embedding_type not in ("fourier", "positional") or encoder_type not in ("standard", "skip", "residual") \
                or decoder_type not in ("standard", "skip"):
            raise ValueError("unknown SongUNet embedding / encoder / decoder type")
        self.label_dropout = label_dropout
        self.img_resolution = img_resolution
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block_kwargs = dict(
            emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
            resample_filter=tuple(resample_filter), resample_proj=True, adaptive_scale=False,
            init=init, init_zero=init_zero, init_attn=init_attn,
        )
        self.map_noise: nn.Module = (
            PositionalEmbedding(noise_channels, endpoint=True) if embedding_type == "positional"
            else FourierEmbedding(noise_channels)
        )
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cin, cout, 3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block_kwargs)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=tuple(resample_filter))
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1, **init)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, 3, down=True, resample_filter=tuple(resample_filter), fused_resample=True, **init
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block_kwargs)
        skips = [block.out_channels for name, block in self.enc.items() if "aux" not in name]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block_kwargs)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block_kwargs)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block_kwargs)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block_kwargs)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True,
                                                             resample_filter=tuple(resample_filter))
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, **init_zero)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(*emb.shape)  # [sin, cos], as Song et al.
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        emb = F.silu(self.map_layer1(emb))

        skips = []
        aux = x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)

        aux = None
        tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


class EDMPrecond(nn.Module):
    """Karras et al. (2022) eq. 7 / Table 1: ``D(x; σ) = c_skip x + c_out F(c_in x; ln(σ)/4)``
    with ``c_skip = σ_d²/(σ²+σ_d²)``, ``c_out = σ σ_d/√(σ²+σ_d²)``, ``c_in = 1/√(σ²+σ_d²)``.

    ``model`` is the raw network F (a :class:`SongUNet`); the state dict is ``model.*``.
    """

    def __init__(self, model: nn.Module, *, sigma_data: float = 0.5, sigma_min: float = 0.0,
                 sigma_max: float = math.inf) -> None:
        super().__init__()
        self.model = model
        self.sigma_data, self.sigma_min, self.sigma_max = sigma_data, sigma_min, sigma_max

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        F_x = self.model(c_in * x, c_noise.flatten(), class_labels, augment_labels)
        return c_skip * x + c_out * F_x.to(torch.float32)


class VPPrecond(nn.Module):
    """Song et al.'s variance-preserving preconditioning as written in Karras et al. Table 1:
    ``D(x; σ) = x - σ F(x/√(σ²+1); (M-1) σ⁻¹(σ))`` with the VP schedule
    ``σ(t) = √(exp(½ β_d t² + β_min t) - 1)``."""

    def __init__(self, model: nn.Module, *, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000,
                 epsilon_t: float = 1e-5) -> None:
        super().__init__()
        self.model = model
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1))

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """``σ(t) = √(exp(½ β_d t² + β_min t) - 1)``."""
        t = torch.as_tensor(t)
        return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()

    def sigma_inv(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """``t(σ) = (√(β_min² + 2 β_d ln(1+σ²)) - β_min) / β_d``, the inverse of :meth:`sigma`."""
        sigma = torch.as_tensor(sigma)
        return ((self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt() - self.beta_min) / self.beta_d

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        F_x = self.model(c_in * x, c_noise.flatten(), class_labels, augment_labels)
        return x - sigma * F_x.to(torch.float32)


class SongUNetRaw(nn.Module):
    """The raw network ``F(x, c_noise)`` of genloop's ``edm`` family, holding a :class:`SongUNet`
    as ``model`` so its state dict (``model.*``) is that of the official ``EDMPrecond``."""

    def __init__(self, model: SongUNet) -> None:
        super().__init__()
        self.model = model
        if model.map_augment is not None:
            # without EDM's augmentation pipeline (the ``edm`` family's ``augment`` option off)
            # the augment-label layer gets no gradient; freezing it keeps it out of Adam and
            # lets DDP run without searching for unused parameters (its weights still load
            # and save). The family unfreezes it when it trains with augmentation.
            model.map_augment.requires_grad_(False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``F(x; t)``; ``augment_labels`` ``(B, augment_dim)`` tell the network how the
        training images were augmented (None at sampling: the identity)."""
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.model(x, t.reshape(x.shape[0]), None, augment_labels)


__all__ = [
    "SongUNet", "UNetBlock", "EDMPrecond", "VPPrecond", "SongUNetRaw", "Linear", "Conv2d", "GroupNorm",
    "PositionalEmbedding", "FourierEmbedding", "weight_init",
]
