"""Metrics on arrays, available by registered name (``make_metric("w2")``)."""

from __future__ import annotations

from typing import Any

from genloop.metrics.base import Metric
from genloop.registry import Registry

METRICS: Registry[Metric] = Registry("metric")
register_metric = METRICS.register


def make_metric(name: str, **options: Any) -> Metric:
    """Build the metric registered as ``name`` with validated ``options``."""
    _import_metrics()
    return METRICS.create(name, **options)


def available_metrics() -> list[str]:
    """Names of every registered metric."""
    _import_metrics()
    return METRICS.names()


_METRIC_MODULES = ["genloop.metrics.vector", "genloop.metrics.gaussian", "genloop.metrics.images"]


def _import_metrics() -> None:
    import importlib

    for module in _METRIC_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


__all__ = ["Metric", "METRICS", "register_metric", "make_metric", "available_metrics"]
