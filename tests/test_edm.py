"""EDM (Karras et al. 2022): preconditioning, loss, sigma schedule and Heun sampler.

The closed-form oracle is Gaussian data N(m, s^2 I), whose ideal denoiser is
D*(x; sigma) = (s^2 x + sigma^2 m) / (s^2 + sigma^2) and whose probability-flow ODE maps
x(sigma_max) to m + s (x(sigma_max) - m) / sqrt(s^2 + sigma_max^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genloop.metrics.vector import wasserstein2 as _w2  # exact W2 (POT), tested in test_metrics_vector
from genloop.errors import ConfigError
from genloop.models.diffusion.objectives import (
    edm_denoise,
    edm_loss,
    edm_loss_weight,
    edm_precond,
    edm_sample_sigma,
)
from genloop.models.diffusion.samplers import edm_heun_sample
from genloop.models.diffusion.schedules import edm_sigma_steps

SIGMAS = torch.tensor([0.002, 0.01, 0.1, 0.5, 1.0, 3.0, 80.0], dtype=torch.float64)


def gaussian_denoiser(m: float, s: float):
    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return (s**2 * x + sig**2 * m) / (s**2 + sig**2)

    return D


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- preconditioning ------------------------------------------------------------------------
@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_precond_matches_table1(sigma_data: float) -> None:
    c_skip, c_out, c_in, c_noise = edm_precond(SIGMAS, sigma_data)
    for i, sigma in enumerate(SIGMAS.tolist()):
        assert c_skip[i].item() == pytest.approx(sigma_data**2 / (sigma**2 + sigma_data**2), rel=1e-14)
        assert c_out[i].item() == pytest.approx(sigma * sigma_data / math.sqrt(sigma**2 + sigma_data**2), rel=1e-14)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(sigma**2 + sigma_data**2), rel=1e-14)
        assert c_noise[i].item() == pytest.approx(math.log(sigma) / 4, rel=1e-14)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_precond_unit_variance_input_and_target(sigma_data: float) -> None:
    """EDM Appendix B.6: with y ~ N(0, sigma_data^2), the network input c_in (y + n) and the
    effective target (y - c_skip (y + n)) / c_out both have unit variance, and lambda c_out^2 = 1."""
    c_skip, c_out, c_in, _ = edm_precond(SIGMAS, sigma_data)
    var_in = c_in**2 * (sigma_data**2 + SIGMAS**2)
    var_target = ((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * SIGMAS**2) / c_out**2
    torch.testing.assert_close(var_in, torch.ones_like(SIGMAS), rtol=1e-12, atol=0)
    torch.testing.assert_close(var_target, torch.ones_like(SIGMAS), rtol=1e-12, atol=0)
    torch.testing.assert_close(edm_loss_weight(SIGMAS, sigma_data) * c_out**2, torch.ones_like(SIGMAS))
    # and empirically, 200k draws per sigma: sample variance within 2% of 1
    g = gen(0)
    y = torch.randn(200_000, generator=g, dtype=torch.float64) * sigma_data
    n = torch.randn(200_000, generator=g, dtype=torch.float64)
    for i, sigma in enumerate(SIGMAS.tolist()):
        target = (y - c_skip[i] * (y + sigma * n)) / c_out[i]
        assert target.var().item() == pytest.approx(1.0, rel=0.02)


def test_denoise_formula_and_zero_net_is_ideal_for_centered_gaussian() -> None:
    sigma_data = 0.5
    g = gen(1)
    x = torch.randn(7, 3, 2, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.3, 1.0, 2.0, 10.0, 80.0], dtype=torch.float64)
    seen = {}

    def F(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return 2.0 * x_in + c_noise.reshape(-1, 1, 1, 1)

    D = edm_denoise(F, x, sigma, sigma_data)
    b = sigma.reshape(-1, 1, 1, 1)
    c_in = 1 / (b**2 + sigma_data**2).sqrt()
    torch.testing.assert_close(seen["x_in"], c_in * x)
    torch.testing.assert_close(seen["c_noise"], sigma.log() / 4)
    c_skip = sigma_data**2 / (b**2 + sigma_data**2)
    c_out = b * sigma_data / (b**2 + sigma_data**2).sqrt()
    torch.testing.assert_close(D, c_skip * x + c_out * (2 * c_in * x + b.log() / 4))
    # F = 0 gives c_skip x, the ideal denoiser of N(0, sigma_data^2 I)
    D0 = edm_denoise(lambda x_in, c: torch.zeros_like(x_in), x, sigma, sigma_data)
    torch.testing.assert_close(D0, gaussian_denoiser(0.0, sigma_data)(x, sigma))


# ---- training objective -------------------------------------------------------------------------
def test_training_sigma_is_lognormal() -> None:
    like = torch.zeros(1, dtype=torch.float64)
    sig = edm_sample_sigma(100_000, like, gen(2), P_mean=-1.2, P_std=1.2)
    logs = sig.log()
    # mean within 5 standard errors (1.2/sqrt(1e5) = 0.0038), std within 1%
    assert abs(logs.mean().item() + 1.2) < 0.02
    assert logs.std().item() == pytest.approx(1.2, rel=0.01)


@pytest.mark.parametrize("m", [0.0, 0.7])
def test_loss_of_ideal_denoiser_is_one(m: float) -> None:
    """For y ~ N(m, sigma_data^2 I) the ideal denoiser's error per dimension is
    sigma_data^2 sigma^2 / (sigma_data^2 + sigma^2) = 1 / lambda(sigma): the weighted loss
    has expectation exactly 1 for every sigma."""
    sigma_data = 0.5
    g = gen(3)
    y = m + sigma_data * torch.randn(40_000, 4, generator=g, dtype=torch.float64)
    loss = edm_loss(gaussian_denoiser(m, sigma_data), y, g, sigma_data=sigma_data)
    assert loss.shape == (40_000,)
    # per-example loss is chi^2_4 / 4 (std 0.707): 5 standard errors = 0.018
    assert abs(loss.mean().item() - 1.0) < 0.018
    # a wrong denoiser (identity: no denoising) has a much larger loss
    bad = edm_loss(lambda x, s: x, y, g, sigma_data=sigma_data)
    assert bad.mean().item() > 3.0


# ---- sigma steps and sampler --------------------------------------------------------------------
def test_sigma_steps_rho_schedule() -> None:
    steps = edm_sigma_steps(18, 0.002, 80.0, 7.0)
    assert steps.shape == (19,)
    assert steps[0].item() == pytest.approx(80.0, rel=1e-12)
    assert steps[17].item() == pytest.approx(0.002, rel=1e-12)
    assert steps[18].item() == 0.0
    assert bool((steps[1:] < steps[:-1]).all())
    # steps are uniform in sigma^(1/rho)
    r = steps[:-1] ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], torch.full((17,), (r[-1] - r[0]).item() / 17, dtype=torch.float64))
    with pytest.raises(ConfigError):
        edm_sigma_steps(0)


def exact_flow(latents: torch.Tensor, m: float, s: float, sigma_max: float) -> torch.Tensor:
    x_T = latents * sigma_max
    return m + s * (x_T - m) / math.sqrt(s**2 + sigma_max**2)


def test_heun_nfe_and_second_order_convergence() -> None:
    m, s = 1.0, 0.5
    lat = torch.randn(2000, 2, generator=gen(4), dtype=torch.float64)
    errs = {}
    for N in (18, 36, 72):
        x, nfe = edm_heun_sample(gaussian_denoiser(m, s), lat, edm_sigma_steps(N), None)
        assert nfe == 2 * N - 1
        errs[N] = (x - exact_flow(lat, m, s, 80.0)).abs().max().item()
    # measured: 0.108, 0.024, 0.0057: doubling the steps divides the error by ~4 (order 2)
    assert errs[18] < 0.15
    for a, b in ((18, 36), (36, 72)):
        assert 3.0 < errs[a] / errs[b] < 6.0
    # Euler (1 step) is exact at sigma -> 0 only through D: one step gives D(x; 80)
    x1, nfe1 = edm_heun_sample(gaussian_denoiser(m, s), lat, edm_sigma_steps(1), None)
    assert nfe1 == 1
    torch.testing.assert_close(x1, gaussian_denoiser(m, s)(lat * 80.0, torch.full((2000,), 80.0, dtype=torch.float64)))


def test_heun_recovers_gaussian_and_is_deterministic() -> None:
    m, s = torch.tensor([1.0, -0.5, 0.0]), 0.5
    D = gaussian_denoiser(m, s)
    lat = torch.randn(4000, 3, generator=gen(5), dtype=torch.float64)
    x1, _ = edm_heun_sample(D, lat, edm_sigma_steps(40), gen(6))
    x2, _ = edm_heun_sample(D, lat, edm_sigma_steps(40), gen(7))
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)  # no churn: the generator is unused
    # 40 steps: the discretisation error on the std is ~1.3%; sampling error 1.1% per dim
    torch.testing.assert_close(x1.mean(0), m.double(), atol=5 * s / math.sqrt(4000) + 0.01, rtol=0)
    assert np.allclose(x1.std(0).numpy(), s, rtol=0.05)


def test_heun_with_churn_recovers_gaussian() -> None:
    m, s = 0.5, 0.5
    D = gaussian_denoiser(m, s)
    lat = torch.randn(4000, 2, generator=gen(8), dtype=torch.float64)
    kw = dict(S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003)
    x, nfe = edm_heun_sample(D, lat, edm_sigma_steps(40), gen(9), **kw)
    assert nfe == 79
    assert abs(x.mean().item() - m) < 0.02
    assert x.std().item() == pytest.approx(s, rel=0.05)
    # churn consumes fresh noise: a different generator gives different samples
    y, _ = edm_heun_sample(D, lat, edm_sigma_steps(40), gen(10), **kw)
    assert (x - y).abs().max().item() > 1e-3
    # and the same generator reproduces them exactly
    z, _ = edm_heun_sample(D, lat, edm_sigma_steps(40), gen(9), **kw)
    torch.testing.assert_close(x, z, rtol=0, atol=0)


# ---- the registered family ------------------------------------------------------------------------
from genloop.models import make_model  # noqa: E402
from genloop.models.io import load_model, save_model  # noqa: E402

TINY = dict(network={"hidden": 16, "depth": 1, "embed_dim": 8}, train={"samples": 256, "batch_size": 64})


def test_edm_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="sigma_min"):
        make_model("edm", sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ConfigError, match="num_steps"):
        make_model("edm", num_steps=0)
    with pytest.raises(ConfigError, match="sigma_data"):
        make_model("edm", sigma_data=0.0)
    with pytest.raises(ConfigError, match="unknown option 'sigma'"):
        make_model("edm", sigma=1.0)


def test_edm_fit_sample_nfe_reproducible_and_saved(tmp_path) -> None:
    X = np.random.default_rng(0).normal(size=(128, 2)) * [1.0, 3.0] - 1.0
    m = make_model("edm", **TINY, num_steps=7).fit(X, rng=np.random.default_rng(1))
    a = m.sample(30, rng=np.random.default_rng(2))
    assert a.shape == (30, 2) and np.all(np.isfinite(a))
    assert m.last_nfe_ == 2 * 7 - 1
    np.testing.assert_array_equal(a, m.sample(30, rng=np.random.default_rng(2)))
    back = load_model(save_model(m, tmp_path / "m"))
    np.testing.assert_allclose(back.sample(30, rng=np.random.default_rng(2)), a, rtol=1e-6, atol=1e-6)
    # churn draws extra noise: with the same rng the samples change, the NFE does not
    churn = make_model("edm", **TINY, num_steps=7, S_churn=5.0).fit(X, rng=np.random.default_rng(1))
    b = churn.sample(30, rng=np.random.default_rng(2))
    assert churn.last_nfe_ == 13 and not np.allclose(a, b)


def test_edm_images_shape() -> None:
    X = np.random.default_rng(0).uniform(-1, 1, size=(32, 3, 8, 8))
    net = {"channels": 8, "channel_mult": [1, 2], "attn_resolutions": [], "embed_dim": 8, "norm_groups": 4}
    m = make_model("edm", network=net, train={"samples": 64, "batch_size": 32}, num_steps=4)
    S = m.fit(X, rng=np.random.default_rng(0)).sample(3, rng=np.random.default_rng(1))
    assert S.shape == (3, 3, 8, 8) and np.all(np.isfinite(S))




@pytest.mark.slow
def test_edm_learns_two_moons() -> None:
    """Generation 0 on two moons (2,000 points, noise 0.05): W2 of 1,000 samples to 1,000
    held-out points is at the level of two real samples (measured 0.10 vs 0.155; a Gaussian
    fit scores 0.33). About 12 s on one CPU thread."""
    from sklearn.datasets import make_moons

    X, _ = make_moons(3000, noise=0.05, random_state=0)
    train, heldout = X[:2000], X[2000:]
    m = make_model(
        "edm",
        network={"hidden": 128, "depth": 3},
        train={"samples": 1_000_000, "batch_size": 256, "lr": 2e-3, "warmup_samples": 2000, "ema_halflife_samples": 50_000},
        # sigma_data "auto" (the default): 1.0 for the standardised vectors
    )
    m.fit(train, rng=np.random.default_rng(1))
    S = m.sample(1000, rng=np.random.default_rng(2))
    assert m.last_nfe_ == 35
    real = _w2(train[:1000], heldout)
    assert _w2(S, heldout) < 1.3 * real


def _digit_scores(pixels: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(kNN label agreement, precision, class histogram) of images (n, 64) in [0, 1] against
    1,597 real digits: agreement = mean share of the majority label among the 10 nearest real
    digits; precision = share of samples inside the 3-NN ball of one of their 10 nearest reals."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import NearestNeighbors

    d = load_digits()
    real, labels = d.data[200:] / 16.0, d.target[200:]
    radius = NearestNeighbors(n_neighbors=4).fit(real).kneighbors(real)[0][:, 3]
    dist, idx = NearestNeighbors(n_neighbors=10).fit(real).kneighbors(np.clip(pixels, 0, 1))
    counts = np.stack([np.bincount(row, minlength=10) for row in labels[idx]])
    agreement = float((counts.max(axis=1) / 10).mean())
    precision = float((dist <= radius[idx]).any(axis=1).mean())
    return agreement, precision, np.bincount(counts.argmax(axis=1), minlength=10)


def test_digit_scores_separate_real_from_gaussian() -> None:
    """The scores used below: 200 held-out real digits 0.94 / 0.82, a full-covariance Gaussian
    fit 0.77 / 0.13 (measured), uniform noise 0.62 / 0."""
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    a_real, p_real, c_real = _digit_scores(X[:200])
    assert a_real > 0.9 and p_real > 0.7 and (c_real >= 10).all()
    G = np.random.default_rng(0).multivariate_normal(X[200:].mean(0), np.cov(X[200:].T), 200)
    a_g, p_g, _ = _digit_scores(G)
    assert a_g < 0.82 and p_g < 0.2
    assert _digit_scores(np.random.default_rng(1).uniform(0, 1, (200, 64)))[1] == 0.0


@pytest.mark.slow
def test_edm_learns_recognisable_digits(tmp_path) -> None:
    """Generation 0 on the 8×8 digits, 100k images seen (~70 s on one CPU thread): the samples
    sit among real digits of one class and inside real digits' 3-NN balls far more than a
    Gaussian fit's do (see test_digit_scores_separate_real_from_gaussian), covering the ten
    classes. Measured budget curve (kNN agreement / precision): 40k 0.78 / 0.18, 80k
    0.84 / 0.26, 100k 0.88 / 0.40, 150k 0.91 / 0.52, 400k 0.95 / 0.77. The grid PNG is
    written for a look."""
    from genloop.data import make_data
    from genloop.report.grids import save_sample_grid

    X = make_data("digits_images").load()
    m = make_model(
        "edm",
        network={"channels": 32, "channel_mult": [1, 2], "attn_resolutions": []},
        train={"samples": 100_000, "batch_size": 128, "lr": 2e-3, "warmup_samples": 5000, "ema_halflife_samples": 20_000},
    )
    m.fit(X, rng=np.random.default_rng(0))
    S = m.sample(200, rng=np.random.default_rng(1))
    assert S.shape == (200, 1, 8, 8)
    assert save_sample_grid(S[:100], tmp_path / "edm_digits.png", nrow=10, scale=4).exists()
    agreement, precision, counts = _digit_scores((np.clip(S, -1, 1).reshape(200, 64) + 1) / 2)
    # measured 0.88 / 0.40; the Gaussian fit 0.77 / 0.13
    assert agreement > 0.85 and precision > 0.3, (agreement, precision)
    assert (counts >= 5).sum() >= 9, counts


def test_sigma_data_auto_is_half_for_images_one_for_standardised_vectors() -> None:
    from genloop.models import make_model

    auto = make_model("edm")
    assert auto.sigma_data_for(torch.zeros(2, 1, 8, 8)) == 0.5
    assert auto.sigma_data_for(torch.zeros(2, 3)) == 1.0
    assert make_model("edm", sigma_data=0.7).sigma_data_for(torch.zeros(2, 3)) == 0.7


# ---- VP preconditioning (Karras et al. Table 1, VP column) -------------------------------------
def test_vp_denoise_matches_the_vp_precond_module_and_sigma_inverse() -> None:
    from genloop.models.diffusion.objectives import vp_denoise, vp_sigma, vp_sigma_inv
    from genloop.models.neural.edm_unet import VPPrecond
    from genloop.models.neural.networks import NetworkConfig, build_network

    t = torch.linspace(1e-5, 1, 50, dtype=torch.float64)
    torch.testing.assert_close(vp_sigma_inv(vp_sigma(t)), t)
    raw = build_network(NetworkConfig(kind="songunet", preset="baseline-cifar10-uncond-vp", channels=16,
                                      channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)), (3, 8, 8)).eval()
    x, sigma = torch.randn(3, 3, 8, 8, generator=gen(0)), torch.tensor([0.01, 1.0, 50.0])
    with torch.no_grad():
        torch.testing.assert_close(vp_denoise(raw, x, sigma), VPPrecond(raw.model)(x, sigma), rtol=1e-5, atol=1e-5)


def test_vp_loss_of_ideal_denoiser_has_the_closed_form_mean() -> None:
    # y ~ N(0, I): D*(x; sigma) = x / (1 + sigma^2), so E[loss | sigma] = 1 / (1 + sigma^2)
    # = exp(-(beta_d t^2 / 2 + beta_min t)); averaged over t ~ U(eps, 1)
    from scipy.integrate import quad

    from genloop.models.diffusion.objectives import vp_loss

    eps = 1e-5
    expected = quad(lambda t: math.exp(-(0.5 * 19.9 * t**2 + 0.1 * t)), eps, 1)[0] / (1 - eps)
    y = torch.randn(40_000, 4, generator=gen(1), dtype=torch.float64)
    losses = vp_loss(gaussian_denoiser(0.0, 1.0), y, gen(2), epsilon_t=eps)
    se = losses.std().item() / math.sqrt(len(losses))
    assert abs(losses.mean().item() - expected) < 4 * se


def test_vp_precond_family_option() -> None:
    from genloop.models import make_model

    net = {"kind": "songunet", "preset": "baseline-cifar10-uncond-vp", "channels": 16, "channel_mult": [1, 2],
           "num_res_blocks": 1, "attn_resolutions": [4]}
    with pytest.raises(ConfigError, match="set precond: vp"):
        make_model("edm", network=net)
    with pytest.raises(ConfigError, match="set precond: edm"):
        make_model("edm", network={**net, "preset": "edm-cifar10-uncond-vp"}, precond="vp")
    model = make_model("edm", network=net, precond="vp", num_steps=3, train={"samples": 16, "batch_size": 8, "device": "cpu"})
    model.fit(np.tanh(np.random.default_rng(0).normal(size=(16, 3, 8, 8))), rng=np.random.default_rng(1))
    assert model.sample(2, rng=np.random.default_rng(2)).shape == (2, 3, 8, 8)
    # the sampler stays inside the VP network's range, sigma >= sigma(1e-5) ~ 0.001 (EDM's generate.py)
    low = make_model("edm", network=net, precond="vp", sigma_min=1e-4)
    assert low.sigma_steps()[-2].item() == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 * 1e-10 + 0.1 * 1e-5) - 1))
    assert model.sigma_steps()[-2].item() == pytest.approx(0.002)
