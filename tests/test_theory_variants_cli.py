"""The loop variants' laws printed by ``genloop theory`` against Monte Carlo of the real loop.

Each test builds a config, reads the rows ``genloop theory`` prints (``config_theory``), runs the
actual loop (:func:`genloop.run_loop` with the config's variant, on the config's real training
set of its first seed) for many loop seeds, and compares the printed law with the seeds' means at
every generation: |z| < 4 with the standard error of the Monte Carlo mean. The laws are exact for
``biased`` and ``mixture``, exact for the corrected mean, and first order in the fits' spread for
the corrected covariance and for curation (docs/theory.md §9).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from genloop import run_loop
from genloop.config import parse_config, real_data
from genloop.models import make_model
from genloop.theory import config_theory as theory_cli
from genloop.theory.variant_laws import truncation_factor, variant_moments
from genloop.theory.variants import top_curated_moments_exact

SEEDS = 200
Z = 4.0


def _doc(variant: dict, lambdas: list, *, n: int = 20, T: int = 5, mean: float = 0.3, var: float = 2.0) -> dict:
    return {"data": {"name": "gaussian", "n": n, "mean": [mean], "cov": [[var]]}, "model": {"name": "gaussian"},
            "loop": {"generations": T, "lambdas": lambdas, "seeds": [0], "variant": variant},
            "metrics": ["gaussian_w2"]}


def _loop(cfg, lam: float, seeds: int = SEEDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real set, fitted means (seeds, T+1), fitted variances (seeds, T+1)) of the real loop."""
    _, split = real_data(cfg, cfg.loop.seeds[0])
    real = np.asarray(split.train, dtype=np.float64)
    T = cfg.loop.generations
    mus, vs = np.zeros((seeds, T + 1)), np.zeros((seeds, T + 1))
    for s in range(seeds):
        for rec in run_loop(make_model("gaussian", **cfg.model.options), real, lam=lam, generations=T, seed=1000 + s,
                            variant=cfg.loop.variant, n_eval=2):
            mus[s, rec.generation] = rec.model.mean_[0]
            vs[s, rec.generation] = rec.model.covariance_[0, 0]
    return real, mus, vs


def _z(samples: np.ndarray, expected: np.ndarray) -> np.ndarray:
    se = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
    return (samples.mean(axis=0) - expected) / np.where(se > 0, se, np.inf)


def _rows(doc: dict) -> dict[float, dict]:
    theory_cli._CACHE.clear()
    return {row["lam"]: row for row in theory_cli.config_theory(parse_config(doc)).rows}


def _check_law(cfg, lam: float, real: np.ndarray, mus: np.ndarray, vs: np.ndarray) -> None:
    """E[μ_t], E[(μ_t − x̄)²] and E[Σ_t] of the loop against the law, every generation t ≥ 1."""
    T = cfg.loop.generations
    law = variant_moments(cfg.loop.variant, real, [cfg.loop.variant.lam_at(t, lam, T) for t in range(1, T + 1)],
                          estimator=cfg.model.options.get("estimator", "mle"))
    xbar = real.mean()
    for name, samples, expected in (("mean", mus, xbar + law.e[:, 0]), ("mean sq.", (mus - xbar) ** 2, law.D[:, 0, 0]),
                                    ("variance", vs, law.V[:, 0, 0])):
        z = _z(samples[:, 1:], expected[1:])
        assert np.all(np.abs(z) < Z), (name, np.round(z, 2))


def _printed_matches_law(row: dict, real: np.ndarray, mus: np.ndarray, vs: np.ndarray) -> None:
    """The row's E[tr Σ_T]/tr S and sd at T are what the seeds measure at T (|z| < 4)."""
    S = float(np.var(real[:, 0]))
    assert abs(_z(vs[:, -1:] / S, np.array([row["law_T"]]))[0]) < Z
    xbar = real.mean()
    assert abs(_z((mus[:, -1:] - xbar) ** 2, np.array([row["sd_T"] ** 2]))[0]) < Z


def test_truncation_factor_is_the_exact_top_k_law() -> None:
    """1-D: the χ² form equals the order-statistic law of top_curated_moments_exact centred at the
    mean; d = 3: a direct simulation of the k smallest radii among N_c Gaussian draws."""
    for k, N in ((3, 6), (10, 34), (30, 100)):
        _, var1, _ = top_curated_moments_exact(0.0, 1.0, kept=k, candidates=N, center=0.0)
        assert truncation_factor(k, N, 1) == pytest.approx(var1, rel=2e-4)
    rng = np.random.default_rng(0)
    k, N, d, reps = 5, 12, 3, 20_000
    Z3 = rng.standard_normal((reps, N, d))
    order = np.argsort(np.sum(Z3**2, axis=2), axis=1)[:, :k]
    kept = np.take_along_axis(Z3, order[:, :, None], axis=1)
    per_coord = (kept**2).mean(axis=(0, 1))  # E[z_i²] of a kept draw, each coordinate
    se = (kept**2).reshape(reps, -1).mean(axis=1).std() / math.sqrt(reps)
    assert np.all(np.abs(per_coord - truncation_factor(k, N, d)) < 4 * se * math.sqrt(d) + 1e-3)
    assert truncation_factor(7, 7, 2) == 1.0


def test_corrected_rate_is_the_loops_at_finite_m() -> None:
    """n = 7, λ = 0.5: k = ⌊λn⌋ = 3 and the printed rate is 3(1 − γ)/10, not λ(1 − γ)/(1 + λ). With a
    target mean away from x̄ the loop's E[μ_t] = x̄ + δ*(1 − ρᵗ) pins ρ down, and the n → ∞ rate is
    rejected by the same Monte Carlo (the test can fail)."""
    gamma = 0.5
    variant = {"kind": "corrected", "gamma": gamma, "correction": "ot-gaussian", "target_mean": [6.0], "target_cov": [[0.5]]}
    doc = _doc(variant, [0.5], n=7, T=4)
    row = _rows(doc)[0.5]
    assert row["m"] == 3 and row["rate"] == pytest.approx(3 * (1 - gamma) / 10, abs=5e-3)
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, 0.5)
    _check_law(cfg, 0.5, real, mus, vs)
    _printed_matches_law(row, real, mus, vs)
    xbar, delta = real.mean(), 6.0 - real.mean()
    wrong, e = 0.5 / 1.5, 0.0  # the n → ∞ factor λ/(1 + λ) in place of k/N
    for _ in range(cfg.loop.generations):
        e = wrong * ((1 - gamma) * e + gamma * delta)
    assert abs(_z(mus[:, -1:], np.array([xbar + e]))[0]) > 4
    # the printed limit of the mean: δ* = kγΔ/(n + kγ)
    assert row["mean_inf"] == pytest.approx(xbar + 3 * gamma * delta / (7 + 3 * gamma), rel=1e-6)


@pytest.mark.parametrize("lam", [1.0, math.inf])
def test_corrected_default_target(lam: float) -> None:
    """The OT correction to the real set's Gaussian: covariance law at λ = 1 and fully synthetic."""
    doc = _doc({"kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian"}, [lam])
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, lam)
    _check_law(cfg, lam, real, mus, vs)
    row = _rows(doc)[lam]
    _printed_matches_law(row, real, mus, vs)
    assert row["verdict"].startswith("stable")  # the correction pulls back even without real data


@pytest.mark.parametrize(("variant", "lam"), [
    ({"kind": "biased", "temperature": 0.8}, 1.0),
    ({"kind": "biased", "temperature": 1.2, "truncation": 0.5}, 0.5),
    ({"kind": "biased", "temperature": 0.9}, math.inf),
])
def test_biased_law_is_exact(variant: dict, lam: float) -> None:
    """Temperature and log-density truncation: the exact recursion at m = ⌊λn⌋, and the printed
    rate k/(n+k) is the regression slope of μ_{t+1} − x̄ on μ_t − x̄ in the real loop."""
    doc = _doc(variant, [lam])
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, lam)
    _check_law(cfg, lam, real, mus, vs)
    row = _rows(doc)[lam]
    _printed_matches_law(row, real, mus, vs)
    x = (mus[:, 1:-1] - real.mean()).ravel()
    y = (mus[:, 2:] - real.mean()).ravel()
    slope = float(x @ y / (x @ x))
    se = math.sqrt(float(np.sum((y - slope * x) ** 2)) / (len(x) - 1) / float(x @ x))
    k = row["m"]
    mean_rate = 1.0 if math.isinf(lam) else k / (cfg.data.n + k)
    assert abs(slope - mean_rate) < Z * se
    if math.isinf(lam):
        assert row["verdict"].startswith("drifts") and "collapse" in row["verdict"]
    else:
        assert row["rate"] == pytest.approx(mean_rate) and row["verdict"].startswith("stable")


def test_variant_with_a_schedule() -> None:
    """A λ schedule on a variant: m_t = ⌊λ_t n⌋ per generation in the same exact law (biased), and
    the printed rate is the geometric mean of the per-generation factors m_t/(n + m_t)."""
    doc = _doc({"kind": "biased", "temperature": 0.9, "lam_schedule": [0.25, 1.0, 0.5]}, [1.0], n=20, T=4)
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, 1.0)
    _check_law(cfg, 1.0, real, mus, vs)
    row = _rows(doc)[1.0]
    _printed_matches_law(row, real, mus, vs)
    factors = [5 / 25, 20 / 40, 10 / 30, 10 / 30]
    assert row["m"] == "5–20" and row["rate"] == pytest.approx(float(np.prod(factors)) ** 0.25)


@pytest.mark.parametrize("variant", [
    {"kind": "curated", "reward": {"name": "quadratic", "center": [1.0]}, "K": 4, "tau": 0.5},
    {"kind": "curated", "reward": {"name": "quadratic", "center": [1.0]}, "select": "top", "fraction": 0.3},
])
def test_curated_law(variant: dict) -> None:
    """Curation by a quadratic reward (softmax of K, and the exact finite-N top fraction: 30 kept
    of 100 candidates at n = 30, λ = 1): mean, spread and variance of the fits, and the printed
    reward at T."""
    doc = _doc(variant, [1.0], n=30, T=4)
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, 1.0)
    _check_law(cfg, 1.0, real, mus, vs)
    row = _rows(doc)[1.0]
    _printed_matches_law(row, real, mus, vs)
    reward = -0.5 * ((mus[:, -1:] - 1.0) ** 2 + vs[:, -1:])
    assert abs(_z(reward, np.array([row["reward_T"]]))[0]) < Z
    assert abs(_z(mus[:, -1:], np.array([row["mean_T"]]))[0]) < Z


def test_mixture_law_and_its_recursion() -> None:
    """A mixture of the last 2 fits (uniform weights) at λ = 1: the exact law, and the mean's
    recursion μ_t − x̄ = (k/N)(w_1(μ_{t−1} − x̄) + w_2(μ_{t−2} − x̄)) + noise whose companion
    matrix gives the printed rate (the coefficients regressed from the real loop)."""
    doc = _doc({"kind": "mixture", "last_k": 2}, [1.0], T=6)
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, 1.0)
    _check_law(cfg, 1.0, real, mus, vs)
    row = _rows(doc)[1.0]
    _printed_matches_law(row, real, mus, vs)
    dev = mus - real.mean()
    X = np.stack([dev[:, 2:-1].ravel(), dev[:, 1:-2].ravel()], axis=1)
    y = dev[:, 3:].ravel()
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    cov = np.linalg.inv(X.T @ X) * float(resid @ resid) / (len(y) - 2)
    expected = np.array([0.25, 0.25])  # k/N = 1/2 times the weights 1/2, 1/2
    assert np.all(np.abs(coef - expected) < Z * np.sqrt(np.diag(cov))), coef
    # the printed rate: the largest root of z² = a z + a (a = 1/4), the mean's companion matrix
    assert row["rate"] == pytest.approx(max(abs(np.roots([1.0, -0.25, -0.25]))), rel=1e-9)


def test_mixture_growing_window_fully_synthetic() -> None:
    """All past fits, uniform weights, λ = ∞: exact law, and the verdict says the mean drifts."""
    doc = _doc({"kind": "mixture"}, ["inf"])
    cfg = parse_config(doc)
    real, mus, vs = _loop(cfg, math.inf)
    _check_law(cfg, math.inf, real, mus, vs)
    row = _rows(doc)[math.inf]
    _printed_matches_law(row, real, mus, vs)
    assert row["verdict"].startswith("drifts") and row["rate"] is None


def test_no_law_says_why_per_lambda(tmp_path, capsys) -> None:
    """Variants without a closed form, variants on other families and neural families: one row
    per λ "no prediction" with the reason and the probe command for this config file, exit 0; an
    invalid config still exits 2."""
    from genloop.cli import main

    cases = [
        (_doc({"kind": "curated", "reward": {"name": "region", "radius": 1.0}}, [0.5, "inf"]), "reward 'region'"),
        (_doc({"kind": "corrected", "gamma": 0.3}, [1]), "correction 'knn'"),
        ({**_doc({"kind": "biased", "temperature": 0.9}, [1]), "data": {"name": "gaussian", "n": 20, "mean": [0, 0],
                                                                        "cov": [[1, 0], [0, 1]]}}, None),
        ({**_doc({"kind": "curated", "reward": "quadratic"}, [1]),
          "data": {"name": "gaussian", "n": 20, "mean": [0, 0], "cov": [[1, 0], [0, 1]]}}, "1-D"),
        ({**_doc({"kind": "mixture"}, [1]), "model": {"name": "gmm", "n_components": 2}}, "model 'gmm'"),
        ({**_doc({"kind": "biased", "temperature": 0.9}, [1]), "loop": {**_doc({}, [1])["loop"], "scheme": "accumulate",
                                                                       "variant": {"kind": "biased", "temperature": 0.9}}},
         "scheme 'accumulate'"),
        ({**_doc({"kind": "plain"}, [0.5, "inf"]), "model": {"name": "kde"}}, "model 'kde'"),
    ]
    for i, (doc, reason) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        theory_cli._CACHE.clear()
        assert main(["theory", str(path)]) == 0
        out = capsys.readouterr().out
        rows = [line for line in out.splitlines() if line.startswith("| ") and "verdict" not in line and "---" not in line]
        assert len(rows) == len(doc["loop"]["lambdas"])
        if reason is None:  # biased on d = 2 has a law (exact in every dimension)
            assert all("stable" in r for r in rows), out
            continue
        assert all("no prediction" in r and reason in r and f"genloop probe {path}" in r for r in rows), out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_doc({"kind": "corrected", "gamma": 2.0}, [1])))
    assert main(["theory", str(bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_neural_family_example_has_no_prediction_fast() -> None:
    """A neural family's example: rows per λ without drawing data or fitting anything."""
    import time
    from pathlib import Path

    from genloop.config import load_config

    path = Path(__file__).resolve().parents[1] / "examples" / "two_moons_edm.yaml"
    theory_cli._CACHE.clear()
    start = time.perf_counter()
    text = theory_cli.theory_text(load_config(str(path), []), config_path=str(path), legend=True)
    assert time.perf_counter() - start < 5
    assert "neural family" in text and f"genloop probe {path}" in text
    assert text.count("| no prediction: model 'edm' is a neural family") == len(load_config(str(path), []).loop.lambdas)


@pytest.mark.slow
def test_report_of_a_variant_run_shows_its_law(tmp_path, capsys) -> None:
    """``genloop report`` on a run of a loop variant: the theory table and the predicted verdicts
    are the variant's law (the numbers of ``genloop theory``), and a neural-family config's
    theory section does not break the report."""
    from genloop.cli import main

    doc = _doc({"kind": "biased", "temperature": 0.8}, [1, "inf"], T=2)
    doc["loop"]["seeds"] = [0, 1]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "exp"
    assert main(["run", str(path), "--out", str(out)]) == 0
    theory_cli._CACHE.clear()
    assert main(["report", str(out)]) == 0
    html_text = (out / "report.html").read_text()
    rows = _rows(doc)
    assert "biased sampling (temperature T = 0.8" in html_text
    assert rows[1.0]["verdict"] in html_text and rows[math.inf]["verdict"].split(";")[0] in html_text
    # the plain loop's trajectory overlays would describe another loop: not drawn
    assert "no trajectory overlay: this run uses loop variant &#x27;biased&#x27;" in html_text
    assert "trajectory overlay (mean)" not in html_text and "Mean: ||μ_t − μ*||²" not in html_text
    capsys.readouterr()
