"""Deprecated: the per-λ predictions of a config's run are :mod:`genloop.theory.config_theory`
(the command is :mod:`genloop.cli.theory`); this module re-exports them for old imports and
will be removed."""

from __future__ import annotations

import warnings

from genloop.theory.config_theory import config_theory, terminal_unicode, theory_text

warnings.warn("genloop.theory.cli is deprecated: import genloop.theory.config_theory", DeprecationWarning, stacklevel=2)

__all__ = ["config_theory", "terminal_unicode", "theory_text"]
