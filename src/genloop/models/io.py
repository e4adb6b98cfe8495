"""Saving and loading fitted models: safetensors arrays + JSON, never pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from genloop.models.base import GenerativeModel

ARRAYS = "model.safetensors"
META = "model.json"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_model(model: GenerativeModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``folder`` (created) as ``model.safetensors`` + ``model.json``."""
    from genloop.models import MODELS  # local import: registry imports the model modules

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, meta = model.get_state()
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    if model.name not in MODELS:
        raise ValueError(f"model {type(model).__name__} is not registered; cannot be reloaded")
    tmp = folder / (ARRAYS + ".tmp")
    save_file(arrays, str(tmp))
    os.replace(tmp, folder / ARRAYS)
    doc = {"name": model.name, "params": model.get_params(), "state": meta}
    _atomic_write_bytes(folder / META, json.dumps(doc, indent=1, default=_json_default).encode())
    return folder


def load_model(folder: str | os.PathLike[str]) -> GenerativeModel:
    """Rebuild a model saved by :func:`save_model`."""
    from genloop.models import make_model

    folder = Path(folder)
    doc = json.loads((folder / META).read_text())
    model = make_model(doc["name"], **doc["params"])
    model.set_state(load_file(str(folder / ARRAYS)), doc["state"])
    return model


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):  # pydantic option groups (training / network configs)
        return obj.model_dump(mode="json")
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in model metadata")
