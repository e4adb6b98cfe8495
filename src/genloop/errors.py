"""Exceptions raised by genloop for bad input.

Every user-facing problem (a bad config value, a missing file, non-finite data) is raised as a
:class:`GenloopError` subclass with a message that names the problem. The CLI turns these into
one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations


class GenloopError(Exception):
    """Base class of genloop's user-facing errors."""


class ConfigError(GenloopError, ValueError):
    """A configuration value or option is invalid (unknown key, out of range, unknown name)."""


class DataError(GenloopError, ValueError):
    """Input data is invalid: missing file, wrong shape, NaN or infinite values."""


class RunLockedError(GenloopError, RuntimeError):
    """Another process holds the lock of a run folder."""


class DiskFullError(GenloopError, OSError):
    """The disk holding a run folder is full; finished generations are kept."""


class RunFailedError(GenloopError, RuntimeError):
    """A run stopped before it finished (a worker process died); the message says how to resume."""
