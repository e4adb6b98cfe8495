"""Generative model families, available by registered name (``make_model("gmm", ...)``)."""

from __future__ import annotations

from typing import Any

from genloop.models.base import GenerativeModel, NotFittedError
from genloop.registry import Registry

MODELS: Registry[GenerativeModel] = Registry(
    "model",
    modules=[
        "genloop.models.gaussian",
        "genloop.models.gmm",
        "genloop.models.kde",
        "genloop.models.student_t",
        "genloop.models.flow",
        "genloop.models.diffusion",
        "genloop.models.fm",
        "genloop.models.categorical",
        "genloop.models.ngram",
        "genloop.models.regression",
        "genloop.models.lm",
        "genloop.models.hf_lm",
        "genloop.models.torch_module",
        "genloop.models.hf_diffusers",
    ],
    group="genloop.models",
    base=GenerativeModel,
)
register_model = MODELS.register


def make_model(name: str, **options: Any) -> GenerativeModel:
    """Build the model registered as ``name`` with validated ``options``."""
    return MODELS.create(name, **options)


def available_models() -> list[str]:
    """Names of every registered model family."""
    return MODELS.names()


__all__ = ["GenerativeModel", "NotFittedError", "MODELS", "register_model", "make_model", "available_models"]
