"""genloop: run, measure and predict iterative retraining of generative models on their own data."""

from __future__ import annotations

__version__ = "0.1.0"
