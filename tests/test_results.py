"""Aggregation over seeds: t-intervals that cover at their nominal rate, and the verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from genloop.results import summarize, t_interval, verdict, verdicts


@pytest.mark.parametrize("k", [2, 3, 5, 20])
def test_t_interval_covers_at_its_nominal_rate(k):
    """Over 4,000 synthetic experiments of k seeds each (a skewed law too), the 95 % interval
    holds the true mean 95 % of the time, within 4 binomial standard errors (the gamma law with
    shape 20 is close enough to normal for the t-interval to be exact to that precision)."""
    rng = np.random.default_rng(k)
    trials = 4000
    for draw, truth in ((lambda n: rng.normal(3.0, 2.0, n), 3.0), (lambda n: rng.gamma(20.0, 1.0, n), 20.0)):
        hits = 0
        for _ in range(trials):
            _, _, low, high = t_interval(draw(k))
            hits += low <= truth <= high
        se = math.sqrt(0.95 * 0.05 / trials)
        assert abs(hits / trials - 0.95) < 4 * se, (k, truth, hits / trials)


def test_t_interval_closed_form_and_one_seed():
    x = np.array([1.0, 2.0, 4.0])
    mean, se, low, high = t_interval(x)
    assert mean == pytest.approx(7 / 3)
    assert se == pytest.approx(x.std(ddof=1) / math.sqrt(3))
    assert high - mean == pytest.approx(stats.t.ppf(0.975, 2) * se)
    assert math.isnan(t_interval(np.array([1.0]))[2])


def _table(slope_inf: float, gap_inf: float, seeds: int = 8, generations: int = 12, noise: float = 0.01) -> pd.DataFrame:
    """A synthetic experiment: λ = 0 flat at 1.0, λ = 0.5 the same law, λ = ∞ with a gap and a slope."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        for g in range(generations + 1):
            for lam, value in ((0.0, 1.0), (0.5, 1.0), (math.inf, 1.0 + gap_inf * g / generations + slope_inf * g)):
                rows.append({"cell": "", "lam": lam, "seed": seed, "generation": g, "metric": "w2",
                             "value": value + noise * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_verdicts_on_synthetic_experiments():
    collapsing = {v.lam: v.verdict for v in verdicts(_table(slope_inf=0.05, gap_inf=0.0))}
    assert collapsing == {0.0: "baseline", 0.5: "stable", math.inf: "collapsing"}
    plateau = {v.lam: v for v in verdicts(_table(slope_inf=0.0, gap_inf=0.0), window=3)}
    assert plateau[math.inf].verdict == "stable"
    # worse than the baseline but no longer worsening (a plateau reached early): drifting
    table = _table(slope_inf=0.0, gap_inf=0.0)
    table.loc[table["lam"] == math.inf, "value"] += 0.5
    assert {v.lam: v.verdict for v in verdicts(table)}[math.inf] == "drifting"
    # one seed: no interval, no claim
    assert {v.lam: v.verdict for v in verdicts(_table(0.05, 0.0, seeds=1))}[math.inf] == "uncertain"


def test_verdict_uses_the_metric_direction():
    table = _table(slope_inf=0.05, gap_inf=0.0)
    table["metric"] = "precision"
    table.loc[table["lam"] == math.inf, "value"] = 2.0 - table.loc[table["lam"] == math.inf, "value"]  # falls
    assert {v.lam: v.verdict for v in verdicts(table, "precision")}[math.inf] == "collapsing"


def test_verdict_rule_boundaries():
    assert verdict((0.2, 0.15, 0.25), (0.01, 0.001, 0.02), 1.0, window=5) == "collapsing"
    assert verdict((0.2, 0.15, 0.25), (0.0, -0.01, 0.01), 1.0, window=5) == "drifting"
    assert verdict((0.0, -0.05, 0.05), (0.0, -0.01, 0.01), 1.0, window=5) == "stable"
    assert verdict((0.0, -0.3, 0.3), (0.0, -0.1, 0.1), 1.0, window=5) == "uncertain"


def test_summary_is_grouped_per_cell_lambda_generation_metric():
    table = _table(0.0, 0.0, seeds=4, generations=2)
    summary = summarize(table)
    assert len(summary) == 3 * 3  # λ × generations, one metric
    row = summary[(summary["lam"] == 0.5) & (summary["generation"] == 1)].iloc[0]
    values = table[(table["lam"] == 0.5) & (table["generation"] == 1)]["value"]
    assert row["mean"] == pytest.approx(values.mean()) and row["seeds"] == 4
    assert row["se"] == pytest.approx(values.std(ddof=1) / 2)
