"""Shared pieces of the neural families: networks, the training loop, the model base class.

Importing this package imports torch; the families (``flow``, ``cfm``/``otcfm``, ``ddpm``,
``edm``) import it when they are registered.
"""

from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.networks import (
    UNET_CIFAR10,
    UNET_FFHQ64,
    MLPNet,
    NetworkConfig,
    UNet,
    build_network,
    init_parameters_,
)
from genloop.models.neural.trainer import (
    TrainConfig,
    TrainResult,
    ema_beta,
    halflife_from_decay,
    learning_rate,
    train,
)

__all__ = [
    "TorchGenerativeModel",
    "NetworkConfig",
    "MLPNet",
    "UNet",
    "build_network",
    "init_parameters_",
    "UNET_CIFAR10",
    "UNET_FFHQ64",
    "TrainConfig",
    "TrainResult",
    "train",
    "learning_rate",
    "ema_beta",
    "halflife_from_decay",
]
