"""Generative model families, available by registered name (``make_model("gmm", ...)``)."""

from __future__ import annotations

from typing import Any

from genloop.models.base import GenerativeModel, NotFittedError
from genloop.registry import Registry

MODELS: Registry[GenerativeModel] = Registry("model")
register_model = MODELS.register


def make_model(name: str, **options: Any) -> GenerativeModel:
    """Build the model registered as ``name`` with validated ``options``."""
    _import_families()
    return MODELS.create(name, **options)


def available_models() -> list[str]:
    """Names of every registered model family."""
    _import_families()
    return MODELS.names()


def _import_families() -> None:
    # Families register themselves on import. Neural families import torch lazily inside
    # their own modules, so listing them stays cheap.
    import importlib

    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a family not written yet
            if exc.name != module:
                raise


_FAMILY_MODULES = [
    "genloop.models.gaussian",
    "genloop.models.gmm",
    "genloop.models.kde",
    "genloop.models.flow",
    "genloop.models.diffusion",
    "genloop.models.fm",
]

__all__ = ["GenerativeModel", "NotFittedError", "MODELS", "register_model", "make_model", "available_models"]
