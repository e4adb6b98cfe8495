"""The preflight's knowledge that needs no weights and no torch: feature dimensions, data kinds."""

from __future__ import annotations

import numpy as np

from genloop.data import make_data
from genloop.metrics.images import FEATURE_DIMS, feature_dim
from genloop.sweep.preflight import probe_data


def test_feature_dimensions_equal_the_extractors() -> None:
    """The preflight refuses FID with n <= dim from these numbers: they must be the networks'."""
    from genloop.metrics.features.classifier import ClassifierFeatures
    from genloop.metrics.features.inception import InceptionFeatures

    assert FEATURE_DIMS == {"inception": InceptionFeatures.dim, "classifier": ClassifierFeatures.dim}
    assert feature_dim("raw", (3, 8, 8)) == 192 and feature_dim("inception", (3, 8, 8)) == 2048


def test_probe_tells_token_data_from_vectors(tmp_path) -> None:
    assert probe_data(make_data("markov", seq_len=8, n_states=4)).tokens
    assert probe_data(make_data("categorical")).tokens
    assert not probe_data(make_data("two_moons")).tokens
    path = tmp_path / "codes.npy"
    np.save(path, np.arange(20.0).reshape(10, 2))
    probe = probe_data(make_data("npy", path=str(path)))
    assert not probe.tokens and probe.event_shape == (2,) and probe.rows == 10
