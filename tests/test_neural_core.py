"""The shared neural pieces: networks, the training loop, and the TorchGenerativeModel base."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from genloop.errors import ConfigError, DataError
from genloop.models import make_model
from genloop.models.io import load_model, save_model
from genloop.models.neural import base as neural_base
from genloop.models.neural.networks import (
    UNET_CIFAR10,
    MLPNet,
    NetworkConfig,
    PositionalEmbedding,
    UNet,
    build_network,
)
from genloop.models.neural.trainer import (
    EMAUpdater,
    TrainConfig,
    ema_beta,
    halflife_from_decay,
    learning_rate,
    train,
)

TINY = {"network": {"hidden": 16, "depth": 2}, "train": {"samples": 256, "batch_size": 32, "device": "cpu"}}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Scalar(nn.Module):
    """A one-parameter 'network' for exact checks of the training loop."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor([value]))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - unused
        return x * 0 + self.p


def _sq_loss(net: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (net.p - x[:, 0]) ** 2


# ---- networks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, cfg",
    [
        ((2,), NetworkConfig(hidden=16, depth=2)),
        ((5,), NetworkConfig(kind="mlp", hidden=8, depth=1, embedding="fourier")),
        ((1, 8, 8), NetworkConfig(channels=8, channel_mult=(1, 2), attn_resolutions=(4,))),
        ((1, 28, 28), NetworkConfig(channels=8, channel_mult=(1, 2, 2), attn_resolutions=(7,))),
        ((3, 32, 32), NetworkConfig(channels=8, channel_mult=(1, 2, 2, 2), attn_resolutions=(16,), dropout=0.1)),
    ],
)
def test_network_output_shape_and_gradients(shape, cfg) -> None:
    net = build_network(cfg, shape, generator=_gen(0))
    expected = MLPNet if len(shape) == 1 else UNet
    assert isinstance(net, expected)
    x = torch.randn(3, *shape, generator=_gen(1))
    t = torch.rand(3, generator=_gen(2))
    y = net(x, t)
    assert y.shape == x.shape
    y.square().sum().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    # a scalar t (what ODE solvers pass) is broadcast over the batch
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x, torch.tensor(0.3)), net(x, torch.full((3,), 0.3)))


def test_network_depends_on_time() -> None:
    net = build_network(NetworkConfig(hidden=16, depth=2), (2,), generator=_gen(0))
    x = torch.randn(4, 2, generator=_gen(1))
    assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.full((4,), 0.5)))


def test_network_init_is_a_function_of_the_generator_only() -> None:
    state = torch.get_rng_state()
    a = build_network(NetworkConfig(channels=8, channel_mult=(1, 2), attn_resolutions=(4,)), (1, 8, 8), generator=_gen(3))
    b = build_network(NetworkConfig(channels=8, channel_mult=(1, 2), attn_resolutions=(4,)), (1, 8, 8), generator=_gen(3))
    c = build_network(NetworkConfig(channels=8, channel_mult=(1, 2), attn_resolutions=(4,)), (1, 8, 8), generator=_gen(4))
    assert torch.equal(state, torch.get_rng_state()), "building a network must not consume the global torch RNG"
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.parameters(), c.parameters()))


def test_default_init_matches_pytorch_scale() -> None:
    # Kaiming-uniform(a=sqrt 5) = U(±1/sqrt(fan_in)) for weights: check the bound and the variance.
    net = build_network(NetworkConfig(hidden=512, depth=1), (2,), generator=_gen(0))
    w = net.body[0].weight.detach()  # fan_in = 2 + 512
    bound = 1 / math.sqrt(w.shape[1])
    assert w.abs().max() <= bound + 1e-7
    assert abs(w.var().item() - bound**2 / 3) < 0.05 * bound**2 / 3


def test_positional_embedding_closed_form() -> None:
    emb = PositionalEmbedding(8, time_scale=1000.0)
    t = torch.tensor([0.0, 0.25, 1.0])
    out = emb(t)
    freqs = 10_000.0 ** (-np.arange(4) / 4)
    arg = 1000.0 * t.numpy()[:, None] * freqs[None, :]
    np.testing.assert_allclose(out.numpy(), np.concatenate([np.cos(arg), np.sin(arg)], 1), rtol=1e-5, atol=1e-4)


def test_network_config_validation() -> None:
    with pytest.raises(ConfigError, match="auto"):
        build_network(NetworkConfig(), (2, 3))
    with pytest.raises(ConfigError, match="unet"):
        build_network(NetworkConfig(kind="unet"), (4,))
    with pytest.raises(ValueError, match="bogus"):
        NetworkConfig(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="channel_mult"):
        make_model("cfm", network={"channel_mult": []})


def test_cifar_scale_config_size() -> None:
    # EDM ddpmpp's sizes (multipliers (2, 2, 2)); with genloop's blocks that is 54.2 M
    # parameters (EDM's exact network: kind songunet, 55.7 M, tests/test_networks_paper.py)
    assert UNET_CIFAR10.channel_mult == (2, 2, 2)
    net = build_network(UNET_CIFAR10, (3, 32, 32))
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 54.2e6) < 0.05e6


# ---- trainer ---------------------------------------------------------------------------------------
def test_budget_in_samples_and_epochs() -> None:
    assert TrainConfig(samples=1000, batch_size=128).num_steps(50) == 8
    assert TrainConfig(epochs=2.5, batch_size=100).num_steps(400) == 10
    assert TrainConfig(batch_size=100).total_samples(7) == 200_000
    with pytest.raises(ValueError, match="only one"):
        TrainConfig(samples=10, epochs=1.0)
    with pytest.raises(ConfigError, match="only one"):
        make_model("cfm", train={"samples": 10, "epochs": 1.0})
    with pytest.raises(ConfigError, match="carry_over"):
        make_model("cfm", train={"carry_over": ["weights", "momentum"]})


def test_epochs_visit_every_row_once() -> None:
    data = torch.arange(12, dtype=torch.float32)[:, None]
    seen: list[torch.Tensor] = []

    def loss(net, x, g):
        seen.append(x[:, 0].clone())
        return _sq_loss(net, x, g)

    train(Scalar(), loss, data, TrainConfig(epochs=3, batch_size=4, device="cpu"), generator=_gen(0))
    assert len(seen) == 9
    for epoch in range(3):
        rows = torch.cat(seen[3 * epoch : 3 * epoch + 3]).sort().values
        assert torch.equal(rows, data[:, 0])


def test_trainer_is_deterministic_given_the_generator() -> None:
    data = torch.randn(200, 2, generator=_gen(0))
    cfg = TrainConfig(samples=640, batch_size=32, device="cpu", ema_halflife_samples=100.0)
    model = make_model("cfm", **TINY)

    def run(seed: int) -> list[torch.Tensor]:
        net = build_network(model.network, (2,), generator=_gen(1))
        res = train(net, model.loss, data, cfg, generator=_gen(seed))
        return [p.detach().clone() for p in list(res.net.parameters()) + list(res.ema.parameters())]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert any(not torch.equal(x, y) for x, y in zip(a, c))


def test_fit_is_deterministic_given_rng() -> None:
    X = np.random.default_rng(0).normal(size=(100, 2))
    a = make_model("cfm", **TINY).fit(X, rng=np.random.default_rng(1))
    b = make_model("cfm", **TINY).fit(X, rng=np.random.default_rng(1))
    c = make_model("cfm", **TINY).fit(X, rng=np.random.default_rng(2))
    sa, sb, sc = a.get_state()[0], b.get_state()[0], c.get_state()[0]
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa if k.startswith("net."))


def test_ema_follows_the_halflife_formula() -> None:
    # beta = 0.5 ** (batch / halflife); ema_k = beta ema_{k-1} + (1 - beta) p_k, ema_0 = p_0
    cfg = TrainConfig(samples=40, batch_size=4, lr=0.05, ema_halflife_samples=8.0, device="cpu")
    beta = ema_beta(cfg)
    assert beta == pytest.approx(0.5**0.5)
    trajectory: list[float] = []

    def loss(net, x, g):
        trajectory.append(net.p.detach().item())  # the parameter before this step
        return _sq_loss(net, x, g)

    data = torch.linspace(2.0, 3.0, 8)[:, None]
    res = train(Scalar(0.0), loss, data, cfg, generator=_gen(0))
    values = trajectory[1:] + [res.net.p.item()]
    ema = trajectory[0]
    for p in values:
        ema = beta * ema + (1 - beta) * p
    assert len(values) == 10
    assert res.ema.p.item() == pytest.approx(ema, rel=1e-5)
    assert abs(res.ema.p.item() - res.net.p.item()) > 1e-3  # the EMA lags the weights
    assert halflife_from_decay(0.9999, 128) == pytest.approx(128 * math.log(0.5) / math.log(0.9999))
    assert 0.5 ** (128 / halflife_from_decay(0.9999, 128)) == pytest.approx(0.9999)


def test_fused_ema_update_equals_the_per_tensor_update_bit_for_bit() -> None:
    # ema <- lerp(ema, net, 1 - beta) tensor by tensor (the reference), buffers copied; the
    # fused multi-tensor update must give the same bits, also for an EMA held in another dtype
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Linear(7, 3))
    for p in net.parameters():
        p.data.normal_(generator=g)
    net.train()(torch.randn(16, 5, generator=g))  # running statistics differ from the EMA's
    for ema_dtype in (torch.float32, torch.float64):
        ema = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Linear(7, 3)).to(ema_dtype)
        for p in ema.parameters():
            p.data.normal_(generator=g)
        ref = [t.detach().clone() for t in ema.parameters()]
        updater = EMAUpdater(ema, net)
        for beta in (0.9, 0.37, 0.0):
            updater(beta)
            ref = [r.lerp(p.detach().to(r.dtype), 1.0 - beta) for r, p in zip(ref, net.parameters())]
            for r, e in zip(ref, ema.parameters()):
                assert e.dtype == ema_dtype
                assert torch.equal(r, e)
        for b_ema, b in zip(ema.buffers(), net.buffers()):
            assert torch.equal(b_ema, b.to(b_ema.dtype))
    assert torch.equal(ref[0], net[0].weight.to(torch.float64))  # beta = 0 copies the weights


def test_ema_rampup_caps_the_halflife() -> None:
    # EDM: h_k = min(halflife, ratio * samples seen before step k); beta_k = 0.5 ** (B / h_k)
    cfg = TrainConfig(samples=40, batch_size=4, lr=0.05, ema_halflife_samples=8.0, ema_rampup_ratio=0.5, device="cpu")
    assert ema_beta(cfg, 0) == 0.0  # the first step copies the weights
    assert ema_beta(cfg, 8) == pytest.approx(0.5 ** (4 / 4))
    assert ema_beta(cfg, 400) == pytest.approx(0.5 ** (4 / 8))
    trajectory: list[float] = []

    def loss(net, x, g):
        trajectory.append(net.p.detach().item())
        return _sq_loss(net, x, g)

    res = train(Scalar(0.0), loss, torch.linspace(2.0, 3.0, 8)[:, None], cfg, generator=_gen(0))
    values = trajectory[1:] + [res.net.p.item()]
    ema = trajectory[0]
    for k, p in enumerate(values):
        ema = ema_beta(cfg, 4 * k) * ema + (1 - ema_beta(cfg, 4 * k)) * p
    assert res.ema.p.item() == pytest.approx(ema, rel=1e-5)


def test_learning_rate_warmup_schedule() -> None:
    cfg = TrainConfig(samples=48, batch_size=4, lr=0.1, warmup_samples=16, device="cpu")
    assert learning_rate(cfg, 0) == 0.0
    assert learning_rate(cfg, 8) == pytest.approx(0.05)
    assert learning_rate(cfg, 100) == pytest.approx(0.1)
    assert learning_rate(cfg.model_copy(update={"warmup_samples": 0}), 0) == pytest.approx(0.1)
    trajectory: list[float] = []

    def loss(net, x, g):
        trajectory.append(net.p.detach().item())
        return _sq_loss(net, x, g)

    res = train(Scalar(0.0), loss, torch.full((8, 1), 5.0), cfg, generator=_gen(0))
    np.testing.assert_allclose(res.lrs, [0.1 * min(4 * (k + 1) / 16, 1.0) for k in range(12)])
    # Adam's first step moves a parameter by lr (its normalised gradient has magnitude 1)
    assert trajectory[1] - trajectory[0] == pytest.approx(res.lrs[0], rel=1e-4)


def test_gradient_clipping_bounds_the_applied_gradient() -> None:
    norms: list[float] = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        data = torch.full((16, 1), 100.0)  # gradient 2 (p - 100) ~ -200 at the start
        train(Scalar(0.0), _sq_loss, data, TrainConfig(samples=64, batch_size=16, grad_clip=0.5, device="cpu"), generator=_gen(0))
        clipped = list(norms)
        norms.clear()
        train(Scalar(0.0), _sq_loss, data, TrainConfig(samples=64, batch_size=16, device="cpu"), generator=_gen(0))
    finally:
        handle.remove()
    assert len(clipped) == 4 and max(clipped) <= 0.5 + 1e-5
    assert min(norms) > 100  # without clipping the same gradients are large


def test_bad_losses_are_reported() -> None:
    data = torch.zeros(8, 1)
    with pytest.raises(ValueError, match="per-example"):
        train(Scalar(), lambda n, x, g: _sq_loss(n, x, g).mean(), data, TrainConfig(samples=8, batch_size=4), generator=_gen(0))
    with pytest.raises(FloatingPointError, match="not finite"):
        train(Scalar(), lambda n, x, g: _sq_loss(n, x, g) * float("nan"), data, TrainConfig(samples=8, batch_size=4), generator=_gen(0))


# ---- the model base --------------------------------------------------------------------------------
class _Recorder:
    """Wraps trainer.train inside base.fit and records what a fit starts from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[dict] = []
        real = neural_base.train

        def wrapped(net, loss_fn, data, cfg, *, generator, ema=None, optimizer_state=None):
            self.calls.append(
                {
                    "net": {k: v.clone() for k, v in net.state_dict().items()},
                    "ema": None if ema is None else {k: v.clone() for k, v in ema.state_dict().items()},
                    "optimizer_state": optimizer_state,
                    "data": data.clone(),
                    "cfg": cfg,
                }
            )
            return real(net, loss_fn, data, cfg, generator=generator, ema=ema, optimizer_state=optimizer_state)

        monkeypatch.setattr(neural_base, "train", wrapped)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].cpu()) for k in a)


def _opts(**train_over) -> dict:
    return {**TINY, "train": {**TINY["train"], "ema_halflife_samples": 500.0, **train_over}}


def test_finetune_starts_from_init_exactly(monkeypatch) -> None:
    X0 = np.random.default_rng(0).normal(size=(64, 2))
    X1 = np.random.default_rng(1).normal(loc=3.0, size=(64, 2))
    init = make_model("cfm", **_opts()).fit(X0, rng=np.random.default_rng(2))
    before = {k: v.copy() for k, v in init.get_state()[0].items()}
    rec = _Recorder(monkeypatch)
    warm = make_model("cfm", **_opts()).fit(X1, rng=np.random.default_rng(3), init=init)
    start = rec.calls[0]
    assert _same(start["net"], init.net_.state_dict())
    assert _same(start["ema"], init.ema_.state_dict())
    assert start["optimizer_state"] is None  # default: optimizer restarted (official EDM fine-tune)
    # the previous generation's scaling is kept, so carried weights keep their meaning
    np.testing.assert_array_equal(warm.shift_, init.shift_)
    torch.testing.assert_close(start["data"], torch.as_tensor((X1 - init.shift_) / init.scale_, dtype=torch.float32))
    assert warm.samples_seen_ == init.samples_seen_ + 256
    after = init.get_state()[0]
    assert all(np.array_equal(before[k], after[k]) for k in before), "init was mutated"
    assert not _same({k: torch.from_numpy(v) for k, v in warm.get_state()[0].items() if k.startswith("net.")},
                     {k: torch.from_numpy(v) for k, v in after.items() if k.startswith("net.")})


def test_finetune_budget_applies_only_to_warm_starts_that_carry_weights(monkeypatch) -> None:
    X0 = np.random.default_rng(0).normal(size=(64, 2))
    opts = _opts(samples=512, finetune_samples=128)
    init = make_model("cfm", **opts).fit(X0, rng=np.random.default_rng(2))
    assert init.samples_seen_ == 512  # generation 0: the full budget
    rec = _Recorder(monkeypatch)
    warm = make_model("cfm", **opts).fit(X0, rng=np.random.default_rng(3), init=init)
    assert rec.calls[0]["cfg"].total_samples(64) == 128 and warm.samples_seen_ == 512 + 128
    scratch = make_model("cfm", **_opts(samples=512, finetune_samples=128, carry_over=[]))
    scratch.fit(X0, rng=np.random.default_rng(3), init=init)
    assert rec.calls[1]["cfg"].total_samples(64) == 512 and scratch.samples_seen_ == 512


def test_scratch_ignores_init_weights(monkeypatch) -> None:
    X0 = np.random.default_rng(0).normal(size=(64, 2))
    init = make_model("cfm", **_opts()).fit(X0, rng=np.random.default_rng(2))
    rec = _Recorder(monkeypatch)
    make_model("cfm", **_opts(carry_over=[])).fit(X0 * 2, rng=np.random.default_rng(3), init=init)
    make_model("cfm", **_opts(carry_over=[])).fit(X0 * 2, rng=np.random.default_rng(3))
    with_init, without = rec.calls
    assert _same(with_init["net"], without["net"])  # a fresh initialisation, as with no init
    assert not _same(with_init["net"], init.net_.state_dict())
    assert with_init["ema"] is None and with_init["optimizer_state"] is None


def test_optimizer_carry_over_and_state_round_trip(monkeypatch, tmp_path) -> None:
    X0 = np.random.default_rng(0).normal(size=(64, 2))
    init = make_model("cfm", **_opts(carry_over=["weights", "optimizer"])).fit(X0, rng=np.random.default_rng(2))
    loaded = load_model(save_model(init, tmp_path / "m"))
    st_a, st_b = init.optimizer_state_, loaded.optimizer_state_
    assert st_a["state"].keys() == st_b["state"].keys()
    for i in st_a["state"]:
        for key, v in st_a["state"][i].items():
            assert torch.equal(torch.as_tensor(v), st_b["state"][i][key])
    rec = _Recorder(monkeypatch)
    warm_a = make_model("cfm", **_opts(carry_over=["weights", "optimizer"])).fit(X0, rng=np.random.default_rng(3), init=init)
    warm_b = make_model("cfm", **_opts(carry_over=["weights", "optimizer"])).fit(X0, rng=np.random.default_rng(3), init=loaded)
    assert rec.calls[0]["optimizer_state"] is not None and rec.calls[0]["ema"] is None
    # continuing from a checkpoint is the same as continuing from the live model
    sa, sb = warm_a.get_state()[0], warm_b.get_state()[0]
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_warm_start_needs_same_family_and_shape() -> None:
    X = np.random.default_rng(0).normal(size=(32, 2))
    init = make_model("cfm", **TINY).fit(X, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="same family"):
        make_model("otcfm", **TINY).fit(X, rng=np.random.default_rng(0), init=init)
    with pytest.raises(DataError, match="shape"):
        make_model("cfm", **TINY).fit(np.zeros((32, 3)) + np.arange(3), rng=np.random.default_rng(0), init=init)
    with pytest.raises(ConfigError, match="architecture"):
        make_model("cfm", **{**TINY, "network": {"hidden": 8, "depth": 2}}).fit(X, rng=np.random.default_rng(0), init=init)


def test_vector_standardisation_and_image_identity() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * np.array([1000.0, 0.01]) + np.array([5e3, -2.0])
    m = make_model("cfm", **{**TINY, "solver": "euler", "steps": 4}).fit(X, rng=rng)
    np.testing.assert_allclose(m.shift_, X.mean(0))
    np.testing.assert_allclose(m.scale_, X.std(0))
    S = m.sample(500, rng=rng)
    # samples come back in data units: the scales of the two coordinates differ by ~1e5
    assert 100 < S[:, 0].std() < 10_000 and 1e-3 < S[:, 1].std() < 0.1
    assert S.dtype == np.float64
    imgs = rng.uniform(-1, 1, size=(16, 1, 8, 8))
    opts = {"network": {"channels": 8, "channel_mult": [1, 2], "attn_resolutions": []}, "train": {"samples": 16, "batch_size": 8, "device": "cpu"}, "solver": "euler", "steps": 2}
    mi = make_model("cfm", **opts).fit(imgs, rng=rng)
    assert np.all(mi.shift_ == 0) and np.all(mi.scale_ == 1)
    assert mi.sample(3, rng=rng).shape == (3, 1, 8, 8)


def test_sampling_runs_in_batches() -> None:
    X = np.random.default_rng(0).normal(size=(64, 2))
    m = make_model("cfm", **{**TINY, "solver": "midpoint", "steps": 3, "sample_batch_size": 7})
    m.fit(X, rng=np.random.default_rng(1))
    a = m.sample(20, rng=np.random.default_rng(5))
    assert a.shape == (20, 2) and np.all(np.isfinite(a))
    assert m.nfe_per_batch_ == [6, 6, 6]  # ceil(20 / 7) batches, 2 evaluations per midpoint step
    assert m.last_nfe_ == 6
    np.testing.assert_array_equal(a, m.sample(20, rng=np.random.default_rng(5)))
    assert m.sample(0, rng=np.random.default_rng(5)).shape == (0, 2)


def test_channels_last_and_device_options() -> None:
    data = torch.tanh(torch.randn(16, 1, 8, 8, generator=_gen(0)))
    model = make_model("edm", network={"channels": 8, "channel_mult": [1, 2], "attn_resolutions": [4], "norm_groups": 4})
    results = []
    for channels_last in (False, True):
        net = build_network(model.network, (1, 8, 8), generator=_gen(1))
        cfg = TrainConfig(samples=64, batch_size=8, device="cpu", channels_last=channels_last, compile=True)
        results.append(train(net, model.loss, data, cfg, generator=_gen(2), progress=False).net)
    for a, b in zip(results[0].parameters(), results[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # same training, another memory layout
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(Exception, match="pattern"):
        TrainConfig(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            train(Scalar(), _sq_loss, torch.zeros(4, 1), TrainConfig(samples=4, batch_size=4, device="cuda:0"),
                  generator=_gen(0))
