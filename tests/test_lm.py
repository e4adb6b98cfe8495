"""The causal Transformer LM: an exact, normalised sequence law; a sampler that draws that law
(temperature, top-p); its perplexity drift on Markov-chain text against the exact reference
(the chain's entropy, and KL(true ‖ model) computed over every sequence); runs on a text file.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import yaml

from genloop.config import parse_config
from genloop.data import make_data
from genloop.errors import ConfigError, DataError
from genloop.loop import run_loop
from genloop.metrics import make_metric
from genloop.models import make_model
from genloop.models.lm import top_p_filter
from genloop.sweep import run_experiment

TINY = {"network": {"d_model": 16, "n_heads": 2, "n_layers": 1}, "train": {"samples": 256, "batch_size": 32, "device": "cpu"}}


def _all_sequences(V: int, L: int) -> np.ndarray:
    return np.array(list(itertools.product(range(V), repeat=L)), dtype=np.float64)


@pytest.fixture(scope="module")
def tiny_lm():
    X = make_data("markov", seq_len=3, transition=[[0.9, 0.1], [0.3, 0.7]]).sample(200, rng=np.random.default_rng(0))
    return make_model("transformer-lm", **TINY).fit(X, rng=np.random.default_rng(1))


def test_sequence_law_is_normalised_and_sampled_exactly(tiny_lm) -> None:
    every = _all_sequences(2, 3)
    p = np.exp(tiny_lm.log_prob(every))
    assert math.isclose(p.sum(), 1.0, rel_tol=1e-9)
    n = 6000
    draws = tiny_lm.sample(n, rng=np.random.default_rng(2))
    codes = (draws @ np.array([4, 2, 1])).astype(int)
    freq = np.bincount(codes, minlength=8) / n
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3), (freq, p)


def test_top_p_filter_matches_a_reference() -> None:
    probs = torch.tensor([[0.1, 0.5, 0.15, 0.25], [0.6, 0.2, 0.15, 0.05]], dtype=torch.float64)
    for top_p in (0.05, 0.5, 0.6, 0.8, 0.95, 1.0):  # not at a rounded partial sum
        out = top_p_filter(probs, top_p).numpy()
        for row, got in zip(probs.numpy(), out):
            order = np.argsort(-row)
            cum = np.cumsum(row[order])
            k = int(np.searchsorted(cum, top_p - 1e-12) + 1)  # fewest tokens reaching top_p
            ref = np.zeros_like(row)
            ref[order[:k]] = row[order[:k]] / row[order[:k]].sum()
            np.testing.assert_allclose(got, ref, err_msg=f"top_p={top_p}")


def test_temperature_and_top_p_change_the_sampler_only(tiny_lm) -> None:
    greedy = make_model("transformer-lm", **TINY, temperature=0.0)
    greedy.set_state(*tiny_lm.get_state())
    a = greedy.sample(5, rng=np.random.default_rng(0))
    assert np.all(a == a[0])  # argmax decoding is deterministic
    nucleus = make_model("transformer-lm", **TINY, top_p=1e-6)
    nucleus.set_state(*tiny_lm.get_state())
    np.testing.assert_array_equal(nucleus.sample(5, rng=np.random.default_rng(3)), a)
    np.testing.assert_array_equal(nucleus.log_prob(a), tiny_lm.log_prob(a))  # log_prob is the network's law
    with pytest.raises(ConfigError, match="top_p"):
        make_model("transformer-lm", top_p=0.0)
    with pytest.raises(DataError, match="unknown token 2"):
        tiny_lm.log_prob(np.array([[0.0, 2.0, 1.0]]))
    with pytest.raises(DataError, match="non-integer"):
        tiny_lm.clone().fit(np.full((4, 3), 0.5), rng=np.random.default_rng(0))


@pytest.mark.slow
def test_markov_lm_perplexity_drift_against_the_exact_reference() -> None:
    spec = {"name": "markov", "seq_len": 7, "n_states": 3, "matrix_seed": 1}
    src = make_data(**spec)
    L = 7
    real = src.sample(1000, rng=np.random.default_rng(0))
    held = src.sample(2000, rng=np.random.default_rng(1))
    every = _all_sequences(3, L)
    log_true = src.log_prob(every)
    model = make_model("transformer-lm", network={"d_model": 32, "n_heads": 2, "n_layers": 2},
                       train={"samples": 16000, "batch_size": 64, "lr": 3e-3, "device": "cpu"})
    records = list(run_loop(model, real, lam="inf", generations=2, metrics=[make_metric("perplexity", data=spec)],
                            heldout=held, n_eval=100))
    kl = []
    for rec in records:
        # exact KL(true ‖ model) per token, summed over all 3^7 sequences
        kl.append(float(np.sum(np.exp(log_true) * (log_true - rec.model.log_prob(every)))) / L)
        # the measured excess over the entropy is a Monte Carlo estimate of it (4 SE, paired)
        diff = (src.log_prob(held) - rec.model.log_prob(held)) / L
        se = diff.std(ddof=1) / math.sqrt(diff.size)
        assert abs(rec.metrics["excess_nll"] - kl[-1]) <= 4 * se + 1e-9
        assert rec.metrics["excess_nll"] >= -4 * se  # no model beats the entropy of the source
    assert kl[0] < 0.05  # generation 0 learns the chain
    assert kl[2] > kl[0]  # and the fully synthetic loop drifts away from it


@pytest.mark.slow
def test_lm_on_a_text_file_runs_and_resumes(tmp_path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat on the mat. " * 40)
    doc = {
        "data": {"name": "text", "n": 40, "n_heldout": 20, "path": str(text), "seq_len": 12},
        "model": {"name": "transformer-lm", **TINY},
        "loop": {"generations": 2, "lambdas": [1], "scheme": "replace", "seeds": [0]},
        "metrics": ["perplexity", {"name": "discrete", "tail_quantile": 0.3}],
    }
    full, part = tmp_path / "full", tmp_path / "part"
    run_experiment(parse_config(doc), full)
    short = yaml.safe_load(yaml.safe_dump(doc))
    short["loop"]["generations"] = 1
    run_experiment(parse_config(short), part)
    run_experiment(parse_config(doc), part, resume=True)
    assert (part / "lam=1/seed=0/metrics.jsonl").read_text() == (full / "lam=1/seed=0/metrics.jsonl").read_text()
    samples = np.load(full / "lam=1/seed=0/samples/gen_0002.npy")
    source = make_data("text", path=str(text), seq_len=12)
    decoded = source.decode(samples[:3])
    assert all(len(s) == 12 and set(s) <= set(source.chars) for s in decoded)


# ---- the Hugging Face backend (transformers, built offline from a config or a local folder) ----------
HF_TINY = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 3, "n_positions": 8}


def test_hf_gpt2_from_a_config_is_an_exact_normalised_law() -> None:
    pytest.importorskip("transformers")
    X = make_data("markov", seq_len=3, transition=[[0.9, 0.1], [0.3, 0.7]]).sample(100, rng=np.random.default_rng(0))
    m = make_model("hf-causal-lm", config=HF_TINY, train=TINY["train"]).fit(X, rng=np.random.default_rng(1))
    every = _all_sequences(3, 3)  # the network's whole vocabulary, BOS id (2) included
    assert math.isclose(np.exp(m.log_prob(every)).sum(), 1.0, rel_tol=1e-9)
    again = make_model("hf-causal-lm", config=HF_TINY, train=TINY["train"]).fit(X, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again.log_prob(every), m.log_prob(every))  # seeded, no global RNG
    with pytest.raises(DataError, match="unknown token 3"):
        m.log_prob(np.array([[0.0, 3.0, 1.0]]))


def test_hf_pretrained_folder_starts_generation_0(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in HF_TINY.items() if k != "model_type"}, model_type="gpt2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        saved = transformers.AutoModelForCausalLM.from_config(cfg)
    saved.save_pretrained(tmp_path / "ckpt")
    model = make_model("hf-causal-lm", pretrained=str(tmp_path / "ckpt"), train=TINY["train"])
    net = model.build_net((3,), torch.Generator().manual_seed(5))
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(net.model.state_dict()[key], value, rtol=0, atol=0)
    X = np.random.default_rng(0).integers(0, 2, size=(40, 3)).astype(float)
    recs = list(run_loop(model, X, lam="inf", generations=1, metrics=["perplexity"]))
    assert all(np.isfinite(r.metrics["perplexity"]) for r in recs)
    with pytest.raises(ConfigError, match="exactly one of config"):
        make_model("hf-causal-lm", config=HF_TINY, pretrained=str(tmp_path / "ckpt"))
    with pytest.raises(ConfigError, match="cannot read a transformers checkpoint"):
        make_model("hf-causal-lm", pretrained=str(tmp_path / "missing")).fit(X, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="exceed the network's context"):
        model.check_data((20,), 10)


def test_token_models_never_sample_special_tokens() -> None:
    """A config-built hf-causal-lm predicts from a BOS id that is no data token (here V - 1 = 4
    for a 4-state chain): its samples never contain it, nor any other special id, and its law
    over the data's tokens is normalised. Without the mask the same network samples the BOS
    (about 1 token in 5 for this barely trained network), which is what the mask prevents."""
    pytest.importorskip("transformers")
    X = make_data("markov", seq_len=4, n_states=4).sample(100, rng=np.random.default_rng(0))
    config = {**HF_TINY, "vocab_size": 5}
    train = {**TINY["train"], "samples": 64}
    masked = make_model("hf-causal-lm", config=config, train=train).fit(X, rng=np.random.default_rng(1))
    S = masked.sample(2500, rng=np.random.default_rng(2))  # 10,000 tokens
    assert S.shape == (2500, 4) and set(np.unique(S)) <= {0.0, 1.0, 2.0, 3.0}
    assert math.isclose(np.exp(masked.log_prob(_all_sequences(4, 4))).sum(), 1.0, rel_tol=1e-9)
    plain = make_model("hf-causal-lm", config=config, train=train, mask_special=False).fit(X, rng=np.random.default_rng(1))
    assert np.sum(plain.sample(2500, rng=np.random.default_rng(2)) == 4) > 100
    with pytest.raises(DataError, match=r"special token id\(s\) \[4\]"):
        make_model("hf-causal-lm", config=config, train=train).fit(np.where(X == 3, 4.0, X), rng=np.random.default_rng(1))
    # the other token families have no special ids to emit: the output layer spans the data's V only
    for name, opts in (("transformer-lm", {**TINY, "train": train}), ("ngram", {"order": 2})):
        S = make_model(name, **opts).fit(X, rng=np.random.default_rng(1)).sample(2500, rng=np.random.default_rng(2))
        assert set(np.unique(S)) <= {0.0, 1.0, 2.0, 3.0}, name
