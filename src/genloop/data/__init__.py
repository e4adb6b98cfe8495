"""Real data sources, available by registered name (``make_data("two_moons", noise=0.05)``)."""

from __future__ import annotations

from typing import Any

from genloop.data.base import DataSource, FiniteDataSource, RealSplit, split_real
from genloop.registry import Registry

DATASETS: Registry[DataSource] = Registry("data set")
register_data = DATASETS.register


def make_data(name: str, **options: Any) -> DataSource:
    """Build the data source registered as ``name`` with validated ``options``."""
    _import_sources()
    return DATASETS.create(name, **options)


def available_data() -> list[str]:
    """Names of every registered data source."""
    _import_sources()
    return DATASETS.names()


_SOURCE_MODULES = ["genloop.data.toy", "genloop.data.arrays", "genloop.data.images"]


def _import_sources() -> None:
    import importlib

    for module in _SOURCE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


__all__ = ["DataSource", "FiniteDataSource", "RealSplit", "split_real", "DATASETS", "register_data", "make_data", "available_data"]
