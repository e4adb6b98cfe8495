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


def _bigram_table(diverged: int, seeds: int = 6, generations: int = 10) -> pd.DataFrame:
    """The fully synthetic bigram case: λ = 0 at the chain's perplexity, λ = ∞ a little
    above it, and ``diverged`` of the λ = ∞ seeds losing a transition at generation 6 (infinite
    perplexity from then on, stored as null: NaN in the table)."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        for g in range(generations + 1):
            rows.append({"cell": "", "lam": 0.0, "seed": seed, "generation": g, "metric": "perplexity",
                         "value": 3.0 + 0.002 * rng.standard_normal()})
            value = 3.018 + 0.002 * rng.standard_normal()
            if seed < diverged and g >= 6:
                value = math.nan
            rows.append({"cell": "", "lam": math.inf, "seed": seed, "generation": g, "metric": "perplexity",
                         "value": value})
    return pd.DataFrame(rows)


def test_diverged_seeds_are_a_collapse_signal_not_dropped():
    """3 of 6 seeds with infinite perplexity: the finite seeds alone would read stable (gap
    ≈ +0.018 ≪ tol = 0.3); the verdict counts all 6 seeds, reports 3 diverged with the exact
    Clopper–Pearson interval and calls the λ collapsing."""
    finite_only = {v.lam: v for v in verdicts(_bigram_table(diverged=0))}
    assert finite_only[math.inf].verdict == "stable"  # the same law without divergences
    v = {v.lam: v for v in verdicts(_bigram_table(diverged=3))}[math.inf]
    assert v.verdict == "collapsing"
    assert v.seeds == 6 and v.diverged == 3 and v.diverged_fraction == pytest.approx(0.5)
    assert v.diverged_low == pytest.approx(stats.beta.ppf(0.025, 3, 4))
    assert v.diverged_high == pytest.approx(stats.beta.ppf(0.975, 4, 3))
    # as many divergences in the baseline as at λ: no divergence signal, never "stable" though
    table = _bigram_table(diverged=3)
    lost = (table["lam"] == 0.0) & (table["seed"] < 3) & (table["generation"] >= 6)
    table.loc[lost, "value"] = math.nan
    assert {v.lam: v.verdict for v in verdicts(table)}[math.inf] != "stable"
    # the summary says how many seeds its mean leaves out
    last = summarize(_bigram_table(diverged=3))
    row = last[(last["lam"] == math.inf) & (last["generation"] == 10)].iloc[0]
    assert row["seeds"] == 3 and row["nonfinite"] == 3


def test_verdicts_json_is_strict_json(tmp_path):
    """λ = ∞ and non-finite intervals are written as null with a ``nonfinite`` flag: the file
    parses with a strict JSON reader (no Infinity / NaN)."""
    import json

    from genloop.results import json_record

    rec = json_record({"lam": math.inf, "gap": math.nan, "slope": -math.inf, "seeds": 3, "window": (1, 4)})
    text = json.dumps(rec, allow_nan=False)
    back = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert back == {"lam": None, "gap": None, "slope": None, "seeds": 3, "window": [1, 4],
                    "nonfinite": {"lam": "inf", "gap": "nan", "slope": "-inf"}}


def test_verdicts_json_of_a_real_run_is_strict(tmp_path):
    """A run with λ = ∞ (a bigram LM on a Markov chain) writes verdicts.json without Infinity."""
    import json

    from genloop.config import RunConfig
    from genloop.results import write_tables
    from genloop.sweep import run_experiment

    cfg = RunConfig.model_validate({
        "data": {"name": "markov", "n": 60, "n_heldout": 100, "seq_len": 8, "n_states": 3, "matrix_seed": 0},
        "model": {"name": "ngram", "order": 2},
        "loop": {"generations": 3, "lambdas": [0, "inf"], "scheme": "replace", "seeds": [0, 1]},
        "metrics": [{"name": "perplexity", "data": {"name": "markov", "seq_len": 8, "n_states": 3, "matrix_seed": 0}}],
        "output": {"checkpoints": "last", "keep_samples": 0}})
    run_experiment(cfg, tmp_path / "out")
    write_tables(tmp_path / "out")
    text = (tmp_path / "out" / "verdicts.json").read_text()
    records = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    inf_row = next(r for r in records if r["lam"] is None)
    assert inf_row["nonfinite"]["lam"] == "inf"
