"""The GenerativeModel contract, checked for every registered model family.

The suite is parametrised over ``genloop.models.available_models()``, so a family added later
is covered automatically once it has an entry in ``FAST_OPTIONS`` (small, fast constructor
options) and, when it does not model 2-D vectors, in ``DATA`` (a function of a numpy Generator
returning its training array). A registered family without a ``FAST_OPTIONS`` entry makes
``test_every_registered_model_has_fast_options`` fail (naming it), and its contract checks are
skipped with a message pointing there. To add a check, write a test taking the ``contract``
fixture: each family is fitted once per module and shared (tests must not refit or mutate it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from genloop.data import make_data
from genloop.models import GenerativeModel, NotFittedError, available_models, make_model
from genloop.models.io import load_model, save_model

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
}


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
}

MODEL_NAMES = available_models()
N_SAMPLES = 64


@dataclass
class Contract:
    name: str
    options: dict[str, Any]
    X: np.ndarray
    model: GenerativeModel


def _fresh(name: str) -> GenerativeModel:
    return make_model(name, **FAST_OPTIONS[name])


@pytest.fixture(scope="module", params=MODEL_NAMES)
def contract(request: pytest.FixtureRequest) -> Contract:
    name = request.param
    if name not in FAST_OPTIONS:
        pytest.skip(f"model {name!r} has no FAST_OPTIONS entry: see test_every_registered_model_has_fast_options")
    X = DATA.get(name, two_moons)(np.random.default_rng(0))
    model = _fresh(name)
    fitted = model.fit(X, rng=np.random.default_rng(1))
    assert fitted is model, "fit must return self"
    return Contract(name, FAST_OPTIONS[name], X, model)


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


def _state_snapshot(model: GenerativeModel) -> tuple[dict[str, np.ndarray], Any]:
    arrays, meta = model.get_state()
    return {k: np.array(v, copy=True) for k, v in arrays.items()}, meta


def _assert_same_state(a: tuple[dict[str, np.ndarray], Any], b: tuple[dict[str, np.ndarray], Any]) -> None:
    assert a[0].keys() == b[0].keys()
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=f"state array {key!r} changed")
    assert a[1] == b[1]


def test_registered_name_and_event_shape(contract: Contract) -> None:
    assert contract.model.name == contract.name
    assert contract.model.is_fitted
    assert contract.model.event_shape_ == contract.X.shape[1:]


def test_sample_shape_and_seeds(contract: Contract) -> None:
    model = contract.model
    a = model.sample(N_SAMPLES, rng=np.random.default_rng(7))
    assert a.shape == (N_SAMPLES, *model.event_shape_)
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, model.sample(N_SAMPLES, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, model.sample(N_SAMPLES, rng=np.random.default_rng(8)))


def test_log_prob_shape(contract: Contract) -> None:
    model = contract.model
    if not model.has_log_prob:
        with pytest.raises(NotImplementedError):
            model.log_prob(contract.X[:4])
        return
    lp = model.log_prob(contract.X[:10])
    assert lp.shape == (10,) and np.all(np.isfinite(lp))


def test_save_load_round_trip(contract: Contract, tmp_path) -> None:
    model = contract.model
    loaded = load_model(save_model(model, tmp_path / contract.name))
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    assert loaded.event_shape_ == model.event_shape_
    np.testing.assert_array_equal(
        loaded.sample(N_SAMPLES, rng=np.random.default_rng(3)), model.sample(N_SAMPLES, rng=np.random.default_rng(3))
    )
    if model.has_log_prob:
        np.testing.assert_array_equal(loaded.log_prob(contract.X), model.log_prob(contract.X))


def test_clone_is_unfitted_with_equal_params(contract: Contract) -> None:
    clone = contract.model.clone()
    assert type(clone) is type(contract.model)
    assert not clone.is_fitted
    assert clone.get_params() == contract.model.get_params()
    with pytest.raises(NotFittedError):
        clone.sample(2, rng=np.random.default_rng(0))


def test_warm_start_does_not_mutate_init(contract: Contract) -> None:
    init = contract.model
    before = _state_snapshot(init)
    X_new = DATA.get(contract.name, two_moons)(np.random.default_rng(5))
    warm = init.clone()
    assert warm.fit(X_new, rng=np.random.default_rng(6), init=init) is warm
    _assert_same_state(before, init.get_state())
    assert warm.sample(4, rng=np.random.default_rng(0)).shape == (4, *init.event_shape_)


def test_unfitted_model_raises(contract: Contract) -> None:
    with pytest.raises(NotFittedError):
        _fresh(contract.name).sample(3, rng=np.random.default_rng(0))
    with pytest.raises(NotFittedError):
        _fresh(contract.name).get_state()


def test_every_torch_parameter_receives_a_gradient(contract: Contract) -> None:
    from genloop.models.neural.base import TorchGenerativeModel

    model = contract.model
    if not isinstance(model, TorchGenerativeModel):
        pytest.skip(f"model {contract.name!r} is not a torch model")
    import torch

    g = torch.Generator().manual_seed(0)
    net = model.build_net(model.event_shape_, g)
    net.train()
    Z = model.to_model_space(contract.X[:32])
    model.loss(net, Z, g).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing, f"parameters of {contract.name!r} without gradient: {missing}"


def test_save_load_then_continue_is_bit_identical(contract: Contract, tmp_path) -> None:
    """fit → save → load → continue equals fit → continue, bit for bit (what exact resume needs).

    A kill between generations resumes from the checkpoint, so everything the next warm start
    and the next sampling read must survive the round trip exactly.
    """
    model = contract.model
    loaded = load_model(save_model(model, tmp_path / contract.name))
    _assert_same_state(_state_snapshot(model), _state_snapshot(loaded))
    X_new = DATA.get(contract.name, two_moons)(np.random.default_rng(11))
    a = model.clone().fit(X_new, rng=np.random.default_rng(12), init=model)
    b = loaded.clone().fit(X_new, rng=np.random.default_rng(12), init=loaded)
    _assert_same_state(_state_snapshot(a), _state_snapshot(b))
    np.testing.assert_array_equal(a.sample(N_SAMPLES, rng=np.random.default_rng(13)),
                                  b.sample(N_SAMPLES, rng=np.random.default_rng(13)))


@pytest.mark.parametrize("scheme", ["replace", "accumulate", "accumulate-subsample", "fresh"])
@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n in FAST_OPTIONS])
def test_loop_resumed_from_checkpoint_equals_uninterrupted(name: str, scheme: str, tmp_path) -> None:
    """run_loop resumed from generation 1's checkpoint yields generation 2's record bit for bit."""
    from genloop.loop import LoopState, run_loop

    rng = np.random.default_rng(0)
    make_x = DATA.get(name, two_moons)
    real = make_x(rng)
    source = _ArraySource(make_x) if scheme == "fresh" else None
    kwargs = dict(lam=1, generations=2, scheme=scheme, seed=3, metrics=["moments"], source=source, n_eval=32)
    full = list(run_loop(_fresh(name), real, **kwargs))
    first = full[1]
    model = load_model(save_model(first.model, tmp_path / "gen1"))
    pool = [rec.synthetic for rec in full[1:2]] if scheme.startswith("accumulate") else []
    resumed = list(run_loop(_fresh(name), real, resume=LoopState(1, model, pool), **kwargs))
    assert [r.generation for r in resumed] == [2]
    assert resumed[0].metrics == full[2].metrics
    np.testing.assert_array_equal(resumed[0].samples, full[2].samples)
    _assert_same_state(_state_snapshot(resumed[0].model), _state_snapshot(full[2].model))


class _ArraySource:
    """An infinite data source drawing from a model's training-data function (for ``fresh``)."""

    infinite = True

    def __init__(self, make_x: Callable[..., np.ndarray]) -> None:
        self.make_x = make_x

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return self.make_x(rng)[:n]


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
