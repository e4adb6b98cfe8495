"""``loop.eval_samples: reuse``: generation t is evaluated on the head of generation t+1's
synthetic set, so fewer samples are drawn, training is unchanged and resume stays exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.errors import ConfigError
from genloop.loop import run_loop, synthetic_count
from genloop.loop.engine import LoopState, evaluate_samples
from genloop.metrics import make_metric
from genloop.models.gaussian import GaussianModel
from genloop.rng import stage_rng

N = 40
GENERATIONS = 3


class CountingGaussian(GaussianModel):
    """The Gaussian family, counting calls of ``sample`` and rows drawn (class-wide)."""

    calls = 0
    rows = 0

    def sample(self, n, *, rng):
        type(self).calls += 1
        type(self).rows += int(n)
        return super().sample(n, rng=rng)


def _run(eval_samples: str, *, lam=1.0, n_eval=25, generations=GENERATIONS, resume=None, seed=3):
    real = np.random.default_rng(0).standard_normal((N, 2)) * [1.0, 2.0]
    heldout = np.random.default_rng(1).standard_normal((30, 2))
    CountingGaussian.calls = CountingGaussian.rows = 0
    recs = list(run_loop(CountingGaussian(), real, lam=lam, generations=generations, seed=seed, heldout=heldout,
                         metrics=["moments", "w2"], n_eval=n_eval, resume=resume, eval_samples=eval_samples))
    return recs, heldout, (CountingGaussian.calls, CountingGaussian.rows)


@pytest.mark.parametrize("lam, n_eval", [(1.0, 25), (1.0, 60), (0.5, 25), (0.0, 25), (math.inf, 40)])
def test_reuse_draws_only_the_shortfall(lam, n_eval) -> None:
    _, _, (fresh_calls, fresh_rows) = _run("fresh", lam=lam, n_eval=n_eval)
    _, _, (calls, rows) = _run("reuse", lam=lam, n_eval=n_eval)
    k = synthetic_count(lam, N)
    assert fresh_rows == GENERATIONS * k + (GENERATIONS + 1) * n_eval
    assert rows == GENERATIONS * max(k, n_eval) + n_eval  # the last generation has no successor
    expected_calls = GENERATIONS * ((k > 0) + (n_eval > k)) + 1
    assert calls == expected_calls
    assert fresh_calls == GENERATIONS * (k > 0) + GENERATIONS + 1


def test_reuse_changes_no_training_set_and_metrics_are_of_the_stored_samples() -> None:
    fresh, _, _ = _run("fresh", n_eval=60)
    reuse, heldout, _ = _run("reuse", n_eval=60)
    k = synthetic_count(1.0, N)
    metrics = [make_metric("moments"), make_metric("w2")]
    for m in metrics:
        m.prepare(heldout)
    for t, (a, b) in enumerate(zip(fresh, reuse)):
        np.testing.assert_array_equal(a.model.mean_, b.model.mean_)  # same training sets, same fits
        np.testing.assert_array_equal(a.model.covariance_, b.model.covariance_)
        if t:
            np.testing.assert_array_equal(a.synthetic, b.synthetic)
        assert b.samples.shape == (60, 2)
        if t < GENERATIONS:  # evaluated on the head of the next generation's training set
            np.testing.assert_array_equal(b.samples[:k], reuse[t + 1].synthetic)
            # the shortfall is a draw from the generation's evaluation stream
            extra = b.model.sample(60 - k, rng=stage_rng(3, t, "eval"))
            np.testing.assert_array_equal(b.samples[k:], extra)
        rng = stage_rng(3, t, "eval")
        if t < GENERATIONS:
            b.model.sample(60 - k, rng=rng)  # the stream after the shortfall, as the loop used it
        else:
            b.model.sample(60, rng=rng)
        assert evaluate_samples(b.samples, b.model, metrics, heldout, rng=rng) == b.metrics
        assert set(a.metrics) == set(b.metrics)


def test_reuse_resumes_exactly() -> None:
    full, _, _ = _run("reuse")
    real = np.random.default_rng(0).standard_normal((N, 2)) * [1.0, 2.0]
    heldout = np.random.default_rng(1).standard_normal((30, 2))
    loop = run_loop(CountingGaussian(), real, lam=1.0, generations=GENERATIONS, seed=3, heldout=heldout,
                    metrics=["moments", "w2"], n_eval=25, eval_samples="reuse")
    head = [next(loop), next(loop)]
    loop.close()  # stopped after generation 1: its pre-drawn set for generation 2 is lost
    rest, _, _ = _run("reuse", resume=LoopState(generation=1, model=head[-1].model))
    assert [r.generation for r in rest] == [2, 3]
    for a, b in zip(full[2:], rest):
        assert a.metrics == b.metrics
        np.testing.assert_array_equal(a.samples, b.samples)
        np.testing.assert_array_equal(a.synthetic, b.synthetic)
        np.testing.assert_array_equal(a.model.mean_, b.model.mean_)
    for a, b in zip(full[:2], head):
        assert a.metrics == b.metrics


def test_reuse_needs_the_plain_variant() -> None:
    real = np.random.default_rng(0).standard_normal((N, 2))
    with pytest.raises(ConfigError, match="plain variant"):
        list(run_loop("gaussian", real, lam=1, generations=1, metrics=["moments"], eval_samples="reuse",
                      variant={"kind": "curated", "reward": "quadratic"}))
    with pytest.raises(ConfigError, match="eval_samples"):
        list(run_loop("gaussian", real, lam=1, generations=1, eval_samples="again"))
