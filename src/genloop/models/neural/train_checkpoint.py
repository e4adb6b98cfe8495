"""Checkpoints *inside* one training run, so a killed generation resumes where it stopped.

A neural generation of the paper's size trains for hours to days; the loop's checkpoints are
written only once a generation is done. :class:`TrainCheckpointing` makes the shared training
loop (:func:`~genloop.models.neural.trainer.train`) write, every ``every_samples`` samples seen,
everything the rest of the run depends on:

* the network, its EMA and Adam's state (moments and step counts) — tensors;
* the training generator's state (and the device generator's, and the generator of the
  global-RNG scope that drives dropout), i.e. every random stream still to be drawn;
* the position in the data order (the current epoch's permutation and the index in it), the
  step count, the samples seen, and the loss / learning-rate history so far.

Format: ``step-<k>.safetensors`` holds every tensor, ``step-<k>.json`` the rest (Adam's
param groups, counters, a fingerprint of the fit). Nothing is pickled. Each file is written to
a temporary name, flushed and moved into place with :func:`os.replace`; the JSON is written
last and names its tensor file and size, so a checkpoint is *complete* exactly when its JSON
exists and parses. On CPU a resumed fit is bit-identical to an uninterrupted one (the test
``tests/test_train_resume.py`` shows it); on CUDA it is as exact as CUDA's kernels are.

The fingerprint (budget, batch size, data shape and hash, network parameter names and shapes,
and what the caller adds, e.g. the model family and options) must match on resume: a
checkpoint written by a different fit raises :class:`~genloop.errors.ConfigError` instead of
silently continuing the wrong training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genloop import _json as strict_json
from genloop._fs import atomic_write_with
from genloop.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "genloop-train-checkpoint-1"
_NAME = re.compile(r"^step-(\d{9})\.json$")


@dataclass(frozen=True)
class TrainCheckpointing:
    """Where and how often the training loop saves its state (``every_samples`` ≥ 1).

    ``keep`` complete checkpoints are kept (older ones are deleted after a newer one is
    complete); the caller deletes the directory once the generation itself is saved.
    """

    directory: Path
    every_samples: int
    keep: int = 2

    def __post_init__(self) -> None:
        if int(self.every_samples) != self.every_samples or self.every_samples < 1:
            raise ConfigError(f"training checkpoints: every_samples must be an integer >= 1, got {self.every_samples!r}")
        if self.keep < 1:
            raise ConfigError(f"training checkpoints: keep must be >= 1, got {self.keep}")
        object.__setattr__(self, "directory", Path(self.directory))


def data_digest(data: torch.Tensor) -> str:
    """A BLAKE2b digest of a tensor's dtype, shape and bytes (identifies the training set)."""
    h = hashlib.blake2b(digest_size=16)
    t = data.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def module_signature(module: torch.nn.Module) -> str:
    """A digest of a module's state-dict names, shapes and dtypes (identifies the architecture)."""
    h = hashlib.blake2b(digest_size=16)
    for k, v in module.state_dict().items():
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
    return h.hexdigest()


# ---- writing -------------------------------------------------------------------------------------
def _tensor_state(prefix: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    # no copy on CPU (the tensors are written out before training takes another step), except
    # for tensors sharing storage with one already taken, which safetensors refuses
    seen = {t.untyped_storage().data_ptr() for t in out.values() if t.numel()}
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[f"{prefix}{k}"] = t


def optimizer_to_parts(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors ``optim.<param>.<key>`` and JSON.

    ``torch.save`` would pickle it; here tensors go to safetensors and everything else (param
    groups, non-tensor per-parameter entries) to JSON.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{int(idx)}.{key}"] = v.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(int(idx)), {})[key] = v
    return tensors, {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}


def optimizer_from_parts(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_parts`."""
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    return {"state": state, "param_groups": json.loads(json.dumps(meta["param_groups"]))}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    return obj


def save_train_checkpoint(
    ckpt: TrainCheckpointing,
    *,
    step: int,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` (tensors + JSON, atomically) and prune older ones."""
    directory = ckpt.directory
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"step-{int(step):09d}"
    st_path = directory / f"{stem}.safetensors"
    atomic_write_with(st_path, lambda tmp: save_file(tensors, str(tmp)))
    doc = {"format": FORMAT, "step": int(step), "tensors": st_path.name, "tensors_bytes": st_path.stat().st_size, **meta}
    data = strict_json.dumps(doc, indent=1).encode()

    def write_json(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write_with(directory / f"{stem}.json", write_json)
    for old in _complete(directory)[: -ckpt.keep]:
        for p in directory.glob(f"step-{old:09d}.*"):
            p.unlink(missing_ok=True)
    log.debug("training checkpoint %s written", directory / stem)
    return directory / f"{stem}.json"


def save_rank_streams(ckpt: TrainCheckpointing, step: int, rank: int, tensors: dict[str, torch.Tensor]) -> None:
    """Write rank ``rank``'s own random streams of checkpoint ``step`` (DDP; rank 0's sit in
    the main file). Written before rank 0 writes the JSON that completes the checkpoint."""
    ckpt.directory.mkdir(parents=True, exist_ok=True)
    path = ckpt.directory / f"step-{int(step):09d}.rank{int(rank)}.safetensors"
    atomic_write_with(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp)))


def load_rank_streams(ckpt: TrainCheckpointing, step: int, rank: int) -> dict[str, torch.Tensor]:
    """Read what :func:`save_rank_streams` wrote."""
    path = ckpt.directory / f"step-{int(step):09d}.rank{int(rank)}.safetensors"
    if not path.is_file():
        raise ConfigError(f"training checkpoint {step} in {ckpt.directory} has no streams for rank {rank}")
    return load_file(str(path))


# ---- reading -------------------------------------------------------------------------------------
def _complete(directory: Path) -> list[int]:
    steps = []
    for p in directory.glob("step-*.json") if directory.is_dir() else []:
        m = _NAME.match(p.name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def load_latest(ckpt: TrainCheckpointing) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest complete checkpoint in the directory as ``(tensors, meta)``, or ``None``.

    A JSON that does not parse or whose tensor file is missing or of the wrong size (a write
    interrupted by something worse than a kill) is skipped with a warning.
    """
    for step in reversed(_complete(ckpt.directory)):
        path = ckpt.directory / f"step-{step:09d}.json"
        try:
            meta = strict_json.loads(path.read_text())
            st_path = ckpt.directory / meta["tensors"]
            if meta.get("format") != FORMAT or st_path.stat().st_size != meta["tensors_bytes"]:
                raise ValueError("format or size mismatch")
            tensors = load_file(str(st_path))
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable training checkpoint %s (%s)", path, exc)
            continue
        return tensors, meta
    return None


def check_fingerprint(found: dict[str, Any], expected: dict[str, Any], directory: Path) -> None:
    """Raise :class:`ConfigError` naming the first entry where a checkpoint's fit differs."""
    for key in sorted(set(found) | set(expected)):
        if found.get(key) != expected.get(key):
            raise ConfigError(
                f"the training checkpoint in {directory} was written by a different fit ({key}: "
                f"{found.get(key)!r} there, {expected.get(key)!r} now); delete the folder to train this generation anew"
            )


def tensor_state(prefix: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    """Put a state dict into ``out`` under ``prefix`` (on the CPU, contiguous; not copied when
    already there, so write ``out`` before the tensors change)."""
    _tensor_state(prefix, state, out)


def sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


__all__ = [
    "TrainCheckpointing",
    "save_train_checkpoint",
    "save_rank_streams",
    "load_rank_streams",
    "load_latest",
    "check_fingerprint",
    "data_digest",
    "module_signature",
    "optimizer_to_parts",
    "optimizer_from_parts",
    "tensor_state",
    "sub_state",
]
