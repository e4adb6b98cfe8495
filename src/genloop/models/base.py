"""The protocol every generative model family implements (``genloop.GenerativeModel``).

A model keeps its hyper-parameters as constructor arguments stored under the same attribute
names (as in scikit-learn), learns with :meth:`GenerativeModel.fit`, draws with
:meth:`GenerativeModel.sample`, and, when it has an exact likelihood, evaluates
:meth:`GenerativeModel.log_prob`. Its learned state is a flat mapping of named arrays plus a
JSON-able mapping, which is all that checkpoints store (no pickling).

What the loop needs from a model, so that runs are exact (docs/extending.md):

* ``fit(X, rng=..., init=...)`` draws all its randomness from ``rng`` and, when
  ``supports_warm_start``, starts from ``init``'s state (the previous generation's θ_t, which
  Bertrand et al. 2024, Algorithm 1, retrains from) without mutating it;
* ``sample(n, rng=...)`` is a function of the state and ``rng`` alone (same seed, same samples);
* ``get_state()`` holds everything the next ``fit(init=self)`` and ``sample`` read, so that a
  run killed between generations and resumed from the checkpoint continues bit for bit.

:func:`genloop.testing.check_model` checks all of this for any class.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from typing_extensions import Self


class NotFittedError(RuntimeError):
    """A model was used before :meth:`GenerativeModel.fit`."""


class GenerativeModel(ABC):
    """A generative model family behind one contract.

    Subclasses implement :meth:`fit`, :meth:`sample`, :meth:`get_state` and
    :meth:`set_state`; density models also implement :meth:`log_prob` and set
    ``has_log_prob = True``. Fitted attributes end in ``_``; ``event_shape_`` is the shape
    of one sample, set by :meth:`fit` and :meth:`set_state`.
    """

    name: ClassVar[str] = ""
    # ---- capability flags -----------------------------------------------------------------
    #: has an exact density: :meth:`log_prob` is implemented (likelihood metrics use it)
    has_log_prob: ClassVar[bool] = False
    #: a neural network trained by gradient steps (the shared trainer; a training budget)
    is_neural: ClassVar[bool] = False
    #: ``fit(..., init=prev)`` starts from ``prev``'s state (fine-tuning); ``False`` when the
    #: fit is closed-form or ignores ``init`` (then ``retrain: finetune`` equals ``scratch``)
    supports_warm_start: ClassVar[bool] = True

    event_shape_: tuple[int, ...]

    # ---- hyper-parameters ----------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments of this model (read back from same-named attributes)."""
        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p, param in sig.parameters.items()
            if p != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }

    def clone(self) -> Self:
        """A new, unfitted model with the same hyper-parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    # ---- learning and drawing ------------------------------------------------------------
    @abstractmethod
    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Fit to samples ``X`` of shape ``(n, *event_shape)``; return ``self``.

        ``init`` is the previous generation's fitted model when the loop fine-tunes (warm
        start); the model copies what it needs from it and never mutates it. ``None`` means
        training from scratch.
        """

    @abstractmethod
    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` samples, an array of shape ``(n, *event_shape_)``."""

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log-density of each row of ``X`` (shape ``(n,)``), for density models."""
        raise NotImplementedError(f"model {self.name!r} has no exact likelihood")

    def check_data(self, event_shape: tuple[int, ...], n: int) -> None:
        """Raise a :class:`~genloop.errors.ConfigError` when this model cannot fit ``n`` samples
        of shape ``event_shape`` (checked before a run writes anything). Default: accept."""
        del event_shape, n

    # ---- state for checkpoints -------------------------------------------------------------
    @abstractmethod
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state as (named arrays, JSON-able metadata)."""

    @abstractmethod
    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore the fitted state written by :meth:`get_state`."""

    # ---- helpers --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` or :meth:`set_state` has run."""
        return hasattr(self, "event_shape_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"model {self.name!r} is not fitted; call fit() first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
