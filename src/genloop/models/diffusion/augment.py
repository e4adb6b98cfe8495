"""EDM's non-leaking augmentation pipeline (Karras et al. 2022, Appendix F.2; the pipeline of
Karras et al. 2020, "Training GANs with limited data", section 2.3 and Appendix B).

Each training image is transformed with probability ``p`` per transform (``p`` times that
transform's multiplier, capped at 1), and the network is told what was done: a vector of
*augmentation labels* fed to its ``augment_dim`` conditioning input, so the denoiser learns
the augmented distributions without generating augmented images (at sampling the labels are
zero, the identity). Transforms and their labels, in the order they are applied:

=================  =====================================================  =========================
transform          what                                                   labels
=================  =====================================================  =========================
``xflip``          mirror left-right, ``w ∈ {0, 1}``                      ``w``
``yflip``          mirror top-bottom, ``w ∈ {0, 1}``                      ``w``
``rotate_int``     rotation by ``w · 90°``, ``w ∈ {0, 1, 2, 3}``           ``[w ∈ {1,2}], [w ∈ {2,3}]``
``translate_int``  integer shift by ``round(u · translate_int_max · size)``, ``u_x / u_y``
                   ``u ~ U(-1, 1)``, mirrored at the border
``scale``          isotropic scaling by ``2^(w · scale_std)``, w ~ N(0,1)  ``w``
``rotate_frac``    rotation by ``w ~ U(-π, π) · rotate_frac_max``          ``cos w - 1, sin w``
``aniso``          scaling by ``2^(w · aniso_std)`` along an axis at       ``w cos r, w sin r``
                   angle ``r`` (``r ~ U(-π, π)`` with probability
                   ``aniso_rotate_prob``, else 0), ``2^(-w · aniso_std)``
                   across it
``translate_frac`` shift by ``w · translate_frac_std · size``, w ~ N(0, I)  ``w_x, w_y``
=================  =====================================================  =========================

A transform that was not drawn for an image has all-zero labels (``w = 0``). The geometric
transforms (scale … translate_frac) are composed into one affine map per image and executed
once, on a 2× oversampled, reflect-padded copy filtered with the ``sym6`` wavelet's low-pass
filter (as the official pipeline does, against aliasing); images that drew no geometric
transform are returned unchanged, bit for bit. Colour transforms are not implemented (EDM's
recipes use none).

EDM's CIFAR-10 recipe (``train.py --augment 0.12``): ``p = 0.12``, ``xflip = 1e8`` (every
image is flipped with probability 1/2, i.e. x-flips are dataset augmentation), ``yflip``,
``scale``, ``rotate_frac``, ``aniso``, ``translate_frac`` = 1: nine labels, the networks'
``augment_dim = 9`` (:data:`EDM_CIFAR10_AUGMENT`).

All draws come from the caller's ``torch.Generator`` on the images' device (no global RNG,
no host-device synchronisation), so training with augmentation stays a deterministic function
of the fit's seed and resumes exactly.
"""

from __future__ import annotations

import functools
import math

import pydantic
import torch
import torch.nn.functional as F

#: low-pass filter of the ``sym6`` wavelet (Daubechies symlet, 12 taps; sums to √2), used to
#: oversample before the geometric resampling and to filter on the way back
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)


class AugmentConfig(pydantic.BaseModel):
    """Probabilities and ranges of the augmentation pipeline (names of EDM's ``AugmentPipe``).

    Each transform is applied to an image with probability ``min(p · multiplier, 1)``; a
    multiplier of 0 disables the transform and removes its labels.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    p: float = pydantic.Field(0.12, ge=0, le=1)
    xflip: float = pydantic.Field(0.0, ge=0)
    yflip: float = pydantic.Field(0.0, ge=0)
    rotate_int: float = pydantic.Field(0.0, ge=0)
    translate_int: float = pydantic.Field(0.0, ge=0)
    translate_int_max: float = pydantic.Field(0.125, ge=0, le=1)
    scale: float = pydantic.Field(0.0, ge=0)
    rotate_frac: float = pydantic.Field(0.0, ge=0)
    aniso: float = pydantic.Field(0.0, ge=0)
    translate_frac: float = pydantic.Field(0.0, ge=0)
    scale_std: float = pydantic.Field(0.2, ge=0)
    rotate_frac_max: float = pydantic.Field(1.0, ge=0, le=1)
    aniso_std: float = pydantic.Field(0.2, ge=0)
    aniso_rotate_prob: float = pydantic.Field(0.5, ge=0, le=1)
    translate_frac_std: float = pydantic.Field(0.125, ge=0)

    def probability(self, multiplier: float) -> float:
        """The probability ``min(p · multiplier, 1)`` of a transform with that multiplier."""
        return min(self.p * multiplier, 1.0)

    @property
    def label_dim(self) -> int:
        """The number of augmentation labels (the network's ``augment_dim``)."""
        widths = {"xflip": 1, "yflip": 1, "rotate_int": 2, "translate_int": 2, "scale": 1, "rotate_frac": 2,
                  "aniso": 2, "translate_frac": 2}
        return sum(w for name, w in widths.items() if getattr(self, name) > 0)


#: EDM's CIFAR-10 / FFHQ recipe (``--augment 0.12``): nine labels
EDM_CIFAR10_AUGMENT = AugmentConfig(p=0.12, xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)


def _bernoulli(n: int, prob: float, like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=like.device) < prob


def _affine(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, tx: torch.Tensor,
            ty: torch.Tensor) -> torch.Tensor:
    """Batch of 3×3 matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) tensors."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, tx, c, d, ty, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def _rotation(theta: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``theta`` in (x, y) pixel coordinates, as 3×3 matrices."""
    z = torch.zeros_like(theta)
    return _affine(theta.cos(), -theta.sin(), theta.sin(), theta.cos(), z, z)


def _scaling(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(sx)
    return _affine(sx, z, z, sy, z, z)


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    one, z = torch.ones_like(tx), torch.zeros_like(tx)
    return _affine(one, z, z, one, tx, ty)


def augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch ``(N, C, H, W)``; return the images and their labels ``(N, label_dim)``.

    ``generator`` lives on the images' device and supplies every draw.
    """
    N, C, H, W = images.shape
    g = generator
    dev = images.device
    labels: list[torch.Tensor] = []
    x = images

    def masked(values: torch.Tensor, mult: float) -> torch.Tensor:
        keep = _bernoulli(N, cfg.probability(mult), images, g).reshape(-1, *([1] * (values.ndim - 1)))
        return torch.where(keep, values, torch.zeros_like(values))

    # ---- pixel blitting (exact index operations) --------------------------------------------
    if cfg.xflip > 0:
        w = masked(torch.randint(2, (N,), generator=g, device=dev), cfg.xflip)
        x = torch.where(w.reshape(N, 1, 1, 1) == 1, x.flip(3), x)
        labels.append(w)
    if cfg.yflip > 0:
        w = masked(torch.randint(2, (N,), generator=g, device=dev), cfg.yflip)
        x = torch.where(w.reshape(N, 1, 1, 1) == 1, x.flip(2), x)
        labels.append(w)
    if cfg.rotate_int > 0:
        w = masked(torch.randint(4, (N,), generator=g, device=dev), cfg.rotate_int).reshape(N, 1, 1, 1)
        # w quarter turns: x-flip for w in {1, 2}, y-flip for w in {2, 3}, transpose for w in {1, 3}
        x = torch.where((w == 1) | (w == 2), x.flip(3), x)
        x = torch.where((w == 2) | (w == 3), x.flip(2), x)
        x = torch.where((w == 1) | (w == 3), x.transpose(2, 3), x)
        labels += [((w == 1) | (w == 2)).reshape(N), ((w == 2) | (w == 3)).reshape(N)]
    if cfg.translate_int > 0:
        u = masked(torch.rand((N, 2), generator=g, device=dev) * 2 - 1, cfg.translate_int)
        tx = (u[:, 0] * (W * cfg.translate_int_max)).round().to(torch.int64)
        ty = (u[:, 1] * (H * cfg.translate_int_max)).round().to(torch.int64)
        x = _shift_mirrored(x, tx, ty)
        labels += [tx / (W * cfg.translate_int_max), ty / (H * cfg.translate_int_max)]

    # ---- geometric transforms: G_inv maps output pixel coordinates to input ones ----------------
    G_inv = torch.eye(3, device=dev, dtype=torch.float32).expand(N, 3, 3)
    geometric = torch.zeros(N, dtype=torch.bool, device=dev)
    any_geometric = False
    if cfg.scale > 0:
        w = masked(torch.randn(N, generator=g, device=dev), cfg.scale)
        s = torch.exp2(w * cfg.scale_std)
        G_inv = G_inv @ _scaling(1 / s, 1 / s)
        geometric |= w != 0
        labels.append(w)
        any_geometric = True
    if cfg.rotate_frac > 0:
        w = masked((torch.rand(N, generator=g, device=dev) * 2 - 1) * (math.pi * cfg.rotate_frac_max), cfg.rotate_frac)
        G_inv = G_inv @ _rotation(w)  # the content turns by -w (clockwise on screen for w > 0)
        geometric |= w != 0
        labels += [w.cos() - 1, w.sin()]
        any_geometric = True
    if cfg.aniso > 0:
        w = masked(torch.randn(N, generator=g, device=dev), cfg.aniso)
        r = (torch.rand(N, generator=g, device=dev) * 2 - 1) * math.pi
        r = torch.where(_bernoulli(N, cfg.aniso_rotate_prob, images, g), r, torch.zeros_like(r))
        s = torch.exp2(w * cfg.aniso_std)
        G_inv = G_inv @ _rotation(-r) @ _scaling(1 / s, s) @ _rotation(r)
        geometric |= w != 0
        labels += [w * r.cos(), w * r.sin()]
        any_geometric = True
    if cfg.translate_frac > 0:
        w = masked(torch.randn((N, 2), generator=g, device=dev), cfg.translate_frac)
        G_inv = G_inv @ _translation(-w[:, 0] * (W * cfg.translate_frac_std), -w[:, 1] * (H * cfg.translate_frac_std))
        geometric |= (w != 0).any(dim=1)
        labels += [w[:, 0], w[:, 1]]
        any_geometric = True
    if any_geometric and cfg.p > 0:
        moved = _resample(x, G_inv)
        x = torch.where(geometric.reshape(N, 1, 1, 1), moved, x)

    out = torch.stack([v.to(torch.float32).reshape(N) for v in labels], dim=1) if labels else \
        torch.zeros((N, 0), device=dev)
    return x, out


def _shift_mirrored(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Shift each image by (tx, ty) integer pixels, the border mirrored (period 2·size − 2)."""
    N, C, H, W = x.shape
    cols = torch.arange(W, device=x.device).reshape(1, W) - tx.reshape(N, 1)
    rows = torch.arange(H, device=x.device).reshape(1, H) - ty.reshape(N, 1)
    cols = (W - 1) - ((W - 1) - cols % (2 * W - 2)).abs() if W > 1 else cols * 0
    rows = (H - 1) - ((H - 1) - rows % (2 * H - 2)).abs() if H > 1 else rows * 0
    x = torch.gather(x, 3, cols.reshape(N, 1, 1, W).expand(N, C, H, W))
    return torch.gather(x, 2, rows.reshape(N, 1, H, 1).expand(N, C, H, W))


@functools.lru_cache(maxsize=32)
def upsample_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``U`` ``(n, 2n)``: ``x @ U`` inserts a zero after every sample (2n − 1 samples) and
    filters with the sym6 low-pass filter reversed, zero-padded by 6 on each side — i.e.
    ``U[i, j] = h[5 + j − 2i]`` where that index is a tap of ``h``."""
    h = torch.tensor(SYM6, dtype=torch.float64)
    i = torch.arange(n).reshape(-1, 1)
    k = 5 + torch.arange(2 * n).reshape(1, -1) - 2 * i
    U = torch.where((k >= 0) & (k < len(SYM6)), h[k.clamp(0, len(SYM6) - 1)], torch.zeros(()))
    return U.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def downsample_matrix(n: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``D`` ``(n, m)``: ``x @ D`` filters with the sym6 low-pass filter (zero-padded by 5 on
    each side) and keeps every second sample, ``m = (n − 2) // 2 + 1`` — i.e.
    ``D[q, j] = h[q − 2j + 5]`` where that index is a tap of ``h``. Both matrices are cached
    per size, dtype and device (built once, then no host-to-device copy per step)."""
    h = torch.tensor(SYM6, dtype=torch.float64)
    m = (n + 2 * 5 - len(SYM6)) // 2 + 1
    k = torch.arange(n).reshape(-1, 1) - 2 * torch.arange(m).reshape(1, -1) + 5
    D = torch.where((k >= 0) & (k < len(SYM6)), h[k.clamp(0, len(SYM6) - 1)], torch.zeros(()))
    return D.to(device=device, dtype=dtype)


def _resample(x: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """Execute the per-image affine maps ``G_inv`` (output → input pixel coordinates, origin
    at the image centre): reflect-pad, oversample 2× with the sym6
    low-pass filter, sample bilinearly, filter and subsample back."""
    N, C, H, W = x.shape
    dtype = x.dtype
    G_inv = G_inv.to(torch.float32)
    taps = len(SYM6)
    pad = taps // 4
    # Reflect-pad by the most the official pipeline ever pads (size - 1 per side: it clamps the
    # reach of the maps there), not by this batch's reach: the shapes then do not depend on the
    # draws, so there is no host-device synchronisation; pixels beyond the reach are never
    # sampled, so the result is the same.
    x = F.pad(x, [W - 1, W - 1, H - 1, H - 1], mode="reflect")

    # 2x oversampling: zero insertion and the low-pass filter, along x then y, each as one
    # product with a banded matrix (a depthwise convolution with a 12-tap kernel is far
    # slower than a GEMM on CPUs; the sums are the same)
    x = x @ upsample_matrix(x.shape[3], dtype, x.device)
    x = upsample_matrix(x.shape[2], dtype, x.device).t() @ x
    two = torch.full((N,), 2.0, device=x.device)
    half = torch.full((N,), -0.5, device=x.device)
    G_inv = _scaling(two, two) @ G_inv @ _scaling(1 / two, 1 / two)
    G_inv = _translation(half, half) @ G_inv @ _translation(-half, -half)

    out_h, out_w = (H + pad * 2) * 2, (W + pad * 2) * 2
    G_inv = (_scaling(torch.full((N,), 2 / x.shape[3], device=x.device), torch.full((N,), 2 / x.shape[2], device=x.device))
             @ G_inv @ _scaling(torch.full((N,), out_w / 2, device=x.device), torch.full((N,), out_h / 2, device=x.device)))
    grid = F.affine_grid(G_inv[:, :2, :].to(dtype), [N, C, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    x = (x @ downsample_matrix(x.shape[3], dtype, x.device))[:, :, :, pad:-pad]
    x = (downsample_matrix(x.shape[2], dtype, x.device).t() @ x)[:, :, pad:-pad, :]
    return x


__all__ = ["AugmentConfig", "EDM_CIFAR10_AUGMENT", "augment", "SYM6", "upsample_matrix", "downsample_matrix"]
