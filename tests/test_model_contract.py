"""The GenerativeModel contract, checked for every registered model family.

The suite is parametrised over ``genloop.models.available_models()``, so a family added later
is covered automatically once it has an entry in ``FAST_OPTIONS`` (small, fast constructor
options) and, when it does not model 2-D vectors, in ``DATA`` (a function of a numpy Generator
returning its training array). A registered family without a ``FAST_OPTIONS`` entry makes
``test_every_registered_model_has_fast_options`` fail (naming it), and its contract checks are
skipped with a message pointing there.

The contract itself lives in :func:`genloop.testing.check_model` (one source of truth: users'
classes pass the same checks, ``genloop check-model``); add a check there, not here. Tests of
this module taking the ``contract`` fixture share one fitted model per family (they must not
refit or mutate it).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from genloop.data import make_data
from genloop.models import MODELS, GenerativeModel, make_model
from genloop.testing import CHECKS, check_model

_TINY_NEURAL: dict[str, Any] = {
    "network": {"hidden": 16, "depth": 2},
    "train": {"samples": 512, "batch_size": 64, "device": "cpu"},
}

#: Small, fast constructor options for each registered model name.
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "gaussian": {"estimator": "unbiased"},
    "gmm": {"n_components": 4, "max_iter": 50},
    "kde": {"bandwidth": "scott"},
    "student_t": {"dof": 4.0, "learn_dof": True},
    # neural families: a tiny MLP, a few hundred training samples, a few sampling steps
    "cfm": {**_TINY_NEURAL, "solver": "euler", "steps": 4},
    "otcfm": {**_TINY_NEURAL, "solver": "euler", "steps": 4},
    "ddpm": {**_TINY_NEURAL, "T": 50, "sample_steps": 5},
    "edm": {**_TINY_NEURAL, "num_steps": 4},
    "flow": {"transforms": 2, "hidden_features": [16, 16], "train": _TINY_NEURAL["train"]},
    # discrete families (their data in DATA below)
    "categorical": {"n_categories": 12, "smoothing": 0.5},
    "ngram": {"order": 3},
    "regression": {"alpha": 0.1},
    "transformer-lm": {"network": {"d_model": 16, "n_heads": 2, "n_layers": 1}, "train": _TINY_NEURAL["train"]},
    "hf-causal-lm": {
        "config": {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 5, "n_positions": 8},
        "train": _TINY_NEURAL["train"],
    },
    # adapters: a user's nn.Module (tests/own_nets.py) and a tiny diffusers folder (tests/own_diffusers.py)
    "torch-module": {"module": "own_nets:TinyMLP", "module_options": {"hidden": 16}, "objective": "edm",
                     "objective_options": {"num_steps": 4}, "train": _TINY_NEURAL["train"]},
    "diffusers": {"path": "<tiny diffusers folder>", "num_inference_steps": 5,
                  "train": {"samples": 64, "finetune_samples": 64, "batch_size": 16, "device": "cpu"}},
}

#: families whose contract check takes more than a few seconds (marked slow)
SLOW = {"diffusers"}


def options_for(name: str) -> dict[str, Any]:
    """FAST_OPTIONS[name], with the tiny diffusers folder built (once) for ``diffusers``."""
    options = dict(FAST_OPTIONS[name])
    if name == "diffusers":
        pytest.importorskip("diffusers")
        from own_diffusers import make_tiny_folder

        if not _TINY_DIFFUSERS:
            _TINY_DIFFUSERS.append(make_tiny_folder(Path(tempfile.mkdtemp(prefix="genloop-tiny-diffusers-"))))
        options["path"] = str(_TINY_DIFFUSERS[0])
    return options


_TINY_DIFFUSERS: list[Path] = []


def two_moons(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    """The default training data: ``n`` 2-D two-moons points, float64."""
    return make_data("two_moons", noise=0.05).sample(n, rng=rng)


#: Training data per model name (default: :func:`two_moons`).
DATA: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "student_t": lambda rng: rng.standard_t(5.0, size=(256, 1)) * 1.5 + 0.3,  # a 1-D model
    "categorical": lambda rng: make_data("categorical", n_categories=12).sample(256, rng=rng),
    "ngram": lambda rng: make_data("markov", seq_len=12, n_states=5).sample(128, rng=rng),
    "regression": lambda rng: make_data("linear_regression", d=3).sample(64, rng=rng),
    "transformer-lm": lambda rng: make_data("markov", seq_len=8, n_states=4).sample(128, rng=rng),
    "hf-causal-lm": lambda rng: make_data("markov", seq_len=8, n_states=4).sample(128, rng=rng),
    "diffusers": lambda rng: make_data("digits_images").sample(64, rng=rng),  # (1, 8, 8) in [-1, 1]
}

MODEL_NAMES = MODELS.builtin_names()
N_SAMPLES = 64


@dataclass
class Contract:
    name: str
    options: dict[str, Any]
    X: np.ndarray
    model: GenerativeModel


def _fresh(name: str) -> GenerativeModel:
    return make_model(name, **options_for(name))


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODEL_NAMES])
def contract(request: pytest.FixtureRequest) -> Contract:
    name = request.param
    if name not in FAST_OPTIONS:
        pytest.skip(f"model {name!r} has no FAST_OPTIONS entry: see test_every_registered_model_has_fast_options")
    X = DATA.get(name, two_moons)(np.random.default_rng(0))
    model = _fresh(name)
    fitted = model.fit(X, rng=np.random.default_rng(1))
    assert fitted is model, "fit must return self"
    return Contract(name, options_for(name), X, model)


def test_every_registered_model_has_fast_options() -> None:
    missing = [name for name in MODEL_NAMES if name not in FAST_OPTIONS]
    if missing:
        pytest.fail(
            f"registered model(s) {', '.join(missing)} have no FAST_OPTIONS entry in tests/test_model_contract.py, "
            "so the model contract is not checked for them; add small, fast constructor options "
            "(and a DATA entry when the model is not a 2-D vector model)"
        )
    unknown = sorted(set(FAST_OPTIONS) - set(MODEL_NAMES))
    assert not unknown, f"FAST_OPTIONS names unregistered model(s): {', '.join(unknown)}"


def test_registered_name_and_event_shape(contract: Contract) -> None:
    assert contract.model.name == contract.name
    assert contract.model.is_fitted
    assert contract.model.event_shape_ == contract.X.shape[1:]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in MODEL_NAMES if n in FAST_OPTIONS])
def test_check_model_passes(name: str) -> None:
    """The contract of genloop.testing.check_model (the one a user's class passes) holds for every
    built-in family: shapes, seeds, save → load → continue bit for bit, warm start, exact loop
    resume for every scheme, bad input. A failure names the check and its hint."""
    report = check_model(name, DATA.get(name, two_moons), options=options_for(name), n_samples=N_SAMPLES)
    assert report.ok
    skipped = {r.name for r in report.results if r.status == "skipped"}
    model = make_model(name, **options_for(name))
    expected_skips = {"gradients"} if not model.is_neural else set()
    if not model.supports_warm_start:
        expected_skips.add("warm_start_from_init")
    assert skipped == expected_skips, f"checks skipped for {name!r}: {sorted(skipped)}"
    assert [r.name for r in report.results] == list(CHECKS)


#: One loop variant per family (docs/variants.md), exercised at toy size by the test below.
VARIANT_PER_FAMILY: dict[str, dict[str, Any]] = {
    "gaussian": {"kind": "curated", "reward": "quadratic", "K": 3},
    "gmm": {"kind": "biased", "temperature": 0.7},
    "kde": {"kind": "corrected", "gamma": 1.0, "correction": "knn", "k": 1},
    "student_t": {"kind": "biased", "temperature": 0.8, "truncation": 0.5},
    "cfm": {"kind": "biased", "temperature": 0.7},
    "otcfm": {"kind": "corrected", "gamma": 0.5, "correction": "knn"},
    "ddpm": {"kind": "corrected", "gamma": 0.5, "correction": "denoiser", "sigma": 0.2},
    "edm": {"kind": "biased", "sampler": {"S_churn": 5.0, "S_noise": 0.9}},
    "flow": {"kind": "biased", "temperature": 0.7, "truncation": 0.5},
    "categorical": {"kind": "curated", "reward": {"name": "region", "low": [0.0], "high": [3.0]}, "select": "top", "fraction": 0.5},
    "ngram": {"kind": "mixture", "weights": "geometric"},
    "regression": {"kind": "corrected", "gamma": 0.5, "correction": "knn", "k": 3},
    "transformer-lm": {"kind": "biased", "temperature": 0.5},
    "hf-causal-lm": {"kind": "mixture", "lam_schedule": [0.5, 1.0]},
    "torch-module": {"kind": "corrected", "gamma": 0.5, "correction": "knn"},
    "diffusers": {"kind": "corrected", "gamma": 0.5, "correction": "knn", "k": 2},
}


def test_variant_generation_per_family(contract: Contract) -> None:
    """Each family runs one generation of a loop variant from its fitted model (toy size)."""
    from genloop.loop import LoopState, run_loop

    name = contract.name
    variant = VARIANT_PER_FAMILY[name]
    (rec,) = run_loop(_fresh(name), contract.X, lam=0.5, generations=1, seed=5, variant=variant,
                      resume=LoopState(0, contract.model))
    k = contract.X.shape[0] // 2
    assert rec.n_synthetic == k and rec.synthetic is not None
    assert rec.synthetic.shape == (k, *contract.model.event_shape_)
    assert np.all(np.isfinite(rec.synthetic))
    if variant["kind"] == "curated":
        assert rec.metrics["reward_curated"] >= rec.metrics["reward_candidates"]
        assert "reward_mean" in rec.metrics
    if variant["kind"] == "corrected" and variant["correction"] == "knn" and variant["gamma"] == 1.0 and variant["k"] == 1:
        real_rows = {tuple(r) for r in contract.X.reshape(len(contract.X), -1)}
        assert all(tuple(r) in real_rows for r in rec.synthetic.reshape(k, -1))  # c(x) = the nearest real row
