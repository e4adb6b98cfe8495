"""The protocol of metrics: ``metric(generated, real) -> dict[str, float]``.

Generated samples come first, real second. A metric may cache statistics of the
real data in :meth:`Metric.prepare`, which the loop calls once per run with the held-out real
set; ``__call__`` must give the same numbers whether or not ``prepare`` ran. Metrics that need
the fitted model (held-out likelihood) set ``requires_model = True`` and receive it as
``model=``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from genloop.models.base import GenerativeModel


class Metric(ABC):
    """A distance or score between generated and real samples."""

    name: ClassVar[str] = ""
    #: The metric needs the fitted model (passed as ``model=``), e.g. held-out NLL.
    requires_model: ClassVar[bool] = False

    def check_ready(self, event_shape: tuple[int, ...]) -> None:
        """Raise a :class:`~genloop.errors.ConfigError` when this metric cannot run on samples
        of ``event_shape`` (a missing weights file, a wrong layout); checked before a run
        writes anything. Default: accept."""
        del event_shape

    def check_sizes(self, event_shape: tuple[int, ...], *, n_generated: int, n_real: int) -> None:
        """Raise a :class:`~genloop.errors.ConfigError` when this metric cannot run on
        ``n_generated`` generated and ``n_real`` real samples of ``event_shape`` (e.g. a Fréchet
        distance with no more samples than feature dimensions); checked before a run writes
        anything. Default: accept."""
        del event_shape, n_generated, n_real

    def prepare(self, real: np.ndarray) -> None:
        """Cache statistics of ``real`` (called once per run). Default: nothing."""
        del real

    @abstractmethod
    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        """The metric's values, keyed by name (e.g. ``{"w2": 0.12}``)."""

    def get_params(self) -> dict[str, Any]:
        """Constructor options (for the resolved config), shared options forwarded by ``**options`` included."""
        from genloop.registry import constructor_options

        return {p: getattr(self, p) for p, _, _ in constructor_options(type(self)) if hasattr(self, p)}
