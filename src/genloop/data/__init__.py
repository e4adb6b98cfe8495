"""Real data sources, available by registered name (``make_data("two_moons", noise=0.05)``)."""

from __future__ import annotations

from typing import Any

from genloop.data.base import DataSource, FiniteDataSource, RealSplit, split_real
from genloop.registry import Registry

DATASETS: Registry[DataSource] = Registry(
    "data set",
    modules=["genloop.data.toy", "genloop.data.arrays", "genloop.data.images", "genloop.data.discrete", "genloop.data.regression"],
    group="genloop.data",
    base=DataSource,
)
register_data = DATASETS.register


def make_data(name: str, **options: Any) -> DataSource:
    """Build the data source registered as ``name`` with validated ``options``."""
    return DATASETS.create(name, **options)


def available_data() -> list[str]:
    """Names of every registered data source."""
    return DATASETS.names()


__all__ = ["DataSource", "FiniteDataSource", "RealSplit", "split_real", "DATASETS", "register_data", "make_data", "available_data"]
