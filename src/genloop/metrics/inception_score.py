"""Inception Score (Salimans et al. 2016) on the local FID Inception weights.

``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y|x)`` the softmax of the Inception network's 1008
class logits (pool3 times the softmax weights, without the bias, as in the original code and
torch-fidelity's ``logits_unbiased``) and ``p(y)`` the marginal over the split. The standard
protocol splits the samples into 10 contiguous parts, computes the score on each and reports the
mean and standard deviation (``ddof=0``) over the splits. 50,000 samples are customary; the score
is biased downward on fewer (Chong & Forsyth 2020).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np

from genloop._validation import check_option
from genloop.errors import DataError
from genloop.metrics import register_metric
from genloop.metrics.base import Metric

if TYPE_CHECKING:
    from genloop.models.base import GenerativeModel


def inception_score(logits: np.ndarray, *, n_splits: int = 10) -> dict[str, float]:
    """Inception Score from class logits ``(n, classes)``: mean and std over ``n_splits`` contiguous splits.

    Per split ``s``: ``p = softmax(logits_s)``, ``p_y = mean_i p_i``,
    ``IS_s = exp(mean_i sum_c p_ic (log p_ic - log p_yc))``, in float64 with log-softmax. Returns
    ``is`` (mean over splits), ``is_std`` (std, ``ddof=0``) and ``is_se`` (``is_std / sqrt(n_splits)``).
    """
    L = np.asarray(logits, dtype=np.float64)
    if L.ndim != 2 or not np.all(np.isfinite(L)):
        raise DataError(f"inception score needs finite logits of shape (n, classes), got shape {L.shape}")
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 1 or L.shape[0] < n_splits:
        raise DataError(f"inception score with {n_splits} splits needs at least {n_splits} samples, got {L.shape[0]}")
    logp = L - L.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    n = L.shape[0]
    scores = []
    for s in range(n_splits):
        part = logp[s * n // n_splits : (s + 1) * n // n_splits]
        p = np.exp(part)
        log_py = np.log(p.mean(axis=0))
        kl = np.sum(p * (part - log_py[None, :]), axis=1)
        scores.append(math.exp(float(kl.mean())))
    arr = np.asarray(scores)
    return {"is": float(arr.mean()), "is_std": float(arr.std()), "is_se": float(arr.std() / math.sqrt(n_splits))}


@register_metric("inception_score")
class InceptionScore(Metric):
    """Inception Score of the generated images (the real set is not used); keys ``is``, ``is_std``, ``is_se``.

    Needs the local FID Inception weights (``weights_path``, ``$GENLOOP_INCEPTION_WEIGHTS`` or
    the cache; see :mod:`genloop.metrics.features.inception`); images ``(n, C, H, W)`` in [-1, 1].
    """

    def __init__(
        self,
        weights_path: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        cache_dir: str | None = None,
        n_splits: int = 10,
        pixel_range: Literal["-1,1", "0,255"] = "-1,1",
        resize: Literal["pytorch-fid", "torch-fidelity", "clean-fid"] = "pytorch-fid",
    ) -> None:
        check_option("n_splits", n_splits, ge=1)
        self.weights_path = weights_path
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.n_splits = n_splits
        self.pixel_range = pixel_range
        self.resize = resize
        self._extractor = None

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del real, model, rng
        from genloop.metrics.features.inception import InceptionFeatures
        from genloop.metrics.images import check_images

        X = check_images(np.asarray(generated), "generated", self.pixel_range)
        if self._extractor is None:
            self._extractor = InceptionFeatures(self.weights_path, batch_size=self.batch_size, device=self.device,
                                                cache_dir=self.cache_dir, resize=self.resize)  # fmt: skip
        return inception_score(self._extractor.logits(X), n_splits=self.n_splits)


__all__ = ["inception_score", "InceptionScore"]
