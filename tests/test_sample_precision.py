"""Sampling precision and compilation of the neural families (``train.sample_precision``,
``train.sample_compile``): bfloat16 evaluations change the samples by about bfloat16's rounding
and nothing else; float32 and CPU compilation leave them bit for bit."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from genloop.errors import ConfigError
from genloop.models import make_model

X = np.tanh(np.random.default_rng(0).normal(size=(32, 1, 8, 8)))
NETWORK = {"kind": "songunet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]}


def _edm(**train):  # noqa: ANN202 - an EDM model
    model = make_model("edm", network=NETWORK, train={"samples": 64, "batch_size": 16, "device": "cpu", **train},
                       num_steps=5, sample_batch_size=8)
    model.fit(X, rng=np.random.default_rng(1))
    return model


def test_bfloat16_sampling_moves_samples_by_bfloat16_rounding_only() -> None:
    ref = _edm()
    low = _edm(sample_precision="bfloat16")
    for k, v in ref.get_state()[0].items():  # training is unchanged by the sampling precision
        assert np.array_equal(v, low.get_state()[0][k]), k
    a = ref.sample(16, rng=np.random.default_rng(3))
    b = low.sample(16, rng=np.random.default_rng(3))
    diff = np.abs(a - b)
    # the network runs in bfloat16 (unit round-off 2^-8 of its output), the sampler's state in
    # float64: the samples differ, by far less than the network's own precision times the scale
    assert diff.max() > 0
    assert diff.max() < 2.0**-8 * 4 * np.abs(a).max()
    # and the second draw with the same seed is identical (bf16 is deterministic on CPU)
    assert np.array_equal(b, low.sample(16, rng=np.random.default_rng(3)))


def test_sample_compile_on_cpu_is_a_logged_no_op(caplog: pytest.LogCaptureFixture) -> None:
    ref = _edm()
    comp = _edm(sample_compile=True)
    with caplog.at_level(logging.INFO, logger="genloop.models.neural.base"):
        b = comp.sample(8, rng=np.random.default_rng(5))
    assert "sample_compile applies on CUDA only" in caplog.text
    assert np.array_equal(ref.sample(8, rng=np.random.default_rng(5)), b)


def test_flows_refuse_bfloat16_sampling() -> None:
    with pytest.raises(ConfigError, match="not available for flows"):
        make_model("flow", train={"sample_precision": "bfloat16"})
