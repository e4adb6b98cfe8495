"""Laws of the pooled-frequency learners (categorical, bigram LM, fixed-design OLS) against
Monte Carlo of the real loop, and the rows ``genloop theory`` prints for them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genloop.data import make_data
from genloop.loop import run_loop
from genloop.loop.schemes import synthetic_count
from genloop.models import make_model
from genloop.theory.ngram import bigram_kl_drift, bigram_kl_generation0, sequence_kl_per_token, unigram_covariance
from genloop.theory.pooled import pooled_stationary_factor, pooled_variance_factor
from genloop.theory.regression import ols_excess_factor

P3 = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.25, 0.45]])


@pytest.mark.parametrize(("scheme", "lam"), [("replace", 1), ("replace", 3), ("replace", "inf"),
                                             ("accumulate", 1), ("accumulate", "inf")])
def test_pooled_factor_is_the_ols_closed_form(scheme, lam):
    """The pooled-frequency recursion reproduces the regression module's closed forms (fixed
    design OLS is a pooled mean per copy of the design)."""
    fs = lam == "inf"
    m = 10 if fs else 10 * int(lam)
    got = pooled_variance_factor(10, m, 12, scheme=scheme, fully_synthetic=fs)
    np.testing.assert_allclose(got, ols_excess_factor(scheme, lam, 12), rtol=1e-12)


def test_pooled_stationary_factors():
    assert pooled_stationary_factor(10, 10) == pytest.approx(4 / 3)
    assert pooled_stationary_factor(10, 10, scheme="fresh") == pytest.approx(2 / 3)
    assert pooled_stationary_factor(10, 10, scheme="accumulate") == pytest.approx(math.pi**2 / 6, abs=1e-3)
    assert math.isinf(pooled_stationary_factor(10, 10, fully_synthetic=True))
    assert pooled_variance_factor(10, 5, 400)[-1] == pytest.approx(pooled_stationary_factor(10, 5))


def test_unigram_covariance_matches_simulation():
    """n·Cov(q̂) of the pooled unigram of stationary sequences, against 20,000 sequences."""
    src = make_data("markov", seq_len=6, transition=P3.tolist())
    x = src.sample(20_000, rng=np.random.default_rng(0)).astype(int)
    freq = np.stack([(x == k).mean(axis=1) for k in range(3)], axis=1)  # per-sequence unigram (n = 1)
    emp = np.cov(freq.T)
    np.testing.assert_allclose(emp, unigram_covariance(P3, 6), atol=4 * np.sqrt(2 / 20_000) * 0.1)


def _kl(model, L: int) -> float:
    first = model.conditional(np.zeros((1, 0), dtype=np.int64))[0]
    Q = model.conditional(np.arange(P3.shape[0])[:, None])
    return sequence_kl_per_token(P3, first, Q, L)


@pytest.mark.slow
@pytest.mark.parametrize(("lam", "scheme"), [("inf", "replace"), (1.0, "replace"), (1.0, "accumulate"),
                                             (0.5, "fresh")])
def test_bigram_kl_drift_matches_the_loop(lam, scheme):
    """Monte Carlo of the real loop (bigram on a 3-state chain, n = 200 sequences of length 10,
    150 seeds): the mean exact KL per token at every generation within 4 standard errors plus
    the delta method's O(1/N) bias (3 % of the value) of eq. (3)."""
    n, L, T, R = 200, 10, 5, 150
    src = make_data("markov", seq_len=L, transition=P3.tolist())
    vals = np.zeros((R, T + 1))
    for r in range(R):
        real = src.sample(n, rng=np.random.default_rng(10_000 + r))
        for rec in run_loop(make_model("ngram", order=2), real, lam=lam, generations=T, seed=r, scheme=scheme,
                            source=src):
            vals[r, rec.generation] = _kl(rec.model, L)
    fs = lam == "inf"
    law = bigram_kl_drift(P3, n, L, T, m=synthetic_count(math.inf if fs else lam, n), scheme=scheme,
                          fully_synthetic=fs)
    mean, se = vals.mean(axis=0), vals.std(axis=0, ddof=1) / math.sqrt(R)
    assert np.all(np.abs(mean - law) < 4 * se + 0.03 * law), (mean / law[0], law / law[0], (mean - law) / se)


def test_bigram_kl_generation0_scales_as_one_over_n():
    assert bigram_kl_generation0(P3, 100, 10) == pytest.approx(2 * bigram_kl_generation0(P3, 200, 10))


def _law_rows(model: str, model_options: dict, data: str, data_options: dict, real: np.ndarray, lams, scheme: str,
              T: int):
    from genloop.theory.laws import law_analysis

    return {row["lam"]: row for row in law_analysis(model, model_options, data, data_options, real, lams,
                                                    real.shape[0], scheme=scheme, generations=T).rows}


@pytest.mark.slow
def test_categorical_rows_match_the_loop():
    """The printed E[support] at T (λ = ∞, over fresh real draws) and sd at T (λ = 0.5, around
    the generation-0 fit of one real set) against 400 runs of the real loop, within 4 s.e."""
    opts = {"law": "zipf", "n_categories": 12, "exponent": 1.1}
    src = make_data("categorical", **opts)
    n, T, R = 40, 8, 400
    real0 = src.sample(n, rng=np.random.default_rng(0))
    rows = _law_rows("categorical", {}, "categorical", opts, real0, [0.5, "inf"], "replace", T)
    support, dist2 = np.zeros(R), np.zeros(R)
    p_real = np.bincount(real0[:, 0].astype(int), minlength=12) / n
    for r in range(R):
        real = src.sample(n, rng=np.random.default_rng(100 + r))
        *_, last = run_loop(make_model("categorical", n_categories=12), real, lam="inf", generations=T, seed=r)
        support[r] = np.count_nonzero(last.model.pmf())
        *_, last = run_loop(make_model("categorical", n_categories=12), real0, lam=0.5, generations=T, seed=r)
        dist2[r] = float(np.sum((last.model.pmf() - p_real) ** 2))
    se = support.std(ddof=1) / math.sqrt(R)
    assert abs(support.mean() - rows[math.inf]["law_T"]) < 4 * se
    se2 = dist2.std(ddof=1) / math.sqrt(R)
    assert abs(dist2.mean() - rows[0.5]["sd_T"] ** 2) < 4 * se2
    assert rows[0.5]["rate"] == pytest.approx(20 / 60)


@pytest.mark.slow
@pytest.mark.parametrize(("lam", "scheme"), [(1, "replace"), ("inf", "replace"), (1, "accumulate")])
def test_regression_rows_match_the_loop(lam, scheme):
    """The printed E[excess_risk] at T, exact given the design, against 400 runs of the loop
    with that design and fresh label noise (within 4 s.e.)."""
    opts = {"d": 3, "sigma": 1.0}
    src = make_data("linear_regression", **opts)
    n, T, R = 12, 6, 400
    real0 = src.sample(n, rng=np.random.default_rng(0))
    row = _law_rows("regression", {"alpha": 0.0, "sigma": 1.0, "design": "fixed"}, "linear_regression", opts,
                    real0, [lam], scheme, T)[math.inf if lam == "inf" else float(lam)]
    beta = src.coef()
    risks = np.zeros(R)
    for r in range(R):
        real = real0.copy()
        real[:, -1] = real0[:, :-1] @ beta + np.random.default_rng(500 + r).standard_normal(n)
        *_, last = run_loop(make_model("regression", alpha=0.0, sigma=1.0, design="fixed"), real, lam=lam,
                            generations=T, seed=r, scheme=scheme)
        delta = last.model.coef_ - beta
        risks[r] = float(delta @ delta)
    se = risks.std(ddof=1) / math.sqrt(R)
    assert abs(risks.mean() - row["law_T"]) < 4 * se, (risks.mean(), row["law_T"], se)


@pytest.mark.slow
def test_ngram_rows_match_the_loop():
    """The printed E[excess_nll] at T for the bigram on a Markov source (λ = 1 and ∞) against
    the loop's exact KL per token over 150 seeds (4 s.e. plus the delta method's 3 %)."""
    opts = {"seq_len": 10, "transition": P3.tolist()}
    src = make_data("markov", **opts)
    n, T, R = 200, 4, 150
    rows = _law_rows("ngram", {"order": 2}, "markov", opts, src.sample(n, rng=np.random.default_rng(0)),
                     [1, "inf"], "replace", T)
    for lam in (1.0, math.inf):
        kl = np.zeros(R)
        for r in range(R):
            real = src.sample(n, rng=np.random.default_rng(10_000 + r))
            *_, last = run_loop(make_model("ngram", order=2), real, lam=lam, generations=T, seed=r)
            kl[r] = _kl(last.model, 10)
        se = kl.std(ddof=1) / math.sqrt(R)
        assert abs(kl.mean() - rows[lam]["law_T"]) < 4 * se + 0.03 * rows[lam]["law_T"]


def test_law_rows_say_why_there_is_no_prediction():
    src_opts = {"seq_len": 6, "transition": P3.tolist()}
    real = make_data("markov", **src_opts).sample(30, rng=np.random.default_rng(0))
    rows = _law_rows("ngram", {"order": 3}, "markov", src_opts, real, [1], "replace", 3)
    assert rows[1.0]["verdict"].startswith("no prediction") and "order 3" in rows[1.0]["verdict"]
    opts = {"d": 2, "sigma": 1.0}
    real = make_data("linear_regression", **opts).sample(10, rng=np.random.default_rng(0))
    rows = _law_rows("regression", {"sigma": 1.0}, "linear_regression", opts, real, [0.5], "replace", 3)
    assert "not an integer" in rows[0.5]["verdict"] and rows[0.5]["rate"] is None


@pytest.mark.parametrize("example", ["zipf_categorical", "markov_ngram", "regression_collapse"])
def test_genloop_theory_prints_the_law_per_lambda(example, capsys):
    """`genloop theory` on the example configs of the closed-form families: one row per λ with
    the rate m/(n+m), the family's law at T, a verdict and the legend."""
    from pathlib import Path

    from genloop.cli import main
    from genloop.config import load_config
    from genloop.theory import config_theory as theory_cli

    path = Path(__file__).resolve().parent.parent / "examples" / f"{example}.yaml"
    theory_cli._CACHE.clear()
    assert main(["theory", str(path)]) == 0
    text = capsys.readouterr().out
    cfg = load_config(path)
    table = [line for line in text.splitlines() if line.startswith(f"| {cfg.model.name} ")]
    assert len(table) == len(cfg.loop.lambdas)
    assert "E[" in text and "rate" in text and "stationary sd" in text.split("(computed")[0]
    for lam, line in zip(cfg.loop.lambdas, table):
        cells = [c.strip() for c in line.strip("|").split("|")]
        m = synthetic_count(math.inf if str(lam) == "inf" else float(lam), cfg.data.n)
        rate = 1.0 if str(lam) == "inf" else m / (cfg.data.n + m)
        assert float(cells[3]) == pytest.approx(rate, rel=1e-3)
        assert ("drifts" in cells[-1]) == (str(lam) == "inf")


def test_report_shows_the_law_table_and_predicted_verdicts(tmp_path):
    """`genloop report` on a categorical experiment: the theory section holds the law table and
    legend, and the verdict table carries the predicted verdict per λ."""
    import yaml

    from genloop.cli import main
    from genloop.theory import config_theory as theory_cli

    doc = {"data": {"name": "categorical", "n": 40, "n_heldout": 100, "law": "zipf", "n_categories": 8},
           "model": {"name": "categorical"},
           "loop": {"generations": 3, "lambdas": [0, 1, "inf"], "seeds": [0, 1]},
           "metrics": [{"name": "discrete", "data": {"name": "categorical", "n_categories": 8}}],
           "output": {"checkpoints": "last", "keep_samples": 0}}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    theory_cli._CACHE.clear()
    assert main(["run", str(cfg), "--out", str(tmp_path / "exp")]) == 0
    assert main(["report", str(tmp_path / "exp")]) == 0
    text = (tmp_path / "exp" / "report.html").read_text()
    assert "E[support] at T" in text and "pooled-frequency fit" in text
    assert "predicted (theory)" in text and "drifts: no real data pulls it back" in text
