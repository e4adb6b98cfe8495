"""Deprecated: the library behind ``genloop eval`` is :mod:`genloop.metrics.sets` (the command
itself is :mod:`genloop.cli.eval`); this module re-exports the library's names for old imports
and will be removed."""

from __future__ import annotations

import warnings

from genloop.metrics.sets import Source, evaluate, format_result, open_source

warnings.warn("genloop.metrics.eval_cli is deprecated: import genloop.metrics.sets",
              DeprecationWarning, stacklevel=2)

__all__ = ["Source", "evaluate", "format_result", "open_source"]
