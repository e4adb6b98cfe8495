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

from genloop._validation import check_array, check_option, check_positive_int
from genloop.errors import ConfigError, DataError
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


def check_images(X: np.ndarray, name: str, pixel_range: str = "-1,1") -> np.ndarray:
    """Images ``(n, C, H, W)`` in [-1, 1] for a network feature extractor, or a DataError naming the fix.

    Refuses channels-last arrays ``(n, H, W, C)`` (C in {1, 3} last, not first) and values outside
    [-1, 1] (e.g. 0..255 pixels); with ``pixel_range="0,255"`` 0..255 values are converted
    explicitly by ``x / 127.5 - 1``.
    """
    raw = np.asarray(X)
    if raw.ndim != 4:
        hint = "; for feature vectors use features='raw'" if raw.ndim == 2 else ""
        raise DataError(f"{name} images must have shape (n, C, H, W), got shape {raw.shape}{hint}")
    if raw.shape[1] not in (1, 3) and raw.shape[-1] in (1, 3):
        raise DataError(
            f"{name} images of shape {raw.shape} look channels-last (n, H, W, C); genloop expects (n, C, H, W): "
            f"pass X.transpose(0, 3, 1, 2)"
        )
    if raw.shape[1] not in (1, 3):
        raise DataError(f"{name} images need 1 or 3 channels in axis 1 (n, C, H, W), got shape {raw.shape}")
    X = check_array(raw, name=name, min_samples=2)
    lo, hi = float(X.min()), float(X.max())
    if pixel_range == "0,255":
        if lo < 0 or hi > 255:
            raise DataError(f"{name} images with pixel_range='0,255' must lie in [0, 255], got [{lo:g}, {hi:g}]")
        return X.astype(np.float32) / 127.5 - 1.0
    if pixel_range != "-1,1":
        raise ConfigError(f"pixel_range must be '-1,1' or '0,255', got {pixel_range!r}")
    tol = 1e-3
    if lo < -1 - tol or hi > 1 + tol:
        hint = (
            "they look like 0..255 pixels: pass X / 127.5 - 1, or set the option pixel_range='0,255'"
            if hi > 1.5 and lo >= 0
            else "scale them to [-1, 1]"
        )
        raise DataError(f"{name} images must lie in [-1, 1], got values in [{lo:g}, {hi:g}]; {hint}")
    return X


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
    Images are checked first (:func:`check_images`: layout ``(n, C, H, W)``, values in [-1, 1]).

    Options: ``features`` (``inception``, ``classifier``, ``raw``), ``weights_path``,
    ``batch_size`` (images per network batch), ``device``, ``classifier_dataset``/``classifier_seed``,
    ``cache_dir``, ``pixel_range`` (``"-1,1"``; ``"0,255"`` converts 0..255 pixels explicitly),
    ``resize`` (the tool whose Inception input path is reproduced: ``pytorch-fid`` default,
    ``torch-fidelity``, ``clean-fid``; see :data:`genloop.metrics.features.inception.RESIZES`).
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
        pixel_range: Literal["-1,1", "0,255"] = "-1,1",
        resize: Literal["pytorch-fid", "torch-fidelity", "clean-fid"] = "pytorch-fid",
    ) -> None:
        check_positive_int("batch_size", batch_size)
        self.pixel_range = pixel_range
        self.resize = resize
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
                resize=self.resize,
            )
        return self._extractor

    def _inputs(self, X: object, name: str) -> np.ndarray:
        if self.features == "raw":
            return _check_samples(X, name)
        return check_images(np.asarray(X), name, self.pixel_range)

    def _real_side(self, real: np.ndarray) -> Any:
        real = self._inputs(real, "real")
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

    def __call__(
        self,
        generated: np.ndarray,
        real: np.ndarray,
        *,
        model: GenerativeModel | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        """The one path of every feature metric: check ``generated`` (before the extractor is
        built), take the real side (:meth:`_compute_real`, once per real set), extract the
        generated features, then compare them (:meth:`_compare`)."""
        del model
        gen = default_rng(rng)
        generated = self._inputs(generated, "generated")
        real_side = self._real_side(real)
        return self._compare(cached_features(self.extractor, generated), real_side, real, gen)

    def _compare(self, feats: np.ndarray, real_side: Any, real: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """The metric's values from the generated features and the real side (``real``: the raw real set)."""
        raise NotImplementedError


#: below this many samples per set, FID's 1/N bias and noise matter: ``fid`` adds KID by default
SMALL_SET = 5000

#: Feature dimensions of the network extractors, known without loading any weights (equal to
#: ``InceptionFeatures.dim`` and ``ClassifierFeatures.dim``; a test checks it), so that the
#: preflight needs no torch.
FEATURE_DIMS = {"inception": 2048, "classifier": 64}


def feature_dim(features: str, event_shape: tuple[int, ...]) -> int:
    """The dimension of the features a metric compares: the network's, or the flattened sample's (``raw``)."""
    return FEATURE_DIMS[features] if features in FEATURE_DIMS else int(np.prod(event_shape, dtype=np.int64))


@register_metric("fid")
class FID(FeatureMetric):
    """Fréchet distance between feature Gaussians (FID with ``features="inception"``).

    Keys: ``fid``; ``fid_se`` (its standard error from ``se_splits`` random halvings of the
    generated set, :func:`~genloop.metrics.frechet.split_se`; 0 disables); with ``fid_inf=True``
    also ``fid_inf``/``fid_inf_se`` (Chong & Forsyth's extrapolation,
    :func:`~genloop.metrics.frechet.fid_infinity`); with ``kid`` (``None``: when either set has
    fewer than 5,000 samples) also ``fid_kid``, ``fid_kid_se``: the KID of the same features
    (unbiased, the better companion on small sets; subsets of ``min(1000, n)``), named apart
    from the ``kid`` metric's keys so that both can be configured. A warning is logged once when ``fid_se`` exceeds
    ``max_relative_se`` of the value: ``n_eval`` is then too small to rank models by FID.

    ``allow_rank_deficient`` permits ``n <= feature dim`` (otherwise a DataError);
    ``disk_cache`` stores the real statistics under ``cache_dir``/stats (default
    ``~/.cache/genloop/stats``, at most ``cache_max_bytes``) keyed by the real data's content
    hash and the extractor id.
    """

    def __init__(
        self,
        allow_rank_deficient: bool = False,
        disk_cache: bool = True,
        cache_max_bytes: int | None = None,
        se_splits: int = 2,
        fid_inf: bool = False,
        kid: bool | None = None,
        max_relative_se: float = 0.1,
        **feature_options: Any,
    ) -> None:
        super().__init__(**feature_options)
        check_option("se_splits", se_splits, ge=0)
        self.allow_rank_deficient = allow_rank_deficient
        self.disk_cache = disk_cache
        self.cache_max_bytes = cache_max_bytes
        self.se_splits = se_splits
        self.fid_inf = fid_inf
        self.kid = kid
        self.max_relative_se = max_relative_se
        self._warned = False

    def check_sizes(self, event_shape: tuple[int, ...], *, n_generated: int, n_real: int) -> None:
        """Before a run: each set needs more samples than feature dimensions (the covariances of
        the Fréchet distance are otherwise singular), unless ``allow_rank_deficient``."""
        if self.allow_rank_deficient:
            return
        dim = feature_dim(self.features, event_shape)
        for what, n, key in (("generated", n_generated, "loop.n_eval"), ("real", n_real, "data.n_heldout")):
            if n <= dim:
                raise ConfigError(
                    f"metric 'fid' with features={self.features!r} compares {dim}-dimensional features; the {what} set "
                    f"has {n} samples (need more than {dim}, else the covariance is rank-deficient): raise {key}, "
                    "use lower-dimensional features, or set allow_rank_deficient: true"
                )

    def _stats_cache(self) -> StatsCache:
        root = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        return StatsCache(root / "stats", max_bytes=self.cache_max_bytes)

    def _compute_real(self, real: np.ndarray, key: str) -> tuple[FeatureStats, str]:
        extractor = self.extractor
        disk_key = hashlib.blake2b(f"{key}|{extractor.id}".encode(), digest_size=20).hexdigest()
        cache = self._stats_cache() if self.disk_cache else None
        if cache is not None:
            stats = cache.get(disk_key)
            if stats is not None:
                logger.debug("fid: real statistics read from %s", cache.path(disk_key))
                return stats, key
        stats = FeatureStats.from_features(cached_features(extractor, real, key), batch_size=4096)
        if cache is not None:
            cache.put(disk_key, stats, {"extractor": extractor.id, "data_hash": key})
        return stats, key

    def _compare(self, feats: np.ndarray, real_side: tuple[FeatureStats, str], real: np.ndarray,
                 rng: np.random.Generator) -> dict[str, float]:
        from genloop.metrics.frechet import fid_infinity, split_se

        real_stats, real_key = real_side
        gen_stats = FeatureStats.from_features(feats, batch_size=4096)
        value = frechet_distance(gen_stats, real_stats, allow_rank_deficient=self.allow_rank_deficient)
        out = {"fid": value}
        if self.se_splits:
            out["fid_se"] = split_se(feats, real_stats, rng=rng, n_splits=self.se_splits)
            if not self._warned and not out["fid_se"] <= self.max_relative_se * max(value, 1e-12):
                logger.warning(
                    "fid: %d generated samples give FID %.4g with standard error %.2g (> %.0f%% of the value, or "
                    "unknown): too few for a stable ranking of models; raise n_eval, or compare by kid / fid_inf",
                    feats.shape[0], value, out["fid_se"], 100 * self.max_relative_se,
                )  # fmt: skip
                self._warned = True
        if self.fid_inf:
            out.update({k: v for k, v in fid_infinity(feats, real_stats, rng=rng).items() if k != "fid_inf_slope"})
        n_real = real_stats.n
        if self.kid or (self.kid is None and min(feats.shape[0], n_real) < SMALL_SET):
            from genloop.metrics.prdc import kid

            real_feats = cached_features(self.extractor, self._inputs(real, "real"), real_key)
            res = kid(generated=feats, real=real_feats, subset_size=min(1000, feats.shape[0], real_feats.shape[0]),
                      rng=rng, device=self.device)  # fmt: skip
            out.update({"fid_kid": res["kid"], "fid_kid_se": res["kid_se"]})
        return out


@register_metric("prdc")
class PRDC(FeatureMetric):
    """Precision, recall (Kynkäänniemi et al. 2019), density, coverage (Naeem et al. 2020).

    ``k`` nearest neighbours (3 as in the paper); ``knn_batch_size`` rows per distance block
    (default: 1024 on a CPU, 8192 on a GPU; results do not depend on it);
    ``distance_dtype`` sets the precision of the first pass only (results are exact float64
    decisions whatever it is); ``boundary`` ``"closed"`` (``d <= r``, the papers) or ``"open"``
    (``d < r``, the ``prdc`` package). The real k-NN radii are computed once per real set. Keys:
    the four values and their standard errors (``precision_se``, ...; see
    :func:`genloop.metrics.prdc.prdc`).
    """

    def __init__(
        self,
        k: int = 3,
        knn_batch_size: int | None = None,
        distance_dtype: Literal["auto", "bfloat16", "float32", "float64"] = "auto",
        boundary: Literal["closed", "open"] = "closed",
        **feature_options: Any,
    ) -> None:
        super().__init__(**feature_options)
        if k < 1 or (knn_batch_size is not None and knn_batch_size < 1):
            raise ConfigError(f"k and knn_batch_size must be positive integers, got {k}, {knn_batch_size}")
        self.k = k
        self.knn_batch_size = knn_batch_size
        self.distance_dtype = distance_dtype
        self.boundary = boundary

    def _compute_real(self, real: np.ndarray, key: str) -> tuple[np.ndarray, torch.Tensor]:
        from genloop.metrics.prdc import kth_nn_sq_distances

        feats = cached_features(self.extractor, real, key)
        sq_radii = kth_nn_sq_distances(feats, self.k, self.knn_batch_size, dtype=self.distance_dtype, device=self.device)
        return feats, sq_radii

    def _compare(self, feats: np.ndarray, real_side: tuple[np.ndarray, torch.Tensor], real: np.ndarray,
                 rng: np.random.Generator) -> dict[str, float]:
        del real, rng
        from genloop.metrics.prdc import prdc

        real_feats, sq_radii = real_side
        return prdc(
            generated=feats,
            real=real_feats,
            k=self.k,
            batch_size=self.knn_batch_size,
            device=self.device,
            dtype=self.distance_dtype,
            boundary=self.boundary,
            real_sq_radii=sq_radii,
        )


@register_metric("kid")
class KID(FeatureMetric):
    """Kernel inception distance: unbiased cubic-polynomial MMD² averaged over random subsets.

    ``n_subsets`` subsets of ``subset_size`` rows per side drawn with the call's ``rng`` (a
    fixed stream when ``rng`` is None). ``subset_size=None`` (default) uses ``min(1000, n)``
    for the smaller set's ``n``; an explicit ``subset_size`` larger than a set is an error.
    Keys ``kid``, ``kid_std``, ``kid_se``, ``kid_subset_size``.
    """

    def __init__(
        self,
        n_subsets: int = 100,
        subset_size: int | None = None,
        **feature_options: Any,
    ) -> None:
        super().__init__(**feature_options)
        if n_subsets < 1 or (subset_size is not None and subset_size < 2):
            raise ConfigError(f"kid needs n_subsets >= 1 and subset_size >= 2, got {n_subsets}, {subset_size}")
        self.n_subsets = n_subsets
        self.subset_size = subset_size

    def _compute_real(self, real: np.ndarray, key: str) -> np.ndarray:
        return cached_features(self.extractor, real, key)

    def _compare(self, feats: np.ndarray, real_side: np.ndarray, real: np.ndarray,
                 rng: np.random.Generator) -> dict[str, float]:
        del real
        from genloop.metrics.prdc import kid

        real_feats = real_side
        size = self.subset_size if self.subset_size is not None else min(1000, feats.shape[0], real_feats.shape[0])
        return kid(
            generated=feats,
            real=real_feats,
            n_subsets=self.n_subsets,
            subset_size=size,
            rng=rng,
            device=self.device,
        )


__all__ = ["FID", "PRDC", "KID", "FeatureMetric", "cached_features", "check_images", "SMALL_SET"]
