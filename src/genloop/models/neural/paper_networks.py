"""The networks of the paper's image experiments, by name, with their public checkpoints' layout.

``network: {kind: songunet, preset: edm-cifar10-uncond-vp}`` in a config builds EDM's DDPM++
for CIFAR-10 exactly as the public snapshot ``edm-cifar10-32x32-uncond-vp.pkl`` holds it, so
that snapshot (converted with ``genloop convert edm-pkl``) loads one to one. Sizes set
explicitly next to the preset (``channels``, ``channel_mult``, ``num_res_blocks``,
``attn_resolutions``, ``dropout``, ``norm_groups``) override it, which gives toy-size versions
of the same architecture for tests.

========================  ==========  ======================================================  ==========
preset                    kind        architecture                                            parameters
========================  ==========  ======================================================  ==========
edm-cifar10-uncond-vp     songunet    DDPM++, 128 ch, mult (2, 2, 2), 4 blocks, attn 16,       55,733,891
                                      dropout 0.13, augment_dim 9 (EDM config F)
edm-cifar10-uncond-ve     songunet    NCSN++, same sizes                                       56,397,827
edm-ffhq64-uncond-vp      songunet    DDPM++, mult (1, 2, 2, 2), dropout 0.05, augment_dim 9   61,805,571
edm-ffhq64-uncond-ve      songunet    NCSN++, mult (1, 2, 2, 2)                                62,761,091
baseline-cifar10-uncond-vp songunet   DDPM++ of EDM's VP baseline (config A, no augment)       55,732,739
otcfm-cifar10             adm         ADM U-Net, 128 ch, mult (1, 2, 2, 2), 2 blocks,          35,746,307
                                      attn 16 (64 ch/head), dropout 0.1 (torchcfm)
ddpm-cifar10              ddpm        Ho et al., 128 ch, mult (1, 2, 2, 2), 2 blocks, attn 16  35,746,307
========================  ==========  ======================================================  ==========

The parameter counts are those of the official code (recorded with it; the test compares).
EDM's CIFAR-10 and FFHQ presets use EDM's preconditioning (:class:`~.edm_unet.EDMPrecond`,
which genloop's ``edm`` family implements); the baseline preset was trained with
:class:`~.edm_unet.VPPrecond`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from genloop.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """One public network: its kind, image shape and constructor options."""

    kind: str
    resolution: int
    channels: int
    options: dict[str, Any] = field(default_factory=dict)
    precond: str | None = None
    description: str = ""


_DDPMPP = dict(embedding_type="positional", encoder_type="standard", decoder_type="standard",
               channel_mult_noise=1, resample_filter=(1, 1), model_channels=128, num_blocks=4, attn_resolutions=(16,))
_NCSNPP = dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
               channel_mult_noise=2, resample_filter=(1, 3, 3, 1), model_channels=128, num_blocks=4, attn_resolutions=(16,))

PRESETS: dict[str, Preset] = {
    "edm-cifar10-uncond-vp": Preset("songunet", 32, 3, {**_DDPMPP, "channel_mult": (2, 2, 2), "dropout": 0.13,
                                                        "augment_dim": 9}, "edm", "EDM DDPM++ CIFAR-10"),
    "edm-cifar10-uncond-ve": Preset("songunet", 32, 3, {**_NCSNPP, "channel_mult": (2, 2, 2), "dropout": 0.13,
                                                        "augment_dim": 9}, "edm", "EDM NCSN++ CIFAR-10"),
    "edm-ffhq64-uncond-vp": Preset("songunet", 64, 3, {**_DDPMPP, "channel_mult": (1, 2, 2, 2), "dropout": 0.05,
                                                       "augment_dim": 9}, "edm", "EDM DDPM++ FFHQ 64x64"),
    "edm-ffhq64-uncond-ve": Preset("songunet", 64, 3, {**_NCSNPP, "channel_mult": (1, 2, 2, 2), "dropout": 0.05,
                                                       "augment_dim": 9}, "edm", "EDM NCSN++ FFHQ 64x64"),
    "baseline-cifar10-uncond-vp": Preset("songunet", 32, 3, {**_DDPMPP, "channel_mult": (2, 2, 2), "dropout": 0.10},
                                         "vp", "EDM's VP baseline (Song et al. DDPM++ cont.)"),
    "otcfm-cifar10": Preset("adm", 32, 3, {"model_channels": 128, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 2,
                                           "attn_resolutions": (16,), "num_head_channels": 64, "num_heads": 4,
                                           "dropout": 0.1, "groups": 32}, None, "OT-CFM CIFAR-10 (torchcfm)"),
    "ddpm-cifar10": Preset("ddpm", 32, 3, {"ch": 128, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 2,
                                           "attn_resolutions": (16,), "dropout": 0.1, "groups": 32}, None,
                           "DDPM CIFAR-10 (Ho et al.; DDIM code's key names)"),
}

#: the preset used when ``kind`` is given without one
DEFAULT_PRESET = {"songunet": "edm-cifar10-uncond-vp", "adm": "otcfm-cifar10", "ddpm": "ddpm-cifar10"}
PAPER_KINDS = tuple(DEFAULT_PRESET)

# NetworkConfig field -> constructor option, per kind (only fields set explicitly override)
_OVERRIDES = {
    "songunet": {"channels": "model_channels", "channel_mult": "channel_mult", "num_res_blocks": "num_blocks",
                 "attn_resolutions": "attn_resolutions", "dropout": "dropout"},
    "adm": {"channels": "model_channels", "channel_mult": "channel_mult", "num_res_blocks": "num_res_blocks",
            "attn_resolutions": "attn_resolutions", "dropout": "dropout", "head_channels": "num_head_channels",
            "norm_groups": "groups"},
    "ddpm": {"channels": "ch", "channel_mult": "ch_mult", "num_res_blocks": "num_res_blocks",
             "attn_resolutions": "attn_resolutions", "dropout": "dropout", "norm_groups": "groups"},
}


def resolve_preset(kind: str, preset: str | None) -> tuple[str, Preset]:
    """The preset's name and :class:`Preset` for ``kind`` (its default when ``preset`` is None)."""
    name = preset or DEFAULT_PRESET[kind]
    if name not in PRESETS:
        raise ConfigError(f"unknown network preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    p = PRESETS[name]
    if p.kind != kind:
        raise ConfigError(f"network preset {name!r} is a {p.kind!r} network, not {kind!r}")
    return name, p


def preset_options(kind: str, preset: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The constructor options of ``preset`` with the explicitly set config fields applied."""
    _, p = resolve_preset(kind, preset)
    opts = dict(p.options)
    for field_name, value in overrides.items():
        if field_name in _OVERRIDES[kind]:
            opts[_OVERRIDES[kind][field_name]] = tuple(value) if isinstance(value, list) else value
    return opts


def check_event_shape(kind: str, preset: str | None, overrides: dict[str, Any], event_shape: tuple[int, ...]) -> dict[str, Any]:
    """Raise :class:`ConfigError` unless the network suits images of ``event_shape``; returns
    its constructor options."""
    if len(event_shape) != 3 or event_shape[1] != event_shape[2]:
        raise ConfigError(f"network kind {kind!r} needs square image events (C, H, H), got shape {event_shape}")
    opts = preset_options(kind, preset, overrides)
    levels = len(opts.get("channel_mult", opts.get("ch_mult", ())))
    H = event_shape[1]
    if H % (2 ** (levels - 1)):
        raise ConfigError(f"network kind {kind!r}: image size {H} is not divisible by 2^{levels - 1} ({levels} levels)")
    return opts


def build_paper_network(kind: str, preset: str | None, overrides: dict[str, Any], event_shape: tuple[int, ...],
                        *, time_scale: float = 1000.0) -> nn.Module:
    """The network ``kind`` / ``preset`` for image events ``(C, H, W)`` (``H = W``), unitialised.

    ``songunet`` returns :class:`~.edm_unet.SongUNetRaw` (state dict ``model.*`` as EDM's
    preconditioned snapshot), ``adm`` :class:`~.adm_unet.ADMUNet`, ``ddpm``
    :class:`~.ddpm_unet.DDPMUNet` (time input ``t / T``, ``time_scale = T``).
    """
    opts = check_event_shape(kind, preset, overrides, event_shape)
    C, H, _ = event_shape
    if kind == "songunet":
        from genloop.models.neural.edm_unet import SongUNet, SongUNetRaw

        return SongUNetRaw(SongUNet(img_resolution=H, in_channels=C, out_channels=C, **opts))
    if kind == "adm":
        from genloop.models.neural.adm_unet import ADMUNet

        attn = tuple(H // int(r) for r in opts.pop("attn_resolutions"))
        return ADMUNet(image_size=H, in_channels=C, out_channels=C, attention_ds=attn, **opts)
    from genloop.models.neural.ddpm_unet import DDPMUNet

    return DDPMUNet(resolution=H, in_channels=C, out_ch=C, time_scale=time_scale, **opts)


__all__ = ["PRESETS", "Preset", "PAPER_KINDS", "DEFAULT_PRESET", "build_paper_network", "check_event_shape", "preset_options", "resolve_preset"]
