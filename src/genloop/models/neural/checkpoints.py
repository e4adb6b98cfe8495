"""Public pretrained checkpoints as network weights, read without running code stored in them.

The paper starts every image experiment from a public checkpoint. Those files are pickles
(``.pkl``, ``.pt``, ``.pth``, ``.ckpt``), and unpickling an untrusted file runs whatever it
names; EDM's snapshots even carry the source code of their classes and *execute* it on load.
genloop never does that:

* **EDM ``.pkl``** (:func:`read_edm_pickle`): a bounded, restricted unpickler
  (:mod:`~genloop.models.neural.restricted_pickle`) resolves only the functions that rebuild
  tensors (``torch._utils._rebuild_tensor_v2`` and friends, replaced by versions that check
  sizes and strides against the storage present; the storage bytes are read by
  ``torch.load(weights_only=True)`` once their declared size is checked against the bytes
  stored), plain containers (``collections.OrderedDict``, ``dnnlib.util.EasyDict`` as a dict),
  numpy numbers (``numpy.dtype`` of a plain numeric dtype and ``numpy.core.multiarray.scalar``
  / ``numpy._core.multiarray.scalar`` rebuilt from their bytes: EDM's constructors record
  values such as ``np.sqrt(0.5)``), torch's dtypes / sizes and ``torch.nn`` containers as inert
  records. EDM's persistence hook (``torch_utils.persistence._reconstruct_persistent_obj``) is
  replaced by a stub that keeps the class name, the recorded constructor arguments and the
  state, and drops the stored source unexecuted. Any other global, and anything past the
  unpickler's bounds (memo, nesting, objects, storage bytes against the file size), is refused
  with :class:`~genloop.errors.DataError`. :func:`convert_edm_pickle` writes the chosen network
  (``ema`` by default) as safetensors plus a JSON sidecar describing the architecture
  (``genloop convert edm-pkl``).
* **torch files** (OT-CFM's ``.pt``, DDPM's ``.ckpt``): ``torch.load(weights_only=True)`` only;
  a dict of checkpoints gives its EMA entry (``ema_model``, ``ema``, …), a DDIM-style list its
  EMA state, and a ``module.`` prefix (``DataParallel``) is dropped.
* **safetensors** (converted files, ``OUT.safetensors`` + ``OUT.json``) and **genloop's own**
  generation folders (``model.safetensors`` + ``model.json``).

:func:`read_network_weights` dispatches on the path and returns the state dict and what is
known of the architecture.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from genloop import _json as strict_json
from genloop._fs import atomic_write_text, atomic_write_with
from genloop.errors import ConfigError, DataError
from genloop.models.neural import restricted_pickle as rp

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "genloop-network-weights-1"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
#: entries of a checkpoint dict tried in order for the network weights (EMA first, as the paper)
WEIGHT_KEYS = ("ema_model", "ema", "model_ema", "ema_state_dict", "state_dict", "model", "net_model", "net")


# ---- EDM pickles -------------------------------------------------------------------------------
@dataclass
class PersistentRecord:
    """What an EDM persistent object holds, without its class: name, constructor arguments, state."""

    class_name: str
    init_args: tuple[Any, ...] = ()
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:  # EDM writes no separate state (the meta dict holds it)
        raise pickle.UnpicklingError("refused to set the state of a persistent object record")


class ModuleRecord:
    """An inert stand-in for a plain ``torch.nn`` container (``ModuleDict``, ``ModuleList``,
    ``Sequential``) found in a pickle: it only keeps the state the pickle gives it."""

    class_name = "Module"
    state: Any = MappingProxyType({})  # until the pickle sets one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {}


class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict."""


def _reconstruct_persistent_stub(meta: dict[str, Any]) -> PersistentRecord:
    # EDM's hook would exec(meta["module_src"]) and build the class from it; the stub keeps
    # the data only.
    if not isinstance(meta, dict) or not isinstance(meta.get("class_name"), str):
        raise pickle.UnpicklingError("malformed persistent object record")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"the state of the persistent object {meta['class_name']} is not a dict")
    state = dict(state)
    args, kwargs = state.get("_init_args") or (), state.get("_init_kwargs") or {}
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise pickle.UnpicklingError(f"the recorded constructor arguments of {meta['class_name']} are malformed")
    return PersistentRecord(class_name=meta["class_name"], init_args=tuple(args), init_kwargs=dict(kwargs), state=state)


def _module_record_class(name: str) -> type:
    return type(name, (ModuleRecord,), {"class_name": name})


_DTYPES = {n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype)}
_TORCH_NN = {
    ("torch.nn.modules.container", n): _module_record_class(n) for n in ("ModuleDict", "ModuleList", "Sequential")
}
#: globals an EDM snapshot may call (each checks its arguments; see restricted_pickle)
_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_stub,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): rp.rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rp.rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rp.rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): rp.rebuild_from_type,
    ("torch", "Size"): rp.torch_size,
    ("torch", "device"): rp.torch_device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    # numpy values in recorded constructor arguments (np.sqrt(0.5), ...): numpy 2 and numpy 1 names
    ("numpy._core.multiarray", "scalar"): rp.numpy_scalar,
    ("numpy.core.multiarray", "scalar"): rp.numpy_scalar,
    ("numpy", "dtype"): rp.numpy_dtype,
}
#: globals that may only appear as values (never called)
_TOKENS: dict[tuple[str, str], Any] = {
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    **_TORCH_NN,
}


def _allowed(module: str, name: str) -> Any:
    """The object an EDM snapshot's global ``module.name`` stands for here, or None (refused);
    ``torch.storage._load_from_bytes`` is bound per file (:class:`_RestrictedUnpickler`)."""
    key = (module, name)
    if key in _CALLABLES:
        return _CALLABLES[key]
    if key in _TOKENS:
        return _TOKENS[key]
    if module == "torch" and name in _DTYPES:
        return getattr(torch, name)
    return None


class _RestrictedUnpickler(rp.BoundedUnpickler):
    """The bounded unpickler (:mod:`~genloop.models.neural.restricted_pickle`) with EDM's globals."""

    callables = frozenset(id(f) for f in _CALLABLES.values())
    newobj_classes = (*_TORCH_NN.values(), _EasyDict, OrderedDict)
    build_types = (ModuleRecord, _EasyDict, rp.NumpyDType)

    def __init__(self, fh: Any, size: int) -> None:
        super().__init__(fh)
        self._storages = rp.StorageBudget(size)
        self.callables = self.callables | {id(self._storages.load)}
        self._load_from_bytes = self._storages.load  # one bound method, so its id stays valid

    def allowed(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self._load_from_bytes
        return _allowed(module, name)


def _children(obj: Any) -> Any:
    """What the structure check walks into (see :func:`read_edm_pickle`)."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)) and not isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, PersistentRecord):
        return (obj.init_args, obj.init_kwargs, obj.state)
    if isinstance(obj, ModuleRecord):
        return (obj.state,)
    return ()


def read_edm_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Unpickle an EDM snapshot with the restricted unpickler (see the module docstring).

    Returns its top-level mapping, in which persistent objects are :class:`PersistentRecord`
    and ``torch.nn`` containers :class:`ModuleRecord`; raises :class:`DataError` naming the
    refused global, or the bound a hostile file exceeds (memo, nesting, objects, tensor sizes
    against their storage, storage bytes against the file; see
    :mod:`~genloop.models.neural.restricted_pickle`), for anything else.
    """
    path = Path(path)
    try:
        data_bytes = path.read_bytes()  # in memory: no length field can make a read allocate more
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = _RestrictedUnpickler(io.BytesIO(data_bytes), len(data_bytes)).load()
        rp.check_structure(data, _children)
    except MemoryError:
        raise DataError(f"{path} is not an EDM network snapshot genloop can read safely: it asks for more "
                        "memory than this machine has") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a hostile or damaged file is a data error
        raise DataError(
            f"{path} is not an EDM network snapshot genloop can read safely: {_one_line(exc)} (only tensors, plain "
            "containers, numpy numbers and EDM's persistent-class records are allowed; stored code is never run)"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: an EDM snapshot is a dict with an 'ema' network, got {type(data).__name__}")
    return data


def _torch_reason(exc: BaseException) -> str:
    """The reason in ``torch.load``'s error, on one line (without its advice to load unsafely)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    return _one_line(RuntimeError(text))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _entries(state: Any, key: str, where: str) -> dict[str, Any]:
    table = state.get(key) if isinstance(state, dict) else None
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        raise DataError(f"the snapshot's {where or 'network'} has {key} that are not a mapping of names "
                        f"(a {type(table).__name__})")
    return table


def record_state_dict(record: PersistentRecord | ModuleRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """The ``state_dict()`` the recorded module would have: its parameters and persistent buffers,
    and its children's under ``<child>.``. A parameter or buffer that is not a tensor (or None)
    is a :class:`DataError`."""
    state = record.state
    where = prefix[:-1]
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") if isinstance(state, dict) else None
    if skip is not None and not (isinstance(skip, (set, frozenset, list, tuple)) and all(isinstance(n, str) for n in skip)):
        raise DataError(f"the snapshot's {where or 'network'} has a non-persistent buffer list that is not names")
    non_persistent = set(skip or ())
    for kind in ("_parameters", "_buffers"):
        for name, t in _entries(state, kind, where).items():
            if t is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(t, torch.Tensor):
                raise DataError(f"the snapshot's {kind[1:-1]} {prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach()
    for name, child in _entries(state, "_modules", where).items():
        if isinstance(child, (PersistentRecord, ModuleRecord)):
            out.update(record_state_dict(child, f"{prefix}{name}."))
        elif child is not None:
            raise DataError(f"unexpected module entry {prefix}{name} of type {type(child).__name__} in the snapshot")
    return out


#: JSON values the sidecar writer produces from recorded constructor arguments, at most
MAX_JSON_NODES = 100_000


def _jsonable(obj: Any, *, max_nodes: int = MAX_JSON_NODES, max_depth: int = rp.MAX_DEPTH) -> Any:
    """``obj`` as JSON values (numpy and one-element torch numbers as Python numbers, other
    objects as their ``repr``), visiting at most ``max_nodes`` values (a value reached by two
    paths counts twice, since JSON writes it twice) and ``max_depth`` levels; beyond either,
    :class:`DataError`."""
    budget = [max_nodes]

    def walk(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise DataError(f"the snapshot's constructor arguments expand to more than {max_nodes} values "
                            "(shared parts written out once per use); refusing to write them as JSON")
        if depth > max_depth:
            raise DataError(f"the snapshot's constructor arguments are nested more than {max_depth} deep")
        if isinstance(x, dict):
            return {str(k) if isinstance(k, (str, int, float, bool)) or k is None else repr(k): walk(v, depth + 1)
                    for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, depth + 1) for v in x]
        if isinstance(x, (str, int, float, bool)) or x is None:
            return x.item() if isinstance(x, np.generic) else x
        if isinstance(x, np.generic) and x.dtype.kind in "biuf":
            return x.item()
        if isinstance(x, torch.Tensor) and x.numel() == 1:
            return x.item()
        return repr(x)

    return walk(obj, 1)


def edm_architecture(record: PersistentRecord) -> dict[str, Any]:
    """The sidecar description of an EDM preconditioned network: class, kwargs, event shape and
    the genloop network config that rebuilds it (a preset when the options are one's)."""
    from genloop.models.neural.paper_networks import PRESETS

    kw = _jsonable(record.init_kwargs)
    res, ch = kw.get("img_resolution"), kw.get("img_channels")
    if not isinstance(res, int) or not isinstance(ch, int):
        raise DataError(f"the snapshot's {record.class_name} has no img_resolution / img_channels in its init kwargs")
    precond = {"EDMPrecond": "edm", "VPPrecond": "vp"}.get(record.class_name)
    network: dict[str, Any] = {"kind": "songunet"}
    names = ("embedding_type", "encoder_type", "channel_mult_noise", "resample_filter", "model_channels",
             "channel_mult", "num_blocks", "attn_resolutions", "dropout", "augment_dim")
    for name, p in PRESETS.items():
        if p.kind != "songunet" or p.resolution != res or p.precond != precond:
            continue
        ref = _jsonable(p.options)
        defaults = {"num_blocks": 4, "attn_resolutions": [16], "dropout": 0.10, "augment_dim": 0}
        if all(kw.get(k, defaults.get(k)) == ref.get(k, defaults.get(k)) for k in names):
            network["preset"] = name
            network["dropout"] = kw.get("dropout", 0.10)
            break
    else:
        log.warning("the snapshot's network options match no genloop preset; the sidecar records them as they are")
    return {"class_name": record.class_name, "init_kwargs": kw, "event_shape": [ch, res, res],
            "precond": precond, "network": network}


def convert_edm_pickle(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, key: str = "ema") -> tuple[Path, Path]:
    """Convert the network ``key`` of an EDM snapshot to ``dst`` (safetensors) and ``dst``'s
    JSON sidecar (``.json`` in place of ``.safetensors``); returns both paths."""
    from safetensors.torch import save_file

    data = read_edm_pickle(src)
    if key not in data:
        raise DataError(f"{src}: no network {key!r} in the snapshot (it holds {', '.join(map(str, data))})")
    record = data[key]
    if not isinstance(record, PersistentRecord) or "_parameters" not in record.state:
        what = record.class_name if isinstance(record, PersistentRecord) else type(record).__name__
        raise DataError(f"{src}: entry {key!r} is not a network (it is a {what})")
    state = record_state_dict(record)
    if not state:
        raise DataError(f"{src}: the network {key!r} has no parameters")
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise DataError(f"the output must be a .safetensors file, got {dst}")
    meta = {"format": WEIGHTS_FORMAT, "source": "edm-pkl", "source_file": Path(src).name, "key": key,
            **edm_architecture(record)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.float32 if v.is_floating_point() else v.dtype).contiguous() for k, v in state.items()}
    atomic_write_with(dst, lambda tmp: save_file(tensors, str(tmp)))  # ordinary mode (safetensors: 0600)
    sidecar = dst.with_suffix(".json")
    atomic_write_text(sidecar, strict_json.dumps(meta, indent=1))
    return dst, sidecar


# ---- torch files ---------------------------------------------------------------------------------
def _strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_torch_checkpoint(path: str | os.PathLike[str], key: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A state dict from a torch checkpoint read with ``torch.load(weights_only=True)``.

    ``key`` selects a dict entry; by default the first of :data:`WEIGHT_KEYS` present (the EMA
    weights when saved). A list (the DDIM code's ``[model, optimizer, epoch, step, ema]``) gives
    its EMA state (index 4) when present, else index 0. Returns ``(state, where)``.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a checkpoint genloop can read safely (torch.load weights_only): {_torch_reason(exc)}") from None
    where = "the file"
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise DataError(f"{path}: no entry {key!r} in the checkpoint")
        obj, where = obj[key], f"entry {key!r}"
    elif isinstance(obj, (list, tuple)):
        idx = 4 if len(obj) > 4 and _is_state_dict(obj[4]) else 0
        obj, where = obj[idx], f"item {idx}"
    elif isinstance(obj, dict) and not _is_state_dict(obj):
        for k in WEIGHT_KEYS:
            if k in obj and _is_state_dict(obj[k]):
                obj, where = obj[k], f"entry {k!r}"
                break
    if not _is_state_dict(obj):
        raise DataError(f"{path}: found no network weights (a state dict of tensors) in {where}")
    return _strip_prefix(dict(obj)), where


# ---- dispatch ------------------------------------------------------------------------------------
@dataclass
class NetworkWeights:
    """A state dict and what its file says about the network (``meta``: sidecar / genloop JSON)."""

    state: dict[str, torch.Tensor]
    source: str
    meta: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] | None = None


def read_network_weights(path: str | os.PathLike[str], *, key: str | None = None) -> NetworkWeights:
    """Read network weights from any supported checkpoint (see the module docstring)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"checkpoint not found: {path}")
    if path.is_dir():
        if not (path / "model.json").is_file():
            raise DataError(f"{path} is a folder without model.json (not a genloop generation checkpoint)")
        try:
            doc = strict_json.loads((path / "model.json").read_text())
            arrays = load_file(str(path / "model.safetensors"))
        except Exception as exc:  # noqa: BLE001 - OSError, JSON and safetensors errors alike
            raise DataError(f"{path} is not a readable genloop generation checkpoint: {_one_line(exc)}") from None
        net = {k[4:]: v for k, v in arrays.items() if k.startswith("net.")}
        ema = {k[4:]: v for k, v in arrays.items() if k.startswith("ema.")} or None
        return NetworkWeights(state=net, ema=ema, source="genloop", meta=doc)
    if path.suffix == ".pkl":
        data = read_edm_pickle(path)
        record = data.get(key or "ema")
        if not isinstance(record, PersistentRecord):
            raise DataError(f"{path}: no network {key or 'ema'!r} in the snapshot")
        return NetworkWeights(state=record_state_dict(record), source="edm-pkl", meta=edm_architecture(record))
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise DataError(f"{path} is not a readable safetensors file: {_one_line(exc)}") from None
        sidecar = path.with_suffix(".json")
        try:
            meta = strict_json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        except (OSError, ValueError) as exc:
            raise DataError(f"{sidecar}, the sidecar of {path}, is not readable JSON: {_one_line(exc)}") from None
        if not isinstance(meta, dict):
            raise DataError(f"{sidecar}, the sidecar of {path}, is not a JSON object")
        return NetworkWeights(state=_strip_prefix(state), source="safetensors", meta=meta)
    if path.suffix in TORCH_SUFFIXES:
        state, where = read_torch_checkpoint(path, key)
        log.info("weights of %s: %s", path, where)
        return NetworkWeights(state=state, source="torch", meta={"entry": where})
    raise DataError(
        f"unknown checkpoint type {path.suffix!r} for {path}; use .pkl (EDM), .pt/.pth/.ckpt (torch), "
        ".safetensors, or a genloop generation folder"
    )


def check_checkpoint(path: str | os.PathLike[str], event_shape: tuple[int, ...] | None = None) -> NetworkWeights:
    """Read ``path`` as :func:`read_network_weights` does (``model.init`` before a run writes
    anything) and check that it holds weights and, where it records one, the image shape
    ``event_shape``. Problems are :class:`DataError` / :class:`ConfigError` starting ``model.init:``."""
    try:
        weights = read_network_weights(path)
    except DataError as exc:
        raise DataError(f"model.init: {exc}") from None
    if not weights.state:
        raise DataError(f"model.init: {path} holds no network weights")
    recorded = weights.meta.get("event_shape") if weights.source != "genloop" else None
    if event_shape is not None and isinstance(recorded, list) and tuple(recorded) != tuple(event_shape):
        raise ConfigError(f"model.init: {path} holds a network for images of shape {tuple(recorded)}; "
                          f"the data have shape {tuple(event_shape)}")
    return weights


__all__ = [
    "PersistentRecord", "ModuleRecord", "NetworkWeights", "read_edm_pickle", "record_state_dict",
    "convert_edm_pickle", "edm_architecture", "read_torch_checkpoint", "read_network_weights", "check_checkpoint",
    "WEIGHTS_FORMAT",
]
