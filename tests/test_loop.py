"""The generation loop: scheme semantics, exact counts, randomness, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.errors import ConfigError
from genloop.loop import parse_lambda, run_loop, synthetic_count
from genloop.models.base import GenerativeModel


class Recorder(GenerativeModel):
    """A test model whose samples are tagged with the generation that drew them.

    Its samples are all equal to ``tag`` (the generation index of the fit), so a training
    set reveals which generations' samples it contains.
    """

    name = "recorder"

    def __init__(self, d: int = 2) -> None:
        self.d = d

    def fit(self, X, *, rng, init=None):
        self.seen_ = np.array(X, copy=True)
        self.tag_ = 0 if init is None else init.tag_ + 1
        self.init_was_given_ = init is not None
        self.event_shape_ = (self.d,)
        return self

    def sample(self, n, *, rng):
        self._check_fitted()
        return np.full((n, self.d), float(self.tag_) + 1000.0)

    def get_state(self):
        return {"seen": self.seen_}, {"tag": self.tag_}

    def set_state(self, arrays, meta):
        self.seen_, self.tag_, self.event_shape_ = arrays["seen"], meta["tag"], (self.d,)


class Source:
    """An infinite data source of standard normal points (for the fresh scheme)."""

    infinite = True
    name = "normal"

    def sample(self, n, *, rng):
        return rng.standard_normal((n, 2))


N = 40
LAMBDAS = [0.0, 0.3, 1.0, 2.5, math.inf]


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("scheme", ["replace", "accumulate", "accumulate-subsample", "fresh"])
def test_exact_counts_and_composition(scheme, lam):
    real = np.random.default_rng(0).standard_normal((N, 2))
    k = {0.0: 0, 0.3: 12, 1.0: 40, 2.5: 100, math.inf: 40}[lam]
    records = list(run_loop(Recorder(), real, lam=lam, generations=4, scheme=scheme, source=Source(), seed=3))
    assert [r.generation for r in records] == [0, 1, 2, 3, 4]
    assert (records[0].n_real, records[0].n_synthetic) == (N, 0)
    np.testing.assert_array_equal(records[0].model.seen_, real)
    for r in records[1:]:
        t = r.generation
        n_real = 0 if math.isinf(lam) else N
        n_synth = t * k if scheme == "accumulate" else k
        assert (r.n_real, r.n_synthetic) == (n_real, n_synth), (scheme, lam, t)
        X = r.model.seen_
        assert X.shape == (n_real + n_synth, 2)
        real_part, synth_part = X[:n_real], X[n_real:]
        if not n_real:
            assert real_part.shape == (0, 2)
        elif scheme == "fresh":
            assert not np.allclose(real_part, real)  # new real data every generation
            assert np.all(np.abs(real_part) < 100)
        else:
            np.testing.assert_array_equal(real_part, real)
        tags = synth_part[:, 0] - 1000.0  # which generation's model drew each synthetic row
        if scheme in ("replace", "fresh"):
            assert np.all(tags == t - 1)  # only the previous model's samples
        elif scheme == "accumulate":
            assert sorted(set(tags.tolist())) == (list(range(t)) if k else [])
            assert all(np.sum(tags == s) == k for s in range(t))
        else:  # accumulate-subsample: from the pool of all generations so far
            assert set(tags.tolist()) <= set(range(t))


def test_lambda_floor_is_exact_decimal():
    assert synthetic_count(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996 in floats
    assert synthetic_count(0.3, 40) == 12
    assert synthetic_count(2.5, 3) == 7
    assert synthetic_count(math.inf, 17) == 17
    assert synthetic_count(0, 17) == 0


@pytest.mark.parametrize("word", ["inf", "fully-synthetic", ".inf", "Infinity"])
def test_lambda_words(word):
    assert parse_lambda(word) == math.inf


@pytest.mark.parametrize("bad", [-0.1, "abc", float("nan"), None, True])
def test_lambda_rejects(bad):
    with pytest.raises(ConfigError, match="lambda"):
        parse_lambda(bad)


def test_finetune_vs_scratch_passes_init():
    real = np.zeros((5, 2))
    ft = list(run_loop(Recorder(), real, lam=1, generations=2, retrain="finetune"))
    sc = list(run_loop(Recorder(), real, lam=1, generations=2, retrain="scratch"))
    assert [r.model.init_was_given_ for r in ft] == [False, True, True]
    assert [r.model.init_was_given_ for r in sc] == [False, False, False]


def test_models_are_fresh_each_generation_and_prototype_untouched():
    proto = Recorder()
    recs = list(run_loop(proto, np.zeros((5, 2)), lam=1, generations=2))
    assert not proto.is_fitted
    assert len({id(r.model) for r in recs}) == 3


def test_same_seed_same_records_different_seed_differs():
    from genloop.models import make_model

    real = np.random.default_rng(1).standard_normal((50, 2))

    def run(seed):
        return [r.model.mean_ for r in run_loop(make_model("gaussian"), real, lam=1, generations=3, seed=seed)]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0], c[0])  # generation 0 sees only the real data
    assert not np.allclose(a[3], c[3])


def test_metrics_computed_against_heldout():
    from genloop.models import make_model

    rng = np.random.default_rng(2)
    real, heldout = rng.standard_normal((200, 2)), rng.standard_normal((300, 2)) + 5.0
    recs = list(run_loop(make_model("gaussian"), real, lam=0.5, generations=1, metrics=["moments"], heldout=heldout))
    assert recs[0].samples.shape == (300, 2)  # n_eval defaults to the held-out size
    assert recs[0].metrics["mean_drift"] == pytest.approx(5.0 * math.sqrt(2), rel=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lam": -1}, "lambda"),
        ({"scheme": "keep"}, "unknown scheme"),
        ({"retrain": "warm"}, "retrain"),
        ({"generations": -2}, "generations"),
        ({"scheme": "fresh"}, "fresh"),
        ({"metrics": ["nope"]}, "unknown metric"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"lam": 1, "generations": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        list(run_loop(Recorder(), np.zeros((4, 2)), **args))


def test_nonfinite_real_data_rejected():
    from genloop.errors import DataError

    X = np.zeros((4, 2))
    X[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        list(run_loop(Recorder(), X, lam=1, generations=1))
