"""The ``torch-module`` family: any ``torch.nn.Module`` by import path, trained on genloop's trainer.

The module is the network; genloop supplies the rest of a neural family: the objective, the
sampler, the shared training loop (budget in samples, EMA, warm starts per
``train.carry_over``, exact resume, bf16, DDP) and checkpoints (safetensors, no pickle).

* ``module: "mypkg.nets:MyNet"`` — the class (or a function returning a module), built with
  ``module_options`` plus, when its constructor takes them, ``event_shape`` (the data's shape
  of one sample). Its ``forward(x, t)`` maps a batch ``x`` of events ``(B, *event_shape)`` and
  a ``(B,)`` tensor ``t`` of noise levels / times to a tensor of ``x``'s shape, as genloop's
  own networks do: EDM's raw network F_θ(c_in x; c_noise) (Karras et al. 2022, Eq. 7), DDPM's
  ε_θ(x_t, t/T) (Ho et al. 2020, Eq. 14), flow matching's velocity v_θ(x_t, t) (Lipman et al.
  2023; Tong et al. 2024).
* ``objective`` — ``edm``, ``ddpm`` or ``flow-matching``: the loss and, unless ``sampler`` says
  otherwise, the sampler of that family, with that family's options in ``objective_options``
  (e.g. ``{num_steps: 18}`` for ``edm``, ``{T: 1000, sample_steps: 100}`` for ``ddpm``); or a
  ``module:function`` loss ``f(net, x, generator) -> (B,)`` (per-example loss of a batch ``x``
  in model space; all noise from ``generator``), which then needs a ``sampler``.
* ``sampler`` — ``edm``, ``ddpm``, ``flow-matching`` (that family's sampler with
  ``objective_options``) or ``module:function`` ``g(net, n, event_shape, generator) -> (n,
  *event_shape)``.

The network's initial weights come from the constructor run under a forked torch RNG seeded
from the fit's generator, so they are reproducible and torch's global RNG is left as it was.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import nn

from genloop.errors import ConfigError
from genloop.models import MODELS, register_model
from genloop.models.neural.base import TorchGenerativeModel
from genloop.models.neural.trainer import TrainConfig
from genloop.registry import import_object, is_import_path, validate_options

#: built-in objectives → the family whose loss and sampler they are
OBJECTIVES: dict[str, str] = {"edm": "edm", "ddpm": "ddpm", "flow-matching": "cfm"}
#: options of those families that belong to the adapter, not to the objective
_NOT_OBJECTIVE_OPTIONS = ("network", "train", "init", "sample_batch_size")


@register_model("torch-module")
class TorchModule(TorchGenerativeModel):
    """A user's ``nn.Module`` (``module``, an import path) trained with a genloop objective.

    See the module docstring for the network's ``forward(x, t)`` contract, the objectives and
    the samplers.
    """

    def __init__(
        self,
        module: str,
        module_options: dict[str, Any] | None = None,
        objective: str = "edm",
        sampler: str | None = None,
        objective_options: dict[str, Any] | None = None,
        train: TrainConfig = TrainConfig(samples=200_000, batch_size=256, lr=1e-3, warmup_samples=5_000),
        sample_batch_size: int = 4096,
    ) -> None:
        if not is_import_path(module):
            raise ConfigError(f"torch-module: module {module!r} is not an import path 'package.module:Class'")
        if objective not in OBJECTIVES and not is_import_path(objective):
            raise ConfigError(f"torch-module: objective {objective!r} is neither one of {', '.join(OBJECTIVES)} "
                              "nor a 'module:function' loss")
        if sampler is not None and sampler not in OBJECTIVES and not is_import_path(sampler):
            raise ConfigError(f"torch-module: sampler {sampler!r} is neither one of {', '.join(OBJECTIVES)} "
                              "nor a 'module:function' sampler")
        if objective not in OBJECTIVES and sampler is None:
            raise ConfigError(f"torch-module: the loss {objective!r} needs a sampler "
                              f"({', '.join(OBJECTIVES)} or a 'module:function')")
        if sample_batch_size < 1:
            raise ConfigError(f"sample_batch_size must be >= 1, got {sample_batch_size}")
        family = OBJECTIVES.get(objective) or OBJECTIVES.get(sampler or "")
        opts = dict(objective_options or {})
        bad = sorted(set(opts) & set(_NOT_OBJECTIVE_OPTIONS))
        if bad:
            raise ConfigError(f"torch-module: objective_options {', '.join(bad)} are options of torch-module itself "
                              "(train, sample_batch_size) or do not apply (network, init)")
        if opts and family is None:
            raise ConfigError("torch-module: objective_options configure a built-in objective or sampler; "
                              f"{objective!r} with sampler {sampler!r} uses none")
        if family is not None:
            MODELS.validate(family, opts)  # errors name the option and the objective's known ones
        factory = import_object(module, what="torch-module module")
        validate_options(factory, dict(module_options or {}), f"torch-module module {module!r}", skip=("event_shape",))
        self.module = module
        self.module_options = module_options
        self.objective = objective
        self.sampler = sampler
        self.objective_options = objective_options
        self.train = train
        self.sample_batch_size = sample_batch_size

    # ---- the pieces ------------------------------------------------------------------------
    def _family(self, which: str) -> TorchGenerativeModel:
        """The built-in family supplying the loss or the sampler (built once per model)."""
        cache: dict[str, TorchGenerativeModel] = self.__dict__.setdefault("_families", {})
        if which not in cache:
            family = MODELS.create(OBJECTIVES[which], **(self.objective_options or {}))
            assert isinstance(family, TorchGenerativeModel)
            cache[which] = family
        family = cache[which]
        if self.is_fitted:
            family.event_shape_ = self.event_shape_
        family._nfes = []  # the flow-matching sampler counts its evaluations there
        return family

    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        factory = import_object(self.module, what="torch-module module")
        options = dict(self.module_options or {})
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if "event_shape" in params and "event_shape" not in options:
            options["event_shape"] = tuple(event_shape)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()) if generator is not None else 0
        # a seed drawn from the generator (not torch.randint's global stream)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # scoped by fork_rng: the module's own initialisation, reproducible
            try:
                net = factory(**options)
            except TypeError as exc:
                raise ConfigError(f"torch-module: {self.module}(**module_options) failed: {exc}") from None
        if not isinstance(net, nn.Module):
            raise ConfigError(f"torch-module: {self.module} built a {type(net).__name__}, not a torch.nn.Module")
        return net

    def _loss_fn(self) -> Callable[[nn.Module, torch.Tensor, torch.Generator], torch.Tensor]:
        if self.objective in OBJECTIVES:
            family = self._family(self.objective)
            return family.loss
        return import_object(self.objective, what="torch-module objective")

    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = self._loss_fn()(net, x, generator)
        if out.shape != (x.shape[0],):
            raise ConfigError(f"torch-module: the loss returned shape {tuple(out.shape)}, expected ({x.shape[0]},) "
                              "(one loss per example)")
        return out

    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        which = self.sampler or self.objective
        if which in OBJECTIVES:
            family = self._family(which)
            family.event_shape_ = self.event_shape_
            out = family.generate(net, n, generator)
            self.last_nfe_ = getattr(family, "last_nfe_", None)
            return out
        fn = import_object(which, what="torch-module sampler")
        return fn(net, n, tuple(self.event_shape_), generator)


__all__ = ["TorchModule", "OBJECTIVES"]
