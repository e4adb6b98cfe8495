"""Discrete data sources, the categorical and n-gram models, and the discrete metrics.

Checks against closed forms (Zipf law, stationary law and entropy rate of a chain, smoothed
counts, exact sequence probabilities), reference computations, and the error messages of bad
input (empty text, unknown token, n-gram order longer than the sequences) through the CLI.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.data import make_data
from genloop.data.discrete import as_tokens, entropy, stationary_distribution, zipf_probs
from genloop.errors import ConfigError, DataError
from genloop.loop import run_loop
from genloop.metrics import make_metric
from genloop.metrics.discrete import kl_divergence, tail_categories, total_variation
from genloop.models import make_model
from genloop.sweep import run_experiment

P2 = [[0.9, 0.1], [0.4, 0.6]]


# ---- data sources -------------------------------------------------------------------------------
def test_zipf_source_draws_its_law() -> None:
    src = make_data("categorical", n_categories=5, exponent=1.0)
    np.testing.assert_allclose(src.true_probs(), (1 / np.arange(1, 6)) / np.sum(1 / np.arange(1, 6)))
    X = src.sample(20000, rng=np.random.default_rng(0))
    assert X.shape == (20000, 1) and X.dtype == np.float64
    freq = np.bincount(X[:, 0].astype(int), minlength=5) / 20000
    se = np.sqrt(src.true_probs() * (1 - src.true_probs()) / 20000)
    assert np.all(np.abs(freq - src.true_probs()) < 4 * se)
    given = make_data("categorical", law="given", probs=[0.5, 0.0, 0.5])
    assert set(np.unique(given.sample(500, rng=np.random.default_rng(1)))) == {0.0, 2.0}
    with pytest.raises(ConfigError, match="sum to 1"):
        make_data("categorical", law="given", probs=[0.5, 0.2])
    with pytest.raises(ConfigError, match="needs probs"):
        make_data("categorical", law="given")


def test_markov_source_stationary_law_entropy_rate_and_ngrams() -> None:
    src = make_data("markov", seq_len=6, transition=P2)
    pi = src.true_probs()
    np.testing.assert_allclose(pi, [0.8, 0.2])  # π P = π for this chain
    np.testing.assert_allclose(stationary_distribution(np.asarray(P2)) @ np.asarray(P2), pi)
    h = 0.8 * entropy(np.array([0.9, 0.1])) + 0.2 * entropy(np.array([0.4, 0.6]))
    assert math.isclose(src.entropy_rate(), h)
    assert math.isclose(src.sequence_entropy(), entropy(pi) + 5 * h)
    np.testing.assert_allclose(src.ngram_probs(2), pi[:, None] * np.asarray(P2))
    assert math.isclose(src.ngram_probs(3).sum(), 1.0)
    X = src.sample(4000, rng=np.random.default_rng(0))
    assert X.shape == (4000, 6)
    # every position is distributed as π; E[-log p(x)] is the sequence entropy (within 4 SE)
    assert np.all(np.abs((X == 0).mean(axis=0) - 0.8) < 4 * math.sqrt(0.16 / 4000))
    nll = -src.log_prob(X)
    assert abs(nll.mean() - src.sequence_entropy()) < 4 * nll.std() / math.sqrt(4000)
    # a random chain is fixed by its matrix_seed, not by the run
    a, b = make_data("markov", n_states=3, matrix_seed=4), make_data("markov", n_states=3, matrix_seed=4)
    np.testing.assert_array_equal(a.transition_matrix(), b.transition_matrix())


def test_text_source_windows_vocab_and_bad_files(tmp_path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcabcabcab")
    src = make_data("text", path=str(path), seq_len=3)
    assert src.chars == "abc"
    np.testing.assert_array_equal(src.load(), [[0, 1, 2]] * 3)
    assert src.decode(src.load()[:1]) == ["abc"]
    overlapping = make_data("text", path=str(path), seq_len=3, stride=1)
    assert len(overlapping) == 9
    with pytest.raises(DataError, match="unknown token 'c'"):
        make_data("text", path=str(path), seq_len=3, vocab="ab").load()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        make_data("text", path=str(empty)).load()
    with pytest.raises(DataError, match="fewer than one window"):
        make_data("text", path=str(path), seq_len=50).load()
    with pytest.raises(DataError, match="not found"):
        make_data("text", path=str(tmp_path / "missing.txt")).load()


def test_as_tokens_rejects_non_codes() -> None:
    np.testing.assert_array_equal(as_tokens(np.array([[1.0], [2.0]])), [[1], [2]])
    with pytest.raises(DataError, match="non-integer"):
        as_tokens(np.array([[0.5]]))
    with pytest.raises(DataError, match="negative"):
        as_tokens(np.array([[-1.0]]))
    with pytest.raises(DataError, match="unknown token 7"):
        as_tokens(np.array([[7.0]]), vocab_size=5)


# ---- models ---------------------------------------------------------------------------------------
def test_categorical_mle_and_smoothing() -> None:
    X = np.array([[0], [0], [2], [0]], dtype=float)
    m = make_model("categorical").fit(X, rng=np.random.default_rng(0))
    np.testing.assert_allclose(m.pmf(), [0.75, 0.0, 0.25])
    assert m.log_prob(np.array([[1.0]]))[0] == -np.inf
    s = make_model("categorical", n_categories=4, smoothing=1.0).fit(X, rng=np.random.default_rng(0))
    np.testing.assert_allclose(s.pmf(), np.array([4, 1, 2, 1]) / 8)  # (c_k + α)/(n + αK)
    np.testing.assert_allclose(np.exp(s.log_prob(np.arange(4.0)[:, None])), s.pmf())
    draws = m.sample(40000, rng=np.random.default_rng(1))[:, 0]
    assert abs((draws == 0).mean() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 40000) and not np.any(draws == 1)
    with pytest.raises(DataError, match="unknown token 4"):
        s.log_prob(np.array([[4.0]]))
    with pytest.raises(DataError, match="use the 'ngram'"):
        make_model("categorical").fit(np.zeros((4, 3)), rng=np.random.default_rng(0))
    # a warm start keeps the alphabet when the largest category has been lost
    warm = make_model("categorical").fit(np.zeros((3, 1)), rng=np.random.default_rng(0), init=m)
    assert warm.pmf().size == 3


def test_ngram_bigram_is_the_transition_mle_and_probabilities_are_exact() -> None:
    X = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=float)
    m = make_model("ngram", order=2).fit(X, rng=np.random.default_rng(0))
    # transitions: 0->1, 1->1, 1->0, 1->1, 1->0, 0->0 ; first-token law = pooled unigram (4 zeros, 4 ones)
    np.testing.assert_allclose(m.conditional(np.array([[0], [1]])), [[0.5, 0.5], [0.5, 0.5]])
    expected = np.log(0.5) + np.log(0.5) * 3
    np.testing.assert_allclose(m.log_prob(X[:1]), [expected])
    # exact normalisation: the probabilities of all 2^4 sequences sum to 1 (order 3, with back-off)
    m3 = make_model("ngram", order=3, smoothing=0.0).fit(X, rng=np.random.default_rng(0))
    every = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T.astype(float)
    assert math.isclose(np.exp(m3.log_prob(every)).sum(), 1.0)
    with pytest.raises(DataError, match="order 5 is larger than the sequences"):
        make_model("ngram", order=5).fit(X, rng=np.random.default_rng(0))


def test_ngram_recovers_a_markov_chain() -> None:
    src = make_data("markov", seq_len=20, n_states=3, matrix_seed=1)
    X = src.sample(3000, rng=np.random.default_rng(0))
    m = make_model("ngram", order=2).fit(X, rng=np.random.default_rng(0))
    P_hat = m.conditional(np.arange(3)[:, None])
    counts = np.bincount(X[:, :-1].astype(int).ravel(), minlength=3)[:, None]
    se = np.sqrt(src.transition_matrix() * (1 - src.transition_matrix()) / counts)
    assert np.all(np.abs(P_hat - src.transition_matrix()) < 4 * se + 1e-12)
    # its samples have the chain's bigram law
    Y = m.sample(3000, rng=np.random.default_rng(1))
    tv = make_metric("ngram_tv", order=2, data={"name": "markov", "seq_len": 20, "n_states": 3, "matrix_seed": 1})
    assert tv(Y, X)["ngram2_tv"] < 0.03


# ---- metrics -----------------------------------------------------------------------------------
def test_divergences_and_tail() -> None:
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert total_variation(p, q) == 0.5
    assert kl_divergence(q, p) == math.inf
    assert math.isclose(kl_divergence(p, q), math.log(2))
    np.testing.assert_array_equal(tail_categories(zipf_probs(10, 1.0), 0.3), [7, 8, 9])


def test_discrete_metric_uses_the_model_law_and_the_true_law() -> None:
    probs = [0.4, 0.3, 0.2, 0.1]
    metric = make_metric("discrete", probs=probs, tail_quantile=0.5)
    model = make_model("categorical").fit(np.array([[0], [0], [1], [2]], dtype=float), rng=np.random.default_rng(0))
    out = metric(model.sample(10, rng=np.random.default_rng(0)), np.zeros((3, 1)), model=model)
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert out["support"] == 3 and out["tail_support"] == 1
    assert math.isclose(out["tail_mass"], 0.25) and math.isclose(out["tv"], total_variation(p, np.array(probs)))
    assert out["kl"] == math.inf and math.isclose(out["entropy"], entropy(p))
    # without a model law: the histogram of the generated tokens; without a true law: the real one
    hist = make_metric("discrete")(np.array([[0.0], [1.0]]), np.array([[0.0], [0.0]]))
    assert hist["tv"] == 0.5 and hist["support"] == 2
    with pytest.raises(ConfigError, match="not both"):
        make_metric("discrete", probs=probs, data={"name": "categorical"})


def test_perplexity_of_the_true_chain_is_its_entropy() -> None:
    spec = {"name": "markov", "seq_len": 10, "transition": P2}
    src = make_data(**spec)
    X = src.sample(5000, rng=np.random.default_rng(0))
    m = make_model("ngram", order=2).fit(src.sample(20000, rng=np.random.default_rng(1)), rng=np.random.default_rng(0))
    out = make_metric("perplexity", data=spec)(X[:10], X, model=m)
    per_seq = -m.log_prob(X) / 10
    assert math.isclose(out["perplexity"], math.exp(out["nll_per_token"]))
    assert abs(out["excess_nll"]) < 4 * per_seq.std() / math.sqrt(5000)
    with pytest.raises(ConfigError, match="exact likelihood"):
        make_metric("perplexity")(X, X, model=None)


# ---- in the loop, the run store and the CLI --------------------------------------------------------
def _config(model: dict, data: dict, metrics: list, generations: int = 3) -> dict:
    return {
        "data": data,
        "model": model,
        "loop": {"generations": generations, "lambdas": [1, "inf"], "scheme": "accumulate", "seeds": [0]},
        "metrics": metrics,
    }


@pytest.mark.parametrize("family", ["categorical", "ngram"])
def test_discrete_runs_resume_to_identical_metrics(tmp_path, family) -> None:
    if family == "categorical":
        data, model = {"name": "categorical", "n": 60, "n_categories": 15}, {"name": "categorical"}
        metrics = [{"name": "discrete", "data": {"name": "categorical", "n_categories": 15}}]
    else:
        data, model = {"name": "markov", "n": 40, "seq_len": 8}, {"name": "ngram", "order": 2}
        metrics = ["perplexity", {"name": "ngram_tv", "order": 2}]
    full, part = tmp_path / "full", tmp_path / "part"
    run_experiment(parse_config(_config(model, data, metrics, 4)), full)
    run_experiment(parse_config(_config(model, data, metrics, 2)), part)
    run_experiment(parse_config(_config(model, data, metrics, 4)), part, resume=True)
    for run in ("lam=1/seed=0", "lam=inf/seed=0"):
        assert (part / run / "metrics.jsonl").read_text() == (full / run / "metrics.jsonl").read_text()
    samples = np.load(full / "lam=inf/seed=0/samples/gen_0004.npy")
    assert samples.shape[1] == (1 if family == "categorical" else 8) and np.all(samples == np.round(samples))
    rows = [json.loads(line) for line in (full / "lam=inf/seed=0/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 5


def test_categorical_tail_vanishes_fully_synthetic_only() -> None:
    src = make_data("categorical", n_categories=30, exponent=1.0)
    real = src.sample(40, rng=np.random.default_rng(0))
    metric = {"name": "discrete", "data": {"name": "categorical", "n_categories": 30, "exponent": 1.0}}
    last = {lam: list(run_loop("categorical", real, lam=lam, generations=30, metrics=[metric]))[-1].metrics
            for lam in (1.0, "inf")}
    first = next(run_loop("categorical", real, lam=1.0, generations=0, metrics=[metric])).metrics
    assert last[1.0]["support"] == first["support"]  # real data keep every category seen
    assert last["inf"]["support"] < first["support"]


@pytest.mark.parametrize(
    ("data", "model", "message"),
    [
        ({"name": "text", "n": 2, "path": "EMPTY", "seq_len": 4}, {"name": "ngram"}, "is empty"),
        ({"name": "text", "n": 2, "path": "TEXT", "seq_len": 4, "vocab": "ab"}, {"name": "ngram"}, "unknown token"),
        ({"name": "text", "n": 2, "path": "TEXT", "seq_len": 4}, {"name": "ngram", "order": 6}, "larger than the sequences"),
    ],
)
def test_bad_discrete_input_exits_2_with_a_message(tmp_path, capsys, data, model, message) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "text.txt").write_text("abcd" * 10)
    data = {**data, "path": str(tmp_path / ("empty.txt" if data["path"] == "EMPTY" else "text.txt"))}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_config(model, data, ["perplexity"], 1)))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
