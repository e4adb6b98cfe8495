"""The base class of neural generative families (flows, flow matching, diffusion).

A family subclasses :class:`TorchGenerativeModel`, declares an explicit typed constructor, e.g.
``(network: NetworkConfig = ..., train: TrainConfig = ..., <family options>)``, stores every
argument under its own name, and implements two pieces:

* :meth:`TorchGenerativeModel.loss` — the per-example objective ``(B,)`` (EDM's ``loss.py``);
* :meth:`TorchGenerativeModel.generate` — the sampler: ``n`` events drawn with a network.

The base does the rest of the :class:`~genloop.models.base.GenerativeModel` contract: building
the network (override :meth:`build_net` for another architecture, e.g. a zuko flow or a
preconditioning wrapper), warm starts per ``train.carry_over``, the device, the shared
:func:`~genloop.models.neural.trainer.train` loop, batched sampling with the EMA network, and
checkpoints as named numpy arrays (no pickle).

Starting from a checkpoint
--------------------------
The image families take ``init: PATH``, a public checkpoint or a genloop generation folder
(:meth:`TorchGenerativeModel.load_init`). A fit without a previous generation (generation 0,
or every generation with ``retrain: scratch``) then starts from that checkpoint as from a
previous generation, per ``train.carry_over``, with the fine-tuning budget; to evaluate the
checkpoint as it is, call :meth:`~TorchGenerativeModel.load_init` instead of ``fit``.

Data scaling convention
-----------------------
Networks work in a *model space* ``z = (x - shift) / scale``:

* vectors ``(n, d)`` are standardised per feature with the training set's mean and standard
  deviation (a constant feature gets scale 1), so one set of hyper-parameters suits data of
  any units;
* images ``(n, C, H, W)`` already arrive in [-1, 1] (the data-source contract) and are used as
  they are (``shift = 0``, ``scale = 1``), as in the official EDM / DDPM / OT-CFM code.

``shift_`` and ``scale_`` are stored in the state; :meth:`sample` maps back with
``x = shift + scale · z`` and density models add ``-Σ log scale`` to ``log p(z)``. On a warm
start that carries weights or EMA the previous generation's scaling is kept, so the carried
network keeps its meaning.
"""

from __future__ import annotations

import copy
import json
import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from typing_extensions import Self

from genloop._validation import check_array
from genloop.errors import ConfigError, DataError
from genloop.models.base import GenerativeModel
from genloop.models.neural.distributed import gather_rows, shard_sizes, world
from genloop.models.neural.networks import NetworkConfig, build_network
from genloop.models.neural.train_checkpoint import TrainCheckpointing
from genloop.models.neural.trainer import (
    LR_WARN_FRACTION,
    TrainConfig,
    resolve_device,
    train,
)
from genloop.rng import torch_seed

log = logging.getLogger(__name__)


class TorchGenerativeModel(GenerativeModel):
    """Abstract base of the neural families; see the module docstring for the contract.

    Fitted attributes: ``net_`` (the trained network), ``ema_`` (its EMA or ``None``),
    ``optimizer_state_`` (Adam's state dict), ``shift_`` / ``scale_`` (data scaling),
    ``losses_`` (mean loss per step of the last fit), ``samples_seen_`` (samples seen by the
    weights, summed over warm starts), ``event_shape_``.
    """

    network: NetworkConfig
    train: TrainConfig
    #: rows per network batch in :meth:`sample` / ``log_prob``; families may expose it as a
    #: constructor option of the same name.
    sample_batch_size: int = 4096
    #: whether bf16 autocast is safe for this objective (flows' exact likelihoods say no).
    amp_safe: ClassVar[bool] = True
    is_neural: ClassVar[bool] = True

    net_: nn.Module
    ema_: nn.Module | None
    optimizer_state_: dict[str, Any] | None
    shift_: np.ndarray
    scale_: np.ndarray

    # ---- what a family implements -------------------------------------------------------
    @abstractmethod
    def loss(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-example training loss ``(B,)`` of a model-space batch ``x`` ``(B, *event_shape)``.

        ``generator`` lives on ``x.device``; draw all noise from it.
        """

    @abstractmethod
    def generate(self, net: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` model-space samples ``(n, *event_shape_)`` drawn with ``net`` (no grad, eval mode).

        ``generator`` lives on the network's device (:meth:`device_of`).
        """

    def build_net(self, event_shape: tuple[int, ...], generator: torch.Generator | None) -> nn.Module:
        """A freshly initialised network for ``event_shape`` (override for other architectures)."""
        return build_network(self.network, event_shape, generator=generator)

    def _net_from_state(
        self, event_shape: tuple[int, ...], state: dict[str, torch.Tensor], what: str, *, checkpoint: bool = False
    ) -> nn.Module:
        """A network of this model's architecture holding ``state``, checked strictly.

        It is built on the meta device and the tensors are assigned, so no random
        initialisation is drawn only to be overwritten (seconds for the paper's 56 M-parameter
        networks); a network with buffers outside its state dict is built normally instead.
        """
        load = _load_checkpoint if checkpoint else _load
        try:
            with torch.device("meta"):
                net = self.build_net(event_shape, None)
        except Exception:  # noqa: BLE001 - an architecture that cannot be built on meta
            net = None
        if net is not None:
            load(net, state, what, assign=True)
            if not any(t.is_meta for t in list(net.parameters()) + list(net.buffers())):
                return net
        net = self.build_net(event_shape, None)
        load(net, state, what)
        return net

    # ---- helpers for families -------------------------------------------------------------
    @staticmethod
    def device_of(net: nn.Module) -> torch.device:
        """The device of ``net``'s first parameter or buffer (CPU when it has none)."""
        for t in list(net.parameters()) + list(net.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def sampling_net(self) -> nn.Module:
        """The network used to sample and evaluate: the EMA when there is one."""
        self._check_fitted()
        return self.ema_ if self.ema_ is not None else self.net_

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Before a run writes anything: a paper network must suit ``event_shape`` and an
        ``init`` checkpoint must exist, be of a known type, read safely (a hostile or damaged
        file is refused here, before the experiment folder exists) and, where it records its
        image shape, record the data's."""
        from genloop.models.neural.checkpoints import TORCH_SUFFIXES, check_checkpoint
        from genloop.models.neural.paper_networks import PAPER_KINDS, check_event_shape

        network = getattr(self, "network", None)
        if isinstance(network, NetworkConfig) and network.kind in PAPER_KINDS:
            overrides = {k: getattr(network, k) for k in network.model_fields_set}
            check_event_shape(network.kind, network.preset, overrides, tuple(event_shape))
        init = getattr(self, "init", None)
        if init:
            p = Path(init).expanduser()
            if not p.exists():
                raise ConfigError(f"model.init: checkpoint {str(p)!r} does not exist")
            ok = p.is_dir() and (p / "model.json").is_file() or p.suffix in (".pkl", ".safetensors", *TORCH_SUFFIXES)
            if not ok:
                raise ConfigError(
                    f"model.init: {str(p)!r} is not a checkpoint genloop reads (.pkl EDM snapshot, .pt/.pth/.ckpt, "
                    ".safetensors, or a genloop generation folder)"
                )
            if len(event_shape) != 3 and not p.is_dir():
                raise ConfigError(f"model.init: public checkpoints are image networks; the data have shape {event_shape}")
            check_checkpoint(p, tuple(event_shape))  # read and checked now; read again by load_init

    # ---- in-generation checkpoints ---------------------------------------------------------
    def enable_training_checkpoints(self, directory: Path, every_samples: int) -> None:
        """Save the training state every ``every_samples`` samples into ``directory`` during
        :meth:`fit`, and resume from the newest complete checkpoint there if one exists.

        Not a hyper-parameter (``clone`` drops it): the loop enables it on the model it is
        about to fit and deletes ``directory`` once the fitted generation is saved. See
        :mod:`genloop.models.neural.train_checkpoint` for what is stored.
        """
        self._train_checkpointing: TrainCheckpointing | None = TrainCheckpointing(Path(directory), int(every_samples))

    # ---- fit -------------------------------------------------------------------------------
    def _train_config(self) -> TrainConfig:
        cfg = self.train
        if not self.amp_safe and cfg.amp:
            cfg = cfg.model_copy(update={"amp": False})
        return cfg

    def training_configs(self, *, finetune: bool) -> dict[str, TrainConfig]:
        """The training configs a run uses: ``scratch`` (generation 0, and every generation when
        ``finetune`` is false or nothing is carried) and ``fine-tune`` (warm starts that carry
        the weights: :meth:`TrainConfig.for_finetuning`)."""
        cfg = self._train_config()
        out = {"scratch": cfg}
        carry = set(cfg.carry_over)
        if finetune and carry & {"weights", "ema_as_weights"}:
            out["fine-tune"] = cfg.for_finetuning(ema_from_zero="ema_as_weights" in carry)
        return out

    def _check_init(self, init: GenerativeModel, event_shape: tuple[int, ...]) -> TorchGenerativeModel:
        if not isinstance(init, TorchGenerativeModel) or type(init) is not type(self):
            raise ConfigError(
                f"warm start of {type(self).__name__} needs an init of the same family, got {type(init).__name__}"
            )
        if not init.is_fitted:
            raise ConfigError("the init model of a warm start is not fitted")
        if tuple(init.event_shape_) != tuple(event_shape):
            raise DataError(f"warm start: data events have shape {event_shape}, the init model's {init.event_shape_}")
        return init

    def _fit_scaling(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if X.ndim == 2:
            shift = X.mean(axis=0)
            scale = X.std(axis=0)
            scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(shift).max(initial=0.0))), scale, 1.0)
            return shift.astype(np.float64), scale.astype(np.float64)
        if np.abs(X).max() > 1.0 + 1e-6:
            log.warning("image data outside [-1, 1] (max |x| = %.3g); images are expected scaled to [-1, 1]", np.abs(X).max())
        ones = (1,) * (X.ndim - 1)
        return np.zeros(ones), np.ones(ones)

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Train on ``X`` ``(n, *event_shape)`` with the shared loop; warm start from ``init``.

        ``train.carry_over`` decides what comes from ``init``: its weights, its EMA, Adam's
        state. ``init`` is never mutated (its tensors are copied).
        """
        X = check_array(X, name="X", min_samples=2)
        if X.ndim not in (2, 4):
            raise DataError(f"X must be vectors (n, d) or images (n, C, H, W), got shape {X.shape}")
        event_shape = tuple(int(s) for s in X.shape[1:])
        generator = torch.Generator().manual_seed(torch_seed(rng))
        carry: set[str] = set()
        prev: TorchGenerativeModel | None = None
        if init is None and getattr(self, "init", None):
            # generation 0 fine-tunes the configured checkpoint (``init: PATH``) like a warm start
            init = self.clone().load_init(self.init, event_shape=event_shape)
        if init is not None:
            prev = self._check_init(init, event_shape)
            carry = set(self.train.carry_over)

        if prev is not None and carry & {"weights", "ema", "ema_as_weights"}:
            shift, scale = np.array(prev.shift_, dtype=np.float64), np.array(prev.scale_, dtype=np.float64)
        else:
            shift, scale = self._fit_scaling(X)
        Z = torch.as_tensor((X - shift) / scale, dtype=torch.float32)

        ema: nn.Module | None = None
        optimizer_state: dict[str, Any] | None = None
        seen_before = 0
        if prev is not None and carry & {"weights", "ema_as_weights"}:
            # EDM's transfer path (ema_as_weights): the previous EMA becomes both the weights and the EMA
            source = prev.ema_ if "ema_as_weights" in carry and prev.ema_ is not None else prev.net_
            what = "EMA weights" if source is prev.ema_ else "weights"
            net = self._net_from_state(event_shape, _cpu_state(source), what)
            if "ema_as_weights" in carry:
                ema = self._net_from_state(event_shape, _cpu_state(source), what)
            seen_before = int(prev.samples_seen_)
        else:
            net = self.build_net(event_shape, generator)
        if prev is not None:
            if "ema" in carry and "ema_as_weights" not in carry and prev.ema_ is not None:
                ema = self._net_from_state(event_shape, _cpu_state(prev.ema_), "EMA weights")
            if "optimizer" in carry and prev.optimizer_state_ is not None:
                optimizer_state = copy.deepcopy(prev.optimizer_state_)

        cfg = self._train_config()
        if prev is not None and carry & {"weights", "ema_as_weights"}:
            cfg = cfg.for_finetuning(ema_from_zero="ema_as_weights" in carry)
        extra: dict[str, Any] = {}
        checkpointing = getattr(self, "_train_checkpointing", None)
        if checkpointing is not None:
            from genloop.models.io import _json_default

            params = json.loads(json.dumps(self.get_params(), default=_json_default, sort_keys=True))
            extra["checkpoint"] = checkpointing
            extra["fingerprint"] = {"model": self.name or type(self).__name__, "params": params,
                                    "carry": sorted(carry), "seen_before": seen_before}
        result = train(net, self.loss, Z, cfg, generator=generator, ema=ema, optimizer_state=optimizer_state, **extra)
        self.net_ = result.net
        self.ema_ = result.ema
        self.optimizer_state_ = result.optimizer_state
        self.losses_ = result.losses
        peak = max(result.lrs, default=cfg.lr) / cfg.lr
        if peak < LR_WARN_FRACTION:
            log.warning(
                "%s fit: the learning rate never exceeded %.3g%% of train.lr=%g (a warm-up of %d samples, a budget "
                "of %d): this training learns almost nothing; %s", self.name or type(self).__name__, 100 * peak, cfg.lr,
                cfg.warmup_samples, cfg.total_samples(Z.shape[0]),
                "set train.finetune_warmup_samples" if prev is not None else "shorten train.warmup_samples",
            )
        self.samples_seen_ = seen_before + result.samples_seen
        self.shift_, self.scale_ = shift, scale
        self.event_shape_ = event_shape
        log.info(
            "%s fit: %d steps (%s), final loss %.5g", self.name or type(self).__name__, len(result.losses),
            f"warm start, carried {sorted(carry)}" if prev is not None else "from scratch",
            result.losses[-1] if result.losses else float("nan"),
        )
        return self

    # ---- a checkpoint as a fitted model ------------------------------------------------------
    def load_init(
        self, path: str | Path | None = None, *, event_shape: tuple[int, ...] | None = None, key: str | None = None
    ) -> Self:
        """Make this model the network of a checkpoint file, as if fitted (generation 0 of the paper).

        ``path`` (default: the ``init`` option) is an EDM ``.pkl`` snapshot, a torch
        ``.pt``/``.pth``/``.ckpt`` file, a ``.safetensors`` file (with its JSON sidecar) or a
        genloop generation folder (see :mod:`genloop.models.neural.checkpoints`; nothing is
        unpickled unsafely). The weights are loaded into the network built from this model's
        ``network`` options, strictly (every key, every shape), and into the EMA as well (the
        checkpoint's EMA weights are what the paper samples from). ``event_shape`` defaults to
        the one the file records; images only, with genloop's identity scaling. A genloop
        folder of the same family restores its whole state (scaling, optimizer, EMA). ``key``
        picks an entry of a checkpoint dict (default: the EMA one).
        """
        from genloop.models.neural.checkpoints import read_network_weights

        path = path if path is not None else getattr(self, "init", None)
        if not path:
            raise ConfigError("load_init needs a checkpoint path (or the model option 'init')")
        weights = read_network_weights(path, key=key)
        if weights.source == "genloop":
            if weights.meta.get("name") != self.name:
                raise ConfigError(f"{path} holds a {weights.meta.get('name')!r} model, not {self.name!r}")
            from safetensors.numpy import load_file

            self.set_state(load_file(str(Path(path) / "model.safetensors")), weights.meta["state"])
            if event_shape is not None and tuple(event_shape) != tuple(self.event_shape_):
                raise DataError(f"{path}: the model's events have shape {self.event_shape_}, the data's {tuple(event_shape)}")
            return self
        recorded_precond = weights.meta.get("precond")
        if recorded_precond and hasattr(self, "precond") and self.precond != recorded_precond:
            raise ConfigError(f"{path} holds a network trained with {recorded_precond!r} preconditioning; "
                              f"set the model option precond: {recorded_precond}")
        if event_shape is None:
            recorded = weights.meta.get("event_shape")
            if recorded is None:
                raise ConfigError(f"{path} does not record the image shape; give event_shape (the data's (C, H, W))")
            event_shape = tuple(int(s) for s in recorded)
        event_shape = tuple(int(s) for s in event_shape)
        if len(event_shape) != 3:
            raise DataError(f"checkpoints of public networks are image models; got event shape {event_shape}")
        self.adopt_network(self._net_from_state(event_shape, weights.state, str(path), checkpoint=True), event_shape)
        log.info("%s: weights loaded from %s (%s, %d tensors)", self.name, path, weights.source, len(weights.state))
        return self

    # ---- sample ----------------------------------------------------------------------------
    def _prepare_net(self) -> tuple[nn.Module, torch.device]:
        net = self.sampling_net
        device = resolve_device(self.train.device)
        net.to(device).eval()
        return net, device

    def _sampling_runtime(self, net: nn.Module, device: torch.device) -> nn.Module:
        """``net`` compiled for this :meth:`sample` call when ``train.sample_compile`` is set and
        the device is CUDA (the compiled graph is reused across the call's batches; the last,
        shorter batch compiles once more); ``net`` itself otherwise."""
        if not self.train.sample_compile:
            return net
        if device.type != "cuda":
            log.info("train.sample_compile applies on CUDA only; sampling uncompiled on %s", device)
            return net
        return torch.compile(net)  # type: ignore[return-value]

    def adopt_network(self, net: nn.Module, event_shape: tuple[int, ...]) -> None:
        """Make ``net`` (pretrained weights, images in [-1, 1]) this model's generation 0: the
        network and its EMA copy, no optimizer state, identity standardisation, nothing trained."""
        self.net_ = net.eval()
        self.ema_ = copy.deepcopy(net).eval().requires_grad_(False)
        self.optimizer_state_ = None
        self.shift_, self.scale_ = np.zeros((1, 1, 1)), np.ones((1, 1, 1))
        self.samples_seen_ = 0
        self.losses_ = []
        self.event_shape_ = tuple(event_shape)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples ``(n, *event_shape_)`` as float64, drawn in batches of
        ``sample_batch_size`` with the EMA network when there is one; images are clipped to
        [-1, 1].

        Batch ``b`` draws its noise from a stream of its own, seeded from ``(seed, b)`` with
        ``seed`` taken from ``rng``, so the samples do not depend on who draws which batch:
        under DDP each rank draws a contiguous share of the batches, the shares are gathered
        and every rank returns all ``n`` rows, the same rows a single process draws.
        """
        self._check_fitted()
        if int(n) != n or n < 0:
            raise ConfigError(f"n must be a non-negative integer, got {n}")
        n = int(n)
        net, device = self._prepare_net()
        seed = torch_seed(rng)
        w = world()
        bs = max(1, int(self.sample_batch_size))
        batches = [(start, min(bs, n - start)) for start in range(0, n, bs)]
        counts = shard_sizes(len(batches), w.size)
        first = sum(counts[: w.rank])
        mine = list(enumerate(batches))[first : first + counts[w.rank]]
        parts: list[np.ndarray] = []
        net = self._sampling_runtime(net, device)
        bf16 = self.train.sample_precision == "bfloat16"
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for b, (_, m) in mine:
                generator = torch.Generator(device=device).manual_seed(batch_seed(seed, b))
                z = self.generate(net, m, generator)
                if tuple(z.shape) != (m, *self.event_shape_):
                    raise RuntimeError(f"generate returned shape {tuple(z.shape)}, expected {(m, *self.event_shape_)}")
                parts.append(z.detach().to("cpu", torch.float64).numpy())
        Z = np.concatenate(parts, axis=0) if parts else np.zeros((0, *self.event_shape_))
        if w.distributed:
            comm_device = device if device.type == "cuda" else torch.device("cpu")
            sizes = [sum(m for _, m in batches[sum(counts[:r]) : sum(counts[: r + 1])]) for r in range(w.size)]
            Z = gather_rows(torch.as_tensor(Z, device=comm_device), sizes).cpu().numpy()
        X = self.shift_ + self.scale_ * Z
        if len(self.event_shape_) == 3:
            # images live in [-1, 1]; the official code clips its samples there too before
            # saving them (and before FID), so the next generation trains on valid images
            X = np.clip(X, -1.0, 1.0)
        return X

    def to_model_space(self, X: np.ndarray) -> torch.Tensor:
        """``(X - shift_) / scale_`` as a float32 tensor (for ``log_prob`` and diagnostics)."""
        self._check_fitted()
        return torch.as_tensor((np.asarray(X, dtype=np.float64) - self.shift_) / self.scale_, dtype=torch.float32)

    @property
    def log_scale_sum(self) -> float:
        """``Σ log scale`` over one event: the log-Jacobian of the standardisation."""
        self._check_fitted()
        return float(np.sum(np.broadcast_to(np.log(self.scale_), self.event_shape_)))

    # ---- state -----------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays ``net.*``, ``ema.*`` (state dicts), ``optim.<i>.<key>`` (Adam moments),
        ``shift`` / ``scale``; meta: event shape, optimizer param groups, samples seen."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {"shift": np.asarray(self.shift_), "scale": np.asarray(self.scale_)}
        for k, v in self.net_.state_dict().items():
            arrays[f"net.{k}"] = _to_numpy(v)
        if self.ema_ is not None:
            for k, v in self.ema_.state_dict().items():
                arrays[f"ema.{k}"] = _to_numpy(v)
        optim_meta: dict[str, Any] | None = None
        if self.optimizer_state_ is not None:
            for idx, st in self.optimizer_state_["state"].items():
                for key, v in st.items():
                    arrays[f"optim.{int(idx)}.{key}"] = _to_numpy(torch.as_tensor(v))
            optim_meta = {"param_groups": _jsonable(self.optimizer_state_["param_groups"])}
        meta = {
            "event_shape": list(self.event_shape_),
            "has_ema": self.ema_ is not None,
            "optimizer": optim_meta,
            "samples_seen": int(getattr(self, "samples_seen_", 0)),
            "final_loss": float(self.losses_[-1]) if getattr(self, "losses_", None) else None,
        }
        return arrays, meta

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Rebuild the networks from the constructor options and load ``arrays``."""
        event_shape = tuple(int(s) for s in meta["event_shape"])
        net = self._net_from_state(event_shape, _sub_state(arrays, "net."), "saved weights")
        ema = None
        if meta.get("has_ema"):
            ema = self._net_from_state(event_shape, _sub_state(arrays, "ema."), "saved EMA weights")
            ema.eval().requires_grad_(False)
        optimizer_state = None
        if meta.get("optimizer") is not None:
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in arrays.items():
                if k.startswith("optim."):
                    _, idx, key = k.split(".", 2)
                    state.setdefault(int(idx), {})[key] = torch.from_numpy(np.array(v))
            optimizer_state = {"state": state, "param_groups": copy.deepcopy(meta["optimizer"]["param_groups"])}
        self.net_ = net.eval()
        self.ema_ = ema
        self.optimizer_state_ = optimizer_state
        self.shift_ = np.asarray(arrays["shift"], dtype=np.float64)
        self.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        self.samples_seen_ = int(meta.get("samples_seen", 0))
        self.losses_ = [] if meta.get("final_loss") is None else [float(meta["final_loss"])]
        self.event_shape_ = event_shape


def batch_seed(seed: int, batch: int) -> int:
    """The seed of sampling batch ``batch`` of a draw seeded ``seed`` (independent streams
    from :class:`numpy.random.SeedSequence`)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(batch),)).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) % (2**63 - 1)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype == torch.bfloat16:
        t = t.float()
    return np.array(t.numpy(), copy=True, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def _load(net: nn.Module, state: dict[str, torch.Tensor], what: str, *, assign: bool = False) -> None:
    try:
        net.load_state_dict(state, assign=assign)
    except RuntimeError as exc:
        raise ConfigError(f"cannot load the {what} (different architecture?): {exc}") from None


def _load_checkpoint(net: nn.Module, state: dict[str, torch.Tensor], path: str, *, assign: bool = False) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})")
        raise ConfigError(
            f"the weights in {path} do not fit the configured network: {'; '.join(parts)}; "
            "choose the matching network preset (e.g. network: {kind: songunet, preset: edm-cifar10-uncond-vp})"
        )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, assign=assign)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def _sub_state(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    return obj


__all__ = ["TorchGenerativeModel"]
