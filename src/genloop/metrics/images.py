"""Registered feature-space metrics for images: ``fid``, ``prdc`` and ``kid``.

Each metric maps both sets through a feature extractor chosen by the ``features`` option
(``inception``: FID Inception-v3 pool3; ``classifier``: a digit classifier's penultimate layer;
``raw``: flattened pixels; see :mod:`genloop.metrics.features`) and compares the features:

* ``fid`` — Fréchet distance (:mod:`genloop.metrics.frechet`); key ``fid``.
* ``prdc`` — k-NN precision, recall, density, coverage (:func:`genloop.metrics.prdc.prdc`),
  k = 3 by default as in the paper; keys ``precision``, ``recall``, ``density``, ``coverage``.
* ``kid`` — kernel inception distance (:func:`genloop.metrics.prdc.kid`); keys ``kid``, ``kid_std``.

Real-data work is done once: :meth:`prepare` (or the first call) computes the real features /
statistics / k-NN radii and keeps them keyed by a content hash of the real array, so a later
call with the same real data reuses them and a call with other data recomputes (results never
depend on whether ``prepare`` ran). ``fid`` also caches real statistics on disk, keyed by the
content hash and the extractor id (``disk_cache``, folder ``cache_dir``/stats). Features of the
most recent arrays are shared between the three metrics in-process (a small LRU of 4 entries),
so ``fid`` + ``prdc`` + ``kid`` on one generation run the network once per set.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from genloop._validation import check_array
from genloop.errors import ConfigError
from genloop.metrics import register_metric
from genloop.metrics._arrays import content_hash, default_cache_dir, default_rng
from genloop.metrics.base import Metric
from genloop.metrics.features import FeatureExtractor, make_extractor
from genloop.metrics.frechet import FeatureStats, StatsCache, frechet_distance

if TYPE_CHECKING:
    import torch

    from genloop.models.base import GenerativeModel

logger = logging.getLogger(__name__)

_FEATURES: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_FEATURES_MAX = 4


def _check_samples(X: object, name: str) -> np.ndarray:
    return check_array(X, name=name, min_samples=2)


def cached_features(extractor: FeatureExtractor, X: np.ndarray, key: str | None = None) -> np.ndarray:
    """``extractor(X)``, memoised in-process on (extractor id, content hash of ``X``)."""
    if extractor.name == "raw":
        return extractor(X)
    k = (extractor.id, key or content_hash(X))
    if k in _FEATURES:
        _FEATURES.move_to_end(k)
        return _FEATURES[k]
    feats = extractor(X)
    feats.setflags(write=False)
    _FEATURES[k] = feats
    while len(_FEATURES) > _FEATURES_MAX:
        _FEATURES.popitem(last=False)
    return feats


class FeatureMetric(Metric):
    """Base of the feature-space metrics: builds the extractor and caches real-side results.

    The extractor is built on first use (``prepare`` or the first call), so a missing
    Inception weight file raises its ConfigError there, before any generation is scored.
    """

    def __init__(
        self,
        features: Literal["inception", "classifier", "raw"] = "inception",
        weights_path: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        classifier_dataset: Literal["digits", "mnist"] = "digits",
        classifier_seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        self.features = features
        self.weights_path = weights_path
        self.batch_size = batch_size
        self.device = device
        self.classifier_dataset = classifier_dataset
        self.classifier_seed = classifier_seed
        self.cache_dir = cache_dir
        self._extractor: FeatureExtractor | None = None
        self._real_key: str | None = None
        self._real_value: Any = None

    @property
    def extractor(self) -> FeatureExtractor:
        """The feature extractor (built on first use)."""
        if self._extractor is None:
            self._extractor = make_extractor(
                self.features,
                batch_size=self.batch_size,
                device=self.device,
                weights_path=self.weights_path,
                classifier_dataset=self.classifier_dataset,
                classifier_seed=self.classifier_seed,
                cache_dir=self.cache_dir,
            )
        return self._extractor

    def _real_side(self, real: np.ndarray) -> Any:
        real = _check_samples(real, "real")
        key = content_hash(real)
        if self._real_key != key:
            self._real_value = self._compute_real(real, key)
            self._real_key = key
        return self._real_value

    def _compute_real(self, real: np.ndarray, key: str) -> Any:
        raise NotImplementedError

    def check_ready(self, event_shape: tuple[int, ...]) -> None:
        """Before a run: network features need images ``(C, H, W)``, Inception its weight file."""
        if self.features in ("inception", "classifier") and len(event_shape) != 3:
            raise ConfigError(
                f"metric {self.name!r} with features={self.features!r} needs images (C, H, W); the data have "
                f"samples of shape {event_shape}: use features: raw for vectors"
            )
        if self.features == "inception":
            from genloop.metrics.features.inception import find_weights

            find_weights(self.weights_path, self.cache_dir)

    def prepare(self, real: np.ndarray) -> None:
        """Compute and keep what depends on ``real`` only (features, statistics, radii)."""
        self._real_side(real)

    def _generated_features(self, generated: np.ndarray) -> np.ndarray:
        return cached_features(self.extractor, _check_samples(generated, "generated"))


@register_metric("fid")
class FID(FeatureMetric):
    """Fréchet distance between feature Gaussians (FID with ``features="inception"``).

    ``allow_rank_deficient`` permits ``n <= feature dim`` (otherwise a DataError);
    ``disk_cache`` stores the real statistics under ``cache_dir``/stats (default
    ``~/.cache/genloop/stats``) keyed by the real data's content hash and the extractor id.
    """

    def __init__(
        self,
        features: Literal["inception", "classifier", "raw"] = "inception",
        weights_path: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        classifier_dataset: Literal["digits", "mnist"] = "digits",
        classifier_seed: int = 0,
        cache_dir: str | None = None,
        allow_rank_deficient: bool = False,
        disk_cache: bool = True,
    ) -> None:
        super().__init__(features, weights_path, batch_size, device, classifier_dataset, classifier_seed, cache_dir)
        self.allow_rank_deficient = allow_rank_deficient
        self.disk_cache = disk_cache

    def _stats_cache(self) -> StatsCache:
        root = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        return StatsCache(root / "stats")

    def _compute_real(self, real: np.ndarray, key: str) -> FeatureStats:
        extractor = self.extractor
        disk_key = hashlib.blake2b(f"{key}|{extractor.id}".encode(), digest_size=20).hexdigest()
        cache = self._stats_cache() if self.disk_cache else None
        if cache is not None:
            stats = cache.get(disk_key)
            if stats is not None:
                logger.debug("fid: real statistics read from %s", cache.path(disk_key))
                return stats
        stats = FeatureStats.from_features(cached_features(extractor, real, key), batch_size=4096)
        if cache is not None:
            cache.put(disk_key, stats, {"extractor": extractor.id, "data_hash": key})
        return stats

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model, rng
        real_stats = self._real_side(real)
        gen_stats = FeatureStats.from_features(self._generated_features(generated), batch_size=4096)
        value = frechet_distance(gen_stats, real_stats, allow_rank_deficient=self.allow_rank_deficient)
        return {"fid": value}


@register_metric("prdc")
class PRDC(FeatureMetric):
    """Precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem et al. 2020).

    ``k`` nearest neighbours (3 as in the paper); ``knn_batch_size`` rows per distance block
    bounds memory at ``knn_batch_size * N`` distances; ``distance_dtype`` sets the precision of
    the distance computation. The real k-NN radii are computed once per real set.
    """

    def __init__(
        self,
        features: Literal["inception", "classifier", "raw"] = "inception",
        weights_path: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        classifier_dataset: Literal["digits", "mnist"] = "digits",
        classifier_seed: int = 0,
        cache_dir: str | None = None,
        k: int = 3,
        knn_batch_size: int = 1024,
        distance_dtype: Literal["float32", "float64"] = "float32",
    ) -> None:
        super().__init__(features, weights_path, batch_size, device, classifier_dataset, classifier_seed, cache_dir)
        if k < 1 or knn_batch_size < 1:
            raise ConfigError(f"k and knn_batch_size must be positive integers, got {k}, {knn_batch_size}")
        self.k = k
        self.knn_batch_size = knn_batch_size
        self.distance_dtype = distance_dtype

    def _compute_real(self, real: np.ndarray, key: str) -> tuple[np.ndarray, torch.Tensor]:
        import torch

        from genloop.metrics._arrays import resolve_device
        from genloop.metrics.prdc import kth_nn_sq_distances

        feats = cached_features(self.extractor, real, key)
        dtype = torch.float64 if self.distance_dtype == "float64" else torch.float32
        with torch.no_grad():
            R = torch.tensor(feats, dtype=dtype, device=resolve_device(self.device))  # cached features are read-only
            sq_radii = kth_nn_sq_distances(R, self.k, self.knn_batch_size)
        return feats, sq_radii

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model, rng
        from genloop.metrics.prdc import prdc

        real_feats, sq_radii = self._real_side(real)
        return prdc(
            self._generated_features(generated),
            real_feats,
            k=self.k,
            batch_size=self.knn_batch_size,
            device=self.device,
            dtype=self.distance_dtype,
            real_sq_radii=sq_radii,
        )


@register_metric("kid")
class KID(FeatureMetric):
    """Kernel inception distance: unbiased cubic-polynomial MMD² averaged over random subsets.

    ``n_subsets`` subsets of ``subset_size`` rows per side (capped at the set sizes), drawn with
    the call's ``rng`` (a fixed stream when ``rng`` is None). Keys ``kid`` and ``kid_std``.
    """

    def __init__(
        self,
        features: Literal["inception", "classifier", "raw"] = "inception",
        weights_path: str | None = None,
        batch_size: int = 64,
        device: str = "auto",
        classifier_dataset: Literal["digits", "mnist"] = "digits",
        classifier_seed: int = 0,
        cache_dir: str | None = None,
        n_subsets: int = 100,
        subset_size: int = 1000,
    ) -> None:
        super().__init__(features, weights_path, batch_size, device, classifier_dataset, classifier_seed, cache_dir)
        if n_subsets < 1 or subset_size < 2:
            raise ConfigError(f"kid needs n_subsets >= 1 and subset_size >= 2, got {n_subsets}, {subset_size}")
        self.n_subsets = n_subsets
        self.subset_size = subset_size

    def _compute_real(self, real: np.ndarray, key: str) -> np.ndarray:
        return cached_features(self.extractor, real, key)

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        del model
        from genloop.metrics.prdc import kid

        real_feats = self._real_side(real)
        return kid(
            self._generated_features(generated),
            real_feats,
            n_subsets=self.n_subsets,
            subset_size=self.subset_size,
            rng=default_rng(rng),
            device=self.device,
        )


__all__ = ["FID", "PRDC", "KID", "FeatureMetric", "cached_features"]
