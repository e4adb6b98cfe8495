"""EDM's augmentation pipeline: transform frequencies, labels that say what was done, and the
geometric maps' directions, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genloop.models.diffusion.augment import (
    EDM_CIFAR10_AUGMENT,
    SYM6,
    AugmentConfig,
    augment,
    downsample_matrix,
    upsample_matrix,
)


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within_se(count: int, n: int, q: float, z: float = 4.5) -> None:
    se = math.sqrt(q * (1 - q) / n)
    assert abs(count / n - q) <= z * se + 1e-12, f"frequency {count / n:.4f}, expected {q:.4f} ± {z * se:.4f}"


def test_edm_recipe_has_nine_labels_and_p_zero_is_the_identity() -> None:
    assert EDM_CIFAR10_AUGMENT.label_dim == 9
    x = torch.randn(64, 3, 16, 16, generator=_g(0))
    out, labels = augment(x, EDM_CIFAR10_AUGMENT.model_copy(update={"p": 0.0}), _g(1))
    assert torch.equal(out, x)
    assert labels.shape == (64, 9) and not labels.any()
    a, la = augment(x, EDM_CIFAR10_AUGMENT, _g(5))
    b, lb = augment(x, EDM_CIFAR10_AUGMENT, _g(5))
    assert torch.equal(a, b) and torch.equal(la, lb)  # a function of the generator


def test_each_transform_is_drawn_with_its_probability() -> None:
    # probability of a transform = min(p * multiplier, 1); the label is non-zero when it was
    # drawn and its random parameter is not the identity value
    cfg = AugmentConfig(p=0.3, xflip=1e8, yflip=2, rotate_int=1, translate_int=1, translate_int_max=1.0,
                        scale=1, rotate_frac=0.5, aniso=1, translate_frac=3)
    n = 12_000
    _, L = augment(torch.zeros(n, 1, 8, 8), cfg, _g(2))
    assert L.shape == (n, cfg.label_dim) == (n, 13)
    nz = (L != 0).numpy()
    _within_se(nz[:, 0].sum(), n, 1.0 * 0.5)                         # xflip: capped at 1, w = 1 half the time
    _within_se(nz[:, 1].sum(), n, 0.6 * 0.5)                         # yflip
    _within_se((nz[:, 2] | nz[:, 3]).sum(), n, 0.3 * 0.75)            # rotate_int: w in {1, 2, 3}
    _within_se(nz[:, 4].sum(), n, 0.3 * 15 / 16)                     # translate_int: round(8u) != 0 (8 = 8 px · 1.0)
    _within_se(nz[:, 6].sum(), n, 0.3)                               # scale
    _within_se(nz[:, 8].sum(), n, 0.15)                              # rotate_frac (sin w)
    _within_se(nz[:, 9].sum(), n, 0.3)                               # aniso (w cos r; r = 0 half the time)
    _within_se((L[:, 10] == 0).logical_and(L[:, 9] != 0).sum().item(), n, 0.3 * 0.5)  # r = 0: aniso_rotate_prob
    _within_se(nz[:, 11].sum(), n, 0.9)                              # translate_frac
    assert np.array_equal(nz[:, 11], nz[:, 12])                      # one draw moves both axes
    # the parameters' laws: scale labels are N(0, 1); rotations uniform on (-pi, pi)
    w = L[:, 6][L[:, 6] != 0].double()
    assert abs(w.mean().item()) < 4.5 / math.sqrt(len(w)) and abs(w.var().item() - 1) < 4.5 * math.sqrt(2 / len(w))
    ang = torch.atan2(L[:, 8], L[:, 7] + 1)[nz[:, 8]].double()
    assert abs(ang.abs().mean().item() - math.pi / 2) < 4.5 * (math.pi / math.sqrt(12)) / math.sqrt(len(ang))


def _reference_blit(img: np.ndarray, lab: np.ndarray, W: int, H: int, tmax: float) -> np.ndarray:
    """Flips, quarter turns and mirrored integer shifts rebuilt from the labels with numpy."""
    out = img
    if lab[0] == 1:
        out = out[:, :, ::-1]
    if lab[1] == 1:
        out = out[:, ::-1, :]
    k = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}[(int(lab[2]), int(lab[3]))]
    if k in (1, 2):
        out = out[:, :, ::-1]
    if k in (2, 3):
        out = out[:, ::-1, :]
    if k in (1, 3):
        out = out.transpose(0, 2, 1)
    tx, ty = int(round(lab[4] * W * tmax)), int(round(lab[5] * H * tmax))
    padded = np.pad(out, ((0, 0), (H, H), (W, W)), mode="reflect")
    return padded[:, H - ty : 2 * H - ty, W - tx : 2 * W - tx]


def test_pixel_transforms_match_their_labels() -> None:
    cfg = AugmentConfig(p=0.5, xflip=1, yflip=1, rotate_int=1, translate_int=1, translate_int_max=0.25)
    x = torch.randn(300, 2, 8, 8, generator=_g(3))
    out, L = augment(x, cfg, _g(4))
    assert L[:, 0].sum() > 0 and (L[:, 4] != 0).sum() > 0
    for i in range(len(x)):
        ref = _reference_blit(x[i].numpy(), L[i].numpy(), 8, 8, 0.25)
        np.testing.assert_array_equal(out[i].numpy(), ref)
        if not L[i].any():
            assert torch.equal(out[i], x[i])  # labels all zero: the image untouched


def _blob(n: int, size: int, cx: float, cy: float, width: float = 1.5) -> torch.Tensor:
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    img = torch.exp(-((xx - c - cx) ** 2 + (yy - c - cy) ** 2) / (2 * width**2))
    return img.expand(n, 1, size, size).clone()


def _centroid(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, H, W = img.shape
    c = (W - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(H, dtype=img.dtype), torch.arange(W, dtype=img.dtype), indexing="ij")
    m = img[:, 0].clamp(min=0)
    tot = m.sum(dim=(1, 2))
    return (m * (xx - c)).sum(dim=(1, 2)) / tot, (m * (yy - c)).sum(dim=(1, 2)) / tot


@pytest.mark.parametrize("which", ["rotate_frac", "translate_frac", "scale"])
def test_geometric_maps_move_the_content_as_their_labels_say(which) -> None:
    # a blob at (4, -3) from the centre of a 40x40 image: where it lands is fixed by the labels
    cfg = AugmentConfig(p=1.0, **{which: 1.0}, translate_frac_std=0.05)
    x = _blob(24, 40, 4.0, -3.0)
    out, L = augment(x, cfg, _g(6))
    x0, y0 = 4.0, -3.0
    if which == "rotate_frac":
        w = torch.atan2(L[:, 1], L[:, 0] + 1).double()
        ex, ey = x0 * w.cos() + y0 * w.sin(), -x0 * w.sin() + y0 * w.cos()  # the content turns by -w
    elif which == "translate_frac":
        ex, ey = x0 + L[:, 0].double() * 40 * 0.05, y0 + L[:, 1].double() * 40 * 0.05
    else:
        s = torch.exp2(L[:, 0].double() * cfg.scale_std)
        ex, ey = x0 * s, y0 * s
    cx, cy = _centroid(out)
    # the sym6 filter is not linear-phase (centre of mass at tap 5.10, not 5.5), so rotations and
    # scalings turn about a point ~0.05 px from the image centre, as in the official pipeline
    tol = 0.15 if which == "rotate_frac" else 0.05
    assert torch.allclose(cx, ex, atol=tol) and torch.allclose(cy, ey, atol=tol), (cx - ex, cy - ey)
    assert (out.sum(dim=(1, 2, 3)) - x.sum(dim=(1, 2, 3))).abs().max() < 0.05 * x[0].sum() or which == "scale"


def test_resampling_filters_equal_zero_insertion_and_convolution() -> None:
    # reference: insert zeros, convolve with the reversed filter (padding 6); filter with
    # padding 5 and stride 2 on the way down
    h = torch.tensor(SYM6, dtype=torch.float64)
    x = torch.randn(3, 13, generator=_g(7), dtype=torch.float64)
    z = torch.stack([x, torch.zeros_like(x)], dim=2).reshape(3, -1)[:, :-1]
    up = torch.nn.functional.conv1d(z[:, None], h.flip(0)[None, None], padding=6)[:, 0]
    torch.testing.assert_close(x @ upsample_matrix(13, torch.float64), up, rtol=0, atol=1e-14)
    y = torch.randn(3, 30, generator=_g(8), dtype=torch.float64)
    down = torch.nn.functional.conv1d(y[:, None], h[None, None], padding=5, stride=2)[:, 0]
    torch.testing.assert_close(y @ downsample_matrix(30, torch.float64), down, rtol=0, atol=1e-14)


# ---- the edm family ----------------------------------------------------------------------------
TOY = {"kind": "songunet", "preset": "edm-cifar10-uncond-vp", "channels": 8, "channel_mult": [1, 2],
       "num_res_blocks": 1, "attn_resolutions": [4], "norm_groups": 4}


def test_edm_presets_augment_by_default_and_other_networks_do_not() -> None:
    from genloop.errors import ConfigError
    from genloop.models import make_model

    assert make_model("edm", network=TOY).augment_config() == EDM_CIFAR10_AUGMENT
    assert make_model("edm", network=TOY, augment="off").augment_config() is None
    assert make_model("edm").augment_config() is None  # genloop's U-Net has no augmentation input
    assert make_model("edm", network={**TOY, "preset": "baseline-cifar10-uncond-vp"}, precond="vp").augment_config() is None
    with pytest.raises(ConfigError, match="augmentation labels"):
        make_model("edm", augment={"p": 0.2, "xflip": 1})
    with pytest.raises(ConfigError, match="augment gives 2 labels"):
        make_model("edm", network=TOY, augment={"p": 0.2, "xflip": 1, "yflip": 1})


def test_edm_training_feeds_the_labels_of_the_augmentation_it_drew() -> None:
    from genloop.models import make_model

    model = make_model("edm", network=TOY)
    net = model.build_net((3, 8, 8), _g(0))
    seen = {}
    forward = net.forward

    def spy(x, t, augment_labels=None):
        seen["labels"] = augment_labels
        return forward(x, t, augment_labels=augment_labels)

    net.forward = spy
    x = torch.rand(64, 3, 8, 8, generator=_g(1)) * 2 - 1
    g = _g(2)
    replay = torch.Generator().set_state(g.get_state())
    loss = model.loss(net, x, g)
    assert loss.shape == (64,)
    _, expected = augment(x, EDM_CIFAR10_AUGMENT, replay)  # the draws come first from the stream
    assert seen["labels"].shape == (64, 9) and torch.equal(seen["labels"], expected)
    assert net.model.map_augment.weight.requires_grad
    loss.mean().backward()
    assert net.model.map_augment.weight.grad.abs().sum() > 0  # the network learns from the labels
    off = make_model("edm", network=TOY, augment="off").build_net((3, 8, 8), _g(0))
    assert not off.model.map_augment.weight.requires_grad
