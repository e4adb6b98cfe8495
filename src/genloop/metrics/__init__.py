"""Metrics on arrays, available by registered name (``make_metric("w2")``)."""

from __future__ import annotations

from typing import Any

from genloop.metrics.base import Metric
from genloop.registry import Registry

METRICS: Registry[Metric] = Registry(
    "metric",
    modules=["genloop.metrics.vector", "genloop.metrics.gaussian", "genloop.metrics.images", "genloop.metrics.discrete", "genloop.metrics.regression",
             "genloop.metrics.inception_score"],
    group="genloop.metrics",
    base=Metric,
)
register_metric = METRICS.register


def make_metric(name: str, **options: Any) -> Metric:
    """Build the metric registered as ``name`` with validated ``options``."""
    return METRICS.create(name, **options)


def available_metrics() -> list[str]:
    """Names of every registered metric."""
    return METRICS.names()


__all__ = ["Metric", "METRICS", "register_metric", "make_metric", "available_metrics"]
