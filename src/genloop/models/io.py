"""Saving and loading fitted models: safetensors arrays + JSON, never pickle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as safetensors_bytes

from genloop import _json as strict_json
from genloop._fs import atomic_write_bytes
from genloop.models.base import GenerativeModel

ARRAYS = "model.safetensors"
META = "model.json"


def save_model(model: GenerativeModel, folder: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``folder`` (created) as ``model.safetensors`` + ``model.json``."""
    from genloop.models import MODELS  # local import: registry imports the model modules

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, meta = model.get_state()
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    # the name that finds the class again: its registered name, else its import path
    name = MODELS.name_of(type(model))
    if "<locals>" in name:
        raise ValueError(f"model {type(model).__name__} is defined inside a function; it cannot be reloaded "
                         "(define it at module level or register it)")
    # Serialised in memory and written by Python, so a full disk is an OSError (ENOSPC) like
    # every other write, and the file gets the ordinary mode (safetensors' own writer: 0600).
    atomic_write_bytes(folder / ARRAYS, safetensors_bytes(arrays))
    doc = {"name": name, "params": model.get_params(), "state": meta}
    atomic_write_bytes(folder / META, strict_json.dumps(doc, indent=1, default=_json_default).encode())
    return folder


def load_model(folder: str | os.PathLike[str]) -> GenerativeModel:
    """Rebuild a model saved by :func:`save_model`."""
    from genloop.models import make_model

    from genloop.errors import DataError, GenloopError

    folder = Path(folder)
    try:
        doc = strict_json.loads((folder / META).read_text(encoding="utf-8"))
        name, params, state = doc["name"], doc["params"], doc["state"]
        arrays = load_file(str(folder / ARRAYS))
    except FileNotFoundError as exc:
        raise DataError(f"checkpoint {folder} is incomplete: {Path(exc.filename or '').name or exc} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"checkpoint {folder} is damaged and cannot be loaded ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for bad bytes
        raise DataError(f"checkpoint {folder} is damaged and cannot be loaded ({exc})") from None
    model = make_model(name, **params)
    try:
        model.set_state(arrays, state)
    except GenloopError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DataError(f"checkpoint {folder} does not fit model {name!r} ({type(exc).__name__}: {exc})") from None
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
