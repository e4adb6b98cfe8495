"""genloop: run, measure and predict iterative retraining of generative models on their own data.

>>> import genloop
>>> sorted(genloop.available_models())[:3]  # doctest: +SKIP
['cfm', 'ddpm', 'edm']
"""

from __future__ import annotations

from genloop.data import available_data, make_data
from genloop.loop import GenerationRecord, LoopState, run_loop
from genloop.metrics import available_metrics, make_metric
from genloop.models import GenerativeModel, available_models, make_model

__version__ = "0.1.0"

__all__ = [
    "GenerativeModel", "run_loop", "GenerationRecord", "LoopState",
    "make_model", "available_models", "make_data", "available_data", "make_metric", "available_metrics",
    "__version__",
]
