"""Deprecated: the Ray executor is :mod:`genloop.sweep.executors.ray`; this module re-exports it
for old imports and will be removed."""

from __future__ import annotations

import warnings

from genloop.sweep.executors.ray import MAX_RETRIES, run_on_ray

warnings.warn("genloop.sweep.ray_executor is deprecated: import genloop.sweep.executors.ray",
              DeprecationWarning, stacklevel=2)

__all__ = ["MAX_RETRIES", "run_on_ray"]
