"""The prediction check (genloop.report.prediction): the theory's per-λ prediction confirmed or
refuted with the run's seeds.

Oracles: scipy's one-sample t-test (the value test is the two-sided test of E[Y] = θ*, the change
test the one-sided test of E[D] = 0), the exact Gaussian collapse law E[log σ_T/σ_0] and the
exact second-moment law E[σ_T²]/σ_0² on runs of the real loop, and the level of the rule
(a true prediction is refuted in at most 5 % of repeated experiments, within 3 standard errors).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from genloop.report.prediction import (
    Prediction,
    check_prediction,
    gaussian_pivot,
    gaussian_value,
    prediction_checks,
    prediction_kind,
    predictions_from_rows,
)
from genloop.theory.expfam import gaussian_scheme_moments, gaussian_variance_ratio_draws
from genloop.theory.gaussian import log_sigma_moments

STABLE = Prediction(lam=0.5, kind="stable", rate=1 / 3, metric="q", transform="value", value=2.0)
COLLAPSE = Prediction(lam=math.inf, kind="collapse", metric="q", transform="log_ratio", value=-1.0, alternative=0.0)


# ---- the rule on synthetic samples with known answers -----------------------------------------------
def test_value_test_is_the_two_sided_t_test() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        k = int(rng.integers(2, 9))
        y = rng.normal(2.0 + rng.normal(scale=0.8), rng.uniform(0.2, 2.0), size=k)
        c = check_prediction(STABLE, values=y)
        p = stats.ttest_1samp(y, 2.0).pvalue
        assert (c.outcome == "refuted") == (p < 0.05), (y, p, c)
        assert c.text == ("departs from the prediction" if p < 0.05
                          else "consistent with stable (the prediction lies in the interval)")
        seen.add(c.outcome)
    assert seen == {"refuted", "consistent"}


def test_prediction_inside_and_outside_the_interval() -> None:
    y = np.array([1.0, 2.0, 3.0])  # mean 2, se 1/√3, t_{0.975,2} = 4.303: interval [-0.484, 4.484]
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    inside = check_prediction(Prediction(lam=1.0, kind="stable", metric="q", value=2 + 0.99 * half), values=y)
    outside = check_prediction(Prediction(lam=1.0, kind="stable", metric="q", value=2 + 1.01 * half), values=y)
    assert inside.outcome == "consistent"
    assert inside.low == pytest.approx(2 - half) and inside.high == pytest.approx(2 + half)
    assert outside.outcome == "refuted" and outside.text == "departs from the prediction"


def test_a_predicted_collapse_needs_the_interval_to_exclude_no_change() -> None:
    wide = check_prediction(COLLAPSE, values=np.array([-2.5, 0.4, -0.9]))  # contains -1 and 0
    narrow = check_prediction(COLLAPSE, values=np.array([-1.1, -0.9, -1.0, -1.2]))
    wrong = check_prediction(COLLAPSE, values=np.array([0.1, -0.1, 0.05, 0.0]))
    assert wide.outcome == "not decided"
    assert narrow.outcome == "confirmed" and narrow.text == "collapsing as predicted"
    assert wrong.outcome == "refuted"


def test_a_predicted_stable_value_is_confirmed_when_the_collapse_value_is_ruled_out() -> None:
    y = np.array([1.9, 2.1, 2.0, 1.95])  # interval about [1.84, 2.14]
    far = Prediction(lam=0.5, kind="stable", metric="q", value=2.0, alternative=1.0)
    near = Prediction(lam=0.5, kind="stable", metric="q", value=2.0, alternative=2.1)
    assert check_prediction(far, values=y).text == "stable as predicted"
    got = check_prediction(near, values=y)
    assert got.outcome == "not decided" and "with a collapse" in got.text


def test_diverged_seeds_confirm_a_collapse_and_refute_a_stable_prediction() -> None:
    y = np.array([2.0, 2.1])
    collapse = check_prediction(COLLAPSE, values=y, diverged=3, seeds=5)
    stable = check_prediction(STABLE, values=y, diverged=3, seeds=5)
    assert collapse.outcome == "confirmed" and "3 of 5 seeds diverged" in collapse.text
    assert stable.outcome == "refuted" and "3 of 5 seeds diverged" in stable.text
    # as many diverged as at λ = 0: not a signal of this λ
    assert check_prediction(STABLE, values=np.array([1.9, 2.1, 2.0]), diverged=1, base_diverged=1).outcome \
        == "consistent"


def test_change_test_is_the_one_sided_t_test() -> None:
    rng = np.random.default_rng(1)
    stable = Prediction(lam=0.5, kind="stable", rate=0.1)
    collapse = Prediction(lam=math.inf, kind="collapse")
    for _ in range(200):
        k = int(rng.integers(2, 9))
        d = rng.normal(rng.normal(scale=0.5), 1.0, size=k)
        greater = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue < 0.05
        less = stats.ttest_1samp(d, 0.0, alternative="less").pvalue < 0.05
        s = check_prediction(stable, changes=d, transient=0.01)
        c = check_prediction(collapse, changes=d)
        assert (s.outcome == "refuted") == greater
        assert s.outcome == ("refuted" if greater else "consistent")
        assert c.outcome == ("confirmed" if greater else "refuted" if less else "not decided")


def test_a_predicted_transient_is_not_read_as_growth() -> None:
    growth = np.array([1.0, 1.1, 0.9, 1.05])
    p = Prediction(lam=4.0, kind="stable", rate=0.9)
    assert check_prediction(p, changes=growth, transient=0.9 ** 5).outcome == "not decided"
    assert check_prediction(p, changes=growth, transient=0.9 ** 40).outcome == "refuted"
    got = check_prediction(p, changes=growth)  # no rate: an accumulating pool, the change test does not run
    assert got.outcome == "not decided" and got.text == "not decided (no predicted rate)"


def test_two_tests_each_run_at_the_bonferroni_level() -> None:
    y = np.array([1.0, 2.0, 3.0, 2.5, 1.5])
    se = y.std(ddof=1) / math.sqrt(5)
    between = 2.0 + se * 0.5 * (stats.t.ppf(0.975, 4) + stats.t.ppf(0.9875, 4))  # outside 95 %, inside 97.5 %
    p = Prediction(lam=0.5, kind="stable", rate=0.1, metric="q", value=between)
    flat = np.array([0.1, -0.1, 0.05, -0.05, 0.0])
    assert check_prediction(p, values=y).outcome == "refuted"
    both = check_prediction(p, values=y, changes=flat, transient=0.01)
    assert both.outcome == "consistent" and both.test == "value+change"


def test_no_prediction_reference_and_one_seed() -> None:
    none = Prediction(lam=2.0, kind="none", verdict="no prediction: loop variant 'curated'")
    assert check_prediction(none, values=np.array([1.0, 2.0])).text == "no prediction"
    ref = Prediction(lam=0.0, kind="reference")
    assert check_prediction(ref, values=np.array([1.0, 2.0])).outcome == "reference"
    assert check_prediction(STABLE, values=np.array([2.0])).outcome == "not decided"


def test_kinds_and_rows() -> None:
    assert prediction_kind("stable: contracts at 0.333/generation") == "stable"
    assert prediction_kind("bounded: the pool remembers every generation") == "stable"
    assert prediction_kind("drifts: no real data pulls it back (random walk)") == "collapse"
    assert prediction_kind("no synthetic data: every generation refits the real data") == "reference"
    assert prediction_kind("no prediction: degenerate fit") == "none"
    assert prediction_kind(None) == "none"
    rows = [{"lam": 0.5, "verdict": "stable: contracts at 0.333/generation", "rate": 1 / 3, "law_T": 7.5},
            {"lam": math.inf, "verdict": "drifts: no real data pulls it back", "rate": 1.0, "law_T": None},
            {"lam": 2.0, "verdict": "no prediction: smoothing", "rate": None}]
    preds = predictions_from_rows(rows, model="categorical", law_metric="support")
    assert preds[0.5].metric == "support" and preds[0.5].value == 7.5 and preds[0.5].kind == "stable"
    assert preds[0.5].alternative is None  # the λ = ∞ row gives no law here
    assert preds[math.inf].metric is None and preds[math.inf].kind == "collapse"
    rows[1]["law_T"] = 2.0
    assert predictions_from_rows(rows, model="categorical", law_metric="support")[0.5].alternative == 2.0
    assert preds[2.0].kind == "none"


def _table(values: dict[float, list[list[float]]], metric: str = "w2") -> pd.DataFrame:
    rows = [{"cell": "", "lam": lam, "seed": s, "generation": g, "metric": metric, "value": v}
            for lam, runs in values.items() for s, run in enumerate(runs) for g, v in enumerate(run)]
    return pd.DataFrame(rows)


def test_table_with_diverged_seeds() -> None:
    nan = math.nan
    data = _table({0.0: [[1.0, 1.0, 1.0, 1.0]] * 3,
                   math.inf: [[1.0, 2.0, 4.0, nan], [1.0, 2.0, 3.0, nan], [1.0, 1.5, 2.0, 2.5]]}, "perplexity")
    collapse = {0.0: Prediction(lam=0.0, kind="reference"), math.inf: Prediction(lam=math.inf, kind="collapse")}
    stable = {0.0: collapse[0.0], math.inf: Prediction(lam=math.inf, kind="stable", rate=0.5)}
    got = {c.lam: c for c in prediction_checks(data, collapse)}
    assert got[math.inf].outcome == "confirmed" and got[math.inf].diverged == 2 and got[math.inf].seeds == 3
    assert got[0.0].outcome == "reference"
    assert {c.lam: c.outcome for c in prediction_checks(data, stable)}[math.inf] == "refuted"
    assert {c.lam: c.outcome for c in prediction_checks(data, {})}[math.inf] == "no prediction"


# ---- the real Gaussian loop -----------------------------------------------------------------------------
def _gaussian_table(seeds: range, generations: int, n: int, lams: tuple[float, ...]) -> pd.DataFrame:
    from genloop.loop import run_loop
    from genloop.models import make_model

    rows = []
    for seed in seeds:
        real = np.random.default_rng(1000 + seed).standard_normal((n, 1))
        for lam in lams:
            for rec in run_loop(make_model("gaussian"), real, lam=lam, generations=generations, seed=seed):
                mu, sd = float(rec.model.mean_[0]), math.sqrt(float(rec.model.covariance_[0, 0]))
                for metric, value in (("w2", math.hypot(mu, sd - 1.0)), ("std_ratio", sd)):
                    rows.append({"cell": "", "lam": lam, "seed": seed, "generation": rec.generation,
                                 "metric": metric, "value": value})
    return pd.DataFrame(rows)


def _predictions(n: int, T: int) -> dict[float, Prediction]:
    out = {0.0: Prediction(lam=0.0, kind="reference")}
    for lam, kind, rate in ((1.0, "stable", 0.5), (math.inf, "collapse", None)):
        transform, value, alt = gaussian_value(lam, n=n, generations=T, estimator="mle")  # type: ignore[misc]
        out[lam] = Prediction(lam=lam, kind=kind, rate=rate, metric="std_ratio", transform=transform, value=value,
                              alternative=alt)
    return out


def test_gaussian_values_are_the_exact_laws() -> None:
    n, T = 20, 30
    assert gaussian_value(math.inf, n=n, generations=T, estimator="mle")[1] == pytest.approx(
        log_sigma_moments(n, T, "mle")[0])
    assert log_sigma_moments(n, T, "mle")[0] == pytest.approx(T / 2 * (float(__import__("scipy").special.digamma(
        (n - 1) / 2)) + math.log(2 / n)))
    _, V = gaussian_scheme_moments(n, 1.0, np.eye(1), T, estimator="mle")
    assert gaussian_value(1.0, n=n, generations=T, estimator="mle")[1] == pytest.approx(V[-1][0, 0] / V[0][0, 0])
    # evaluation noise: E[k/χ²_k] = k/(k-2) with k = N - 1
    assert gaussian_value(1.0, n=n, generations=T, n_eval=201)[1] == pytest.approx(
        V[-1][0, 0] / V[0][0, 0] * 200 / 198)
    # too few evaluation draws for a t-interval on the squared ratio: no value test
    assert gaussian_value(1.0, n=n, generations=T, n_eval=41) is None
    assert gaussian_value(1.0, n=n, generations=T, scheme="fresh") is None
    # the competing value of a stable λ: λ = ∞'s E[σ_T²]/σ_0² = ((n−1)/n)^T
    assert gaussian_value(1.0, n=n, generations=T, estimator="mle")[2] == pytest.approx(((n - 1) / n) ** T)


def test_real_gaussian_loop_confirms_the_exact_law_and_refutes_a_false_one() -> None:
    n, T = 20, 40
    data = _gaussian_table(range(10), T, n, (0.0, 1.0, math.inf))
    truth = _predictions(n, T)
    got = {c.lam: c for c in prediction_checks(data, truth, "w2")}
    assert got[math.inf].outcome == "confirmed" and got[math.inf].text == "collapsing as predicted"
    assert got[1.0].outcome == "confirmed" and got[1.0].text == "stable as predicted"
    assert got[math.inf].test == "value+change" and got[math.inf].expected == pytest.approx(
        log_sigma_moments(n, T, "mle")[0])
    # swapped predictions: λ = ∞ said stable with λ = 1's law, λ = 1 said to collapse with λ = ∞'s
    swapped = {0.0: truth[0.0],
               math.inf: Prediction(**{**truth[1.0].__dict__, "lam": math.inf}),
               1.0: Prediction(**{**truth[math.inf].__dict__, "lam": 1.0})}
    wrong = {c.lam: c for c in prediction_checks(data, swapped, "w2")}
    assert wrong[math.inf].outcome == "refuted" and wrong[1.0].outcome == "refuted"
    assert wrong[math.inf].text.startswith("departs from the prediction")


@pytest.mark.slow
def test_a_true_prediction_is_refuted_at_most_at_the_level() -> None:
    """Over 120 experiments of 4 seeds the true predictions (λ = 1 and ∞) are refuted in ≤ 5 %
    of them, within 3 binomial standard errors."""
    n, T, reps = 20, 8, 120
    truth = _predictions(n, T)
    refuted = {1.0: 0, math.inf: 0}
    for r in range(reps):
        data = _gaussian_table(range(4 * r, 4 * r + 4), T, n, (1.0, math.inf))
        for c in prediction_checks(data, truth, "w2"):
            refuted[c.lam] += c.outcome == "refuted"
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)
    for lam, count in refuted.items():
        assert count / reps <= bound, (lam, count)


def _loop_variance_ratios(n: int, lam: float, T: int, seeds: int, scheme: str = "replace") -> np.ndarray:
    from genloop.loop import run_loop
    from genloop.models import make_model

    out = np.empty(seeds)
    for s in range(seeds):
        real = np.random.default_rng(50_000 + s).standard_normal((n, 1))
        recs = list(run_loop(make_model("gaussian"), real, lam=lam, generations=T, seed=s, scheme=scheme))
        out[s] = float(recs[-1].model.covariance_[0, 0]) / float(recs[0].model.covariance_[0, 0])
    return out


@pytest.mark.parametrize("n,lam,T,scheme", [(5, 0.6, 6, "replace"), (4, math.inf, 5, "replace"),
                                            (6, 0.5, 4, "accumulate")])
def test_exact_variance_ratio_draws_follow_the_real_loop(n: int, lam: float, T: int, scheme: str) -> None:
    """The simulated law of σ_T²/σ_0² (sufficient statistics) against 1500 runs of the real loop:
    a two-sample Kolmogorov–Smirnov test, and its mean against the exact second-moment law."""
    loop = _loop_variance_ratios(n, lam, T, 1500, scheme)
    draws = gaussian_variance_ratio_draws(n, lam, T, 200_000, np.random.default_rng(1), scheme=scheme)
    assert stats.ks_2samp(loop, draws).pvalue > 1e-3
    _, V = gaussian_scheme_moments(n, lam, np.eye(1), T, scheme=scheme, estimator="mle")
    assert abs(draws.mean() - V[-1][0, 0] / V[0][0, 0]) < 4 * draws.std() / math.sqrt(draws.size)


def test_the_exact_pivot_keeps_the_level_where_the_t_interval_does_not() -> None:
    """Three seeds of a strongly skewed law (n = 4, λ = 0.5, 8 generations; values from the real
    loop): the t-interval of the squared ratio refutes the true law far more often than 5 %,
    the exact pivot's interval within 3 binomial standard errors of 5 %."""
    n, lam, T, k, reps = 4, 0.5, 8, 3, 600
    y = _loop_variance_ratios(n, lam, T, k * reps).reshape(reps, k)
    transform, value, alt = gaussian_value(lam, n=n, generations=T, estimator="mle")  # type: ignore[misc]
    pivot = gaussian_pivot(lam, n=n, generations=T, estimator="mle", transform=transform, value=value)
    rates = {}
    for name, pv in (("t", None), ("pivot", pivot)):
        p = Prediction(lam=lam, kind="stable", metric="std_ratio", transform=transform, value=value, pivot=pv)
        rates[name] = np.mean([check_prediction(p, values=row).outcome == "refuted" for row in y])
    se = math.sqrt(0.05 * 0.95 / reps)
    assert abs(rates["pivot"] - 0.05) < 3 * se, rates
    assert rates["t"] > 0.05 + 3 * se, rates  # the skew the pivot corrects is real here


@pytest.mark.slow
def test_show_prints_the_check_for_an_experiment_the_theory_predicts(tmp_path, monkeypatch, capsys) -> None:
    """A new user's path: run a 1-D Gaussian experiment, ``genloop show`` it; the predictions are
    the exact laws at the config's n, T and evaluation size, and the check is printed per λ."""
    import os

    from genloop.cli import main
    from genloop.config import parse_config
    from genloop.report.prediction import experiment_predictions
    from genloop.sweep import run_experiment

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not what is tested here
    n, T = 30, 6
    doc = {"name": "pc", "data": {"name": "gaussian", "n": n, "mean": [0.0]}, "model": {"name": "gaussian"},
           "loop": {"generations": T, "lambdas": [0, 1, "inf"], "seeds": [0, 1, 2]}, "metrics": ["moments"]}
    run_experiment(parse_config(doc), tmp_path / "pc")
    preds = experiment_predictions(tmp_path / "pc")
    assert preds[0.0].kind == "reference" and preds[1.0].kind == "stable" and preds[math.inf].kind == "collapse"
    assert preds[math.inf].value == pytest.approx(log_sigma_moments(n, T, "mle")[0])
    _, V = gaussian_scheme_moments(n, 1.0, np.eye(1), T, estimator="mle")
    assert preds[1.0].value is None  # n_eval = n = 30 held out: too few draws for the value test
    assert preds[1.0].rate == pytest.approx(0.5)
    assert main(["show", str(tmp_path / "pc")]) == 0
    out = capsys.readouterr().out
    assert "prediction check on mean_drift" in out and "reference (no synthetic data)" in out
    assert "log(std_ratio_T/std_ratio_0)" in out and "(std_ratio_T/std_ratio_0)^2" not in out
    assert main(["show", str(tmp_path / "pc"), "--no-theory"]) == 0
    assert "prediction check" not in capsys.readouterr().out
