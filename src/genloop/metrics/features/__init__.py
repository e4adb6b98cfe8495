"""Feature extractors for image metrics, selectable by name (``raw``, ``inception``, ``classifier``).

An extractor maps a batch of samples ``(n, *shape)`` to feature vectors ``(n, dim)``. Fréchet
distances and k-NN metrics are computed on these features (FID and
precision/recall on Inception pool3 features). Each extractor has an :attr:`~FeatureExtractor.id`
string that identifies it exactly (network, weights, version) and keys caches of real-data
statistics.

* ``raw`` — the flattened samples themselves (:class:`~genloop.metrics.features.raw.RawFeatures`).
* ``inception`` — FID Inception-v3 pool3 features, 2048-d, weights from a local file
  (:class:`~genloop.metrics.features.inception.InceptionFeatures`).
* ``classifier`` — the penultimate layer of a small CNN trained on digits / MNIST labels
  (:class:`~genloop.metrics.features.classifier.ClassifierFeatures`), giving a "Fréchet
  classifier distance" where no Inception weights are available.
"""

from __future__ import annotations

from typing import Literal

from genloop._validation import check_positive_int
from genloop.errors import ConfigError
from genloop.metrics.features.base import FeatureExtractor, FeatureName

def make_extractor(
    name: str,
    *,
    batch_size: int = 64,
    device: str = "auto",
    weights_path: str | None = None,
    classifier_dataset: Literal["digits", "mnist"] = "digits",
    classifier_seed: int = 0,
    cache_dir: str | None = None,
    resize: str = "pytorch-fid",
) -> FeatureExtractor:
    """Build the feature extractor called ``name`` (``raw``, ``inception`` or ``classifier``).

    ``batch_size`` and ``device`` (``"auto"``: CUDA if available) apply to network extractors;
    ``weights_path`` to ``inception``; ``classifier_dataset``/``classifier_seed`` to
    ``classifier``; ``cache_dir`` overrides genloop's cache folder (weights, trained classifier);
    ``resize`` is the Inception resize convention (``pytorch-fid``, ``torch-fidelity``, ``clean-fid``).
    """
    check_positive_int("batch_size", batch_size)
    if name == "raw":
        from genloop.metrics.features.raw import RawFeatures

        return RawFeatures()
    if name == "inception":
        from genloop.metrics.features.inception import InceptionFeatures

        return InceptionFeatures(weights_path=weights_path, batch_size=batch_size, device=device, cache_dir=cache_dir,
                                 resize=resize)  # fmt: skip
    if name == "classifier":
        from genloop.metrics.features.classifier import ClassifierFeatures

        return ClassifierFeatures(
            dataset=classifier_dataset, seed=classifier_seed, batch_size=batch_size, device=device, cache_dir=cache_dir
        )
    raise ConfigError(f"unknown features {name!r}; known features: classifier, inception, raw")


__all__ = ["FeatureExtractor", "FeatureName", "make_extractor"]
