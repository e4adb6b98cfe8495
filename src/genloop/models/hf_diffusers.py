"""The ``diffusers`` family: a local Hugging Face ``diffusers`` model folder in the loop.

``path`` is a folder holding a ``UNet2DModel`` (``config.json`` +
``diffusion_pytorch_model.safetensors``) and its scheduler's ``scheduler_config.json`` — either
side by side (the layout of the published DDPM CIFAR-10 model of Ho et al. 2020, which the
paper retrains) or as a pipeline's ``unet/`` and ``scheduler/`` subfolders. Only safetensors
weights are read (never a pickled ``.bin``) and nothing is downloaded: the folder is opened
with ``local_files_only``.

* **Generation 0** is the folder's network: with ``loop.train_generation_0: false`` it is
  evaluated as it is; otherwise generation 0 fine-tunes it (``train.finetune_samples``).
* **Each generation** trains the network on genloop's shared trainer (budget in samples, EMA,
  warm starts per ``train.carry_over``, exact resume) with the scheduler's own forward process
  and prediction target: x_t = add_noise(x_0, ε, t) with t uniform on the training steps and
  the loss ‖target − net(x_t, t)‖² per example, target ε (``prediction_type: epsilon``,
  Ho et al. 2020, Eq. 14), x_0 (``sample``) or v (``v_prediction``, Salimans & Ho 2022).
* **Sampling** is the folder's scheduler exactly as ``diffusers``' ``DDPMPipeline`` runs it:
  Gaussian latents of the network's dtype, ``set_timesteps(num_inference_steps)``, then
  ``scheduler.step(net(x, t), t, x, generator)`` for each t — so the same torch generator gives
  the pipeline's samples (in [-1, 1] here, ``(x + 1) / 2`` there).

``diffusers`` is an optional extra: ``pip install 'genloop[diffusers]'``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typing_extensions import Self

from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.trainer import TrainConfig

log = logging.getLogger(__name__)

_UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise ConfigError("the diffusers family needs the diffusers package: pip install 'genloop[diffusers]'") from None
    return diffusers


class UNetAsNet(nn.Module):
    """A ``UNet2DModel`` as genloop's ``net(x, t)``: the ``.sample`` of its output."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t).sample


@register_model("diffusers")
class DiffusersModel(TorchGenerativeModel):
    """A ``diffusers`` ``UNet2DModel`` folder (``path``) trained and sampled in the loop.

    See the module docstring. ``num_inference_steps`` defaults to the scheduler's
    ``num_train_timesteps`` (as ``DDPMPipeline`` does).
    """

    def __init__(
        self,
        path: str,
        train: TrainConfig = TrainConfig(samples=50_000, finetune_samples=50_000, batch_size=128, lr=1e-4),
        num_inference_steps: int | None = None,
        sample_batch_size: int = 256,
    ) -> None:
        if num_inference_steps is not None and num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if sample_batch_size < 1:
            raise ConfigError(f"sample_batch_size must be >= 1, got {sample_batch_size}")
        self.path = path
        self.train = train
        self.num_inference_steps = num_inference_steps
        self.sample_batch_size = sample_batch_size

    @property
    def init(self) -> str:
        """The folder is the checkpoint every run starts from (generation 0)."""
        return self.path

    # ---- the folder ----------------------------------------------------------------------
    def _unet_folder(self) -> Path:
        root = Path(self.path).expanduser()
        return root / "unet" if (root / "unet" / "config.json").is_file() else root

    def _scheduler_config(self) -> Path:
        root = Path(self.path).expanduser()
        for candidate in (root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"diffusers folder {root} has no scheduler_config.json (nor scheduler/scheduler_config.json)")

    def _unet_config(self) -> dict[str, Any]:
        folder = self._unet_folder()
        try:
            return json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"diffusers folder {self.path} has no config.json (nor unet/config.json)") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"diffusers folder {self.path}: config.json cannot be read ({exc})") from None

    def folder_event_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the network's samples, from its config."""
        cfg = self._unet_config()
        size = cfg.get("sample_size")
        hw = (size, size) if isinstance(size, int) else tuple(size or ())
        if len(hw) != 2 or "in_channels" not in cfg:
            raise ConfigError(f"diffusers folder {self.path}: config.json is not a UNet2DModel config (sample_size, in_channels)")
        return int(cfg["in_channels"]), int(hw[0]), int(hw[1])

    def scheduler(self) -> Any:
        """A fresh scheduler of the folder's class and config (schedulers are stateful)."""
        diffusers = _diffusers()
        path = self._scheduler_config()
        config = json.loads(path.read_text(encoding="utf-8"))
        name = config.get("_class_name", "DDPMScheduler")
        cls = getattr(diffusers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            raise ConfigError(f"diffusers folder {self.path}: {name!r} in {path.name} is not a diffusers scheduler")
        return cls.from_config(config)

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        root = Path(self.path).expanduser()
        if not root.is_dir():
            raise ConfigError(f"diffusers folder {root} does not exist")
        _diffusers()
        if not (self._unet_folder() / _UNET_WEIGHTS).is_file():
            raise ConfigError(f"diffusers folder {root} has no {_UNET_WEIGHTS} (only safetensors weights are read)")
        train_steps = int(self.scheduler().config.num_train_timesteps)
        if self.num_inference_steps is not None and self.num_inference_steps > train_steps:
            raise ConfigError(f"diffusers: num_inference_steps={self.num_inference_steps} is more than the scheduler's "
                              f"{train_steps} training steps")
        if tuple(event_shape) != self.folder_event_shape():
            raise ConfigError(f"the diffusers network in {root} makes images of shape {self.folder_event_shape()}; "
                              f"the data have shape {tuple(event_shape)}")

    # ---- networks ------------------------------------------------------------------------
    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        """The folder's architecture, freshly initialised (from a seed drawn from ``generator``)."""
        diffusers = _diffusers()
        if tuple(event_shape) != self.folder_event_shape():
            raise DataError(f"the diffusers network makes images of shape {self.folder_event_shape()}, "
                            f"the data have shape {tuple(event_shape)}")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()) if generator is not None else 0
        config = {k: v for k, v in self._unet_config().items() if not k.startswith("_")}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # scoped by fork_rng: diffusers' own initialisation, reproducible
            unet = diffusers.UNet2DModel.from_config(config)
        return UNetAsNet(unet)

    def _pretrained(self) -> nn.Module:
        diffusers = _diffusers()
        folder = self._unet_folder()
        if not (folder / _UNET_WEIGHTS).is_file():
            raise ConfigError(f"diffusers folder {folder} has no {_UNET_WEIGHTS} (only safetensors weights are read)")
        unet = diffusers.UNet2DModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                     torch_dtype=torch.float32, low_cpu_mem_usage=False)
        return UNetAsNet(unet)

    def load_init(self, path: str | Path | None = None, *, event_shape: tuple[int, ...] | None = None,
                  key: str | None = None) -> Self:
        """This model as the folder's network, as if fitted (generation 0)."""
        del key
        if path is not None and Path(path).expanduser() != Path(self.path).expanduser():
            raise ConfigError(f"the diffusers family loads its own folder {self.path}, not {path}")
        shape = self.folder_event_shape()
        if event_shape is not None and tuple(event_shape) != shape:
            raise DataError(f"the diffusers network in {self.path} makes images of shape {shape}, "
                            f"the data have shape {tuple(event_shape)}")
        self.adopt_network(self._pretrained(), shape)
        log.info("diffusers: network loaded from %s", self.path)
        return self

    # ---- objective and sampler -------------------------------------------------------------
    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sched = self._train_scheduler()
        B = x.shape[0]
        t = torch.randint(0, int(sched.config.num_train_timesteps), (B,), generator=generator, device=generator.device)
        noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        t, noise = t.to(x.device), noise.to(x.device)
        x_t = sched.add_noise(x, noise, t)
        kind = sched.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            target = noise
        elif kind == "sample":
            target = x
        elif kind == "v_prediction":
            target = sched.get_velocity(x, noise, t)
        else:
            raise ConfigError(f"diffusers scheduler prediction_type {kind!r} is not supported (epsilon, sample, v_prediction)")
        return (net(x_t, t) - target).square().reshape(B, -1).mean(dim=1)

    def _train_scheduler(self) -> Any:
        cache = self.__dict__.setdefault("_scheduler_cache", {})
        if "train" not in cache:
            cache["train"] = self.scheduler()
        return cache["train"]

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """DDPMPipeline's loop: latents of the network's dtype, then scheduler.step per timestep."""
        sched = self.scheduler()
        steps = self.num_inference_steps or int(sched.config.num_train_timesteps)
        device = self.device_of(net)
        dtype = next(net.parameters()).dtype
        x = torch.randn((n, *self.event_shape_), generator=generator, device=generator.device, dtype=dtype).to(device)
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            x = sched.step(net(x, t), t, x, generator=generator).prev_sample
        self.last_nfe_ = len(sched.timesteps)
        return x


__all__ = ["DiffusersModel", "UNetAsNet"]
