"""A tiny ``diffusers`` model folder built with ``diffusers`` itself (tests only)."""

from __future__ import annotations

from pathlib import Path

#: 8×8 one-channel images, as the ``digits_images`` data source gives
EVENT_SHAPE = (1, 8, 8)
TRAIN_STEPS = 20


def make_tiny_folder(folder: Path, *, seed: int = 0) -> Path:
    """Save a ``UNet2DModel`` (sample_size 8, block_out_channels (8, 16)) with safetensors and a
    ``DDPMScheduler`` config of ``TRAIN_STEPS`` steps into ``folder``, side by side as the
    published DDPM CIFAR-10 folder is laid out."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                           down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                           norm_num_groups=4)
    unet.save_pretrained(folder, safe_serialization=True)
    DDPMScheduler(num_train_timesteps=TRAIN_STEPS).save_pretrained(folder)
    return folder
