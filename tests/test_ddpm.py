"""DDPM (Ho et al. 2020): schedules, forward marginals, posterior, loss and samplers.

The closed-form oracle is Gaussian data N(m, s^2 I): x_t ~ N(sqrt(ab) m, ab s^2 + 1 - ab) and
the ideal noise predictor is eps*(x_t, t) = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genloop.metrics.vector import wasserstein2 as _w2  # exact W2 (POT), tested in test_metrics_vector
from genloop.errors import ConfigError
from genloop.models.diffusion.objectives import ddpm_loss
from genloop.models.diffusion.samplers import ddim_sample, ddpm_ancestral_sample
from genloop.models.diffusion.schedules import (
    DDPMSchedule,
    cosine_betas,
    ddim_timesteps,
    ddpm_time_input,
    linear_betas,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_eps(schedule: DDPMSchedule, m, s: float):
    ab_all = schedule.alpha_bar

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = ab_all[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)

    return eps


# ---- schedules ------------------------------------------------------------------------------------
def test_linear_and_cosine_schedules() -> None:
    b = linear_betas(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    torch.testing.assert_close(b[1:] - b[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    sch = DDPMSchedule.make("linear", 1000)
    # Ho et al.: alpha_bar_T is about 4e-5 (x_T is nearly pure noise)
    assert sch.alpha_bar[-1].item() == pytest.approx(math.exp(np.log1p(-b.numpy()).sum()), rel=1e-12)
    assert 3e-5 < sch.alpha_bar[-1].item() < 5e-5
    # cosine: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), while unclipped
    T, s = 1000, 0.008
    ab = torch.cumprod(1 - cosine_betas(T), 0)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 250, 500, 900):
        assert ab[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-10)
    assert cosine_betas(T).max().item() == pytest.approx(0.999)
    with pytest.raises(ConfigError):
        DDPMSchedule.make("sigmoid", 10)  # type: ignore[arg-type]


def test_time_input_is_step_over_T() -> None:
    t = torch.tensor([0, 499, 999])
    torch.testing.assert_close(ddpm_time_input(t, 1000), torch.tensor([0.0, 0.499, 0.999], dtype=torch.float64))


# ---- forward process and posterior ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_forward_marginal_moments(kind: str) -> None:
    sch = DDPMSchedule.make(kind, 1000)
    n = 50_000
    g = gen(0)
    x0 = torch.full((n, 1), 1.5, dtype=torch.float64)
    for t in (0, 100, 500, 999):
        tt = torch.full((n,), t)
        x_t = sch.q_sample(x0, tt, torch.randn(n, 1, generator=g, dtype=torch.float64))
        ab = sch.alpha_bar[t].item()
        mean, var = math.sqrt(ab) * 1.5, 1 - ab
        mu, v = sch.q_mean_var(x0[:1], tt[:1])
        assert mu.item() == pytest.approx(mean) and v.item() == pytest.approx(var)
        # 5 standard errors: of the mean sqrt(var/n), of the variance var sqrt(2/n)
        assert abs(x_t.mean().item() - mean) < 5 * math.sqrt(var / n)
        assert abs(x_t.var().item() - var) < 5 * var * math.sqrt(2 / n)


def test_posterior_is_bayes_rule_1d() -> None:
    """q(x_{t-1} | x_t, x_0) ∝ N(x_t; sqrt(alpha_t) x_{t-1}, beta_t) N(x_{t-1}; sqrt(ab_{t-1}) x_0, 1 - ab_{t-1})."""
    sch = DDPMSchedule.make("linear", 1000)
    x0 = torch.tensor([[0.3], [-1.0], [2.0], [0.0]], dtype=torch.float64)
    x_t = torch.tensor([[1.1], [0.2], [-0.4], [3.0]], dtype=torch.float64)
    for t in (1, 5, 300, 999):
        a, ab_prev, beta = sch.alphas[t].item(), sch.alpha_bar[t - 1].item(), sch.betas[t].item()
        prec = a / beta + 1 / (1 - ab_prev)
        var = 1 / prec
        mean = var * (math.sqrt(a) * x_t / beta + math.sqrt(ab_prev) * x0 / (1 - ab_prev))
        mu, v = sch.posterior_mean_variance(x0, x_t, torch.full((4,), t))
        torch.testing.assert_close(mu, mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(v, torch.full_like(x_t, var), rtol=1e-10, atol=0)
    # at the first step (t index 0) the posterior is the point mass at x_0
    mu, v = sch.posterior_mean_variance(x0, x_t, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mu, x0)
    assert float(v.abs().max()) == 0.0


def test_posterior_matches_simulated_chain() -> None:
    """Simulate x_{t-1} ~ q(.|x_0), x_t ~ q(.|x_{t-1}); regress x_{t-1} on x_t: slope, intercept
    and residual variance equal the closed-form posterior (x_0 fixed)."""
    sch = DDPMSchedule.make("cosine", 200)
    t, n, x0v = 120, 200_000, 0.8
    g = gen(1)
    x0 = torch.full((n, 1), x0v, dtype=torch.float64)
    x_prev = sch.q_sample(x0, torch.full((n,), t - 1), torch.randn(n, 1, generator=g, dtype=torch.float64))
    x_t = sch.alphas[t].sqrt() * x_prev + sch.betas[t].sqrt() * torch.randn(n, 1, generator=g, dtype=torch.float64)
    X = np.c_[np.ones(n), x_t.numpy()[:, 0]]
    coef, *_ = np.linalg.lstsq(X, x_prev.numpy()[:, 0], rcond=None)
    resid = x_prev.numpy()[:, 0] - X @ coef
    mu0, var = sch.posterior_mean_variance(x0[:2], torch.tensor([[0.0], [1.0]], dtype=torch.float64), torch.full((2,), t))
    assert coef[0] == pytest.approx(mu0[0].item(), abs=0.01)
    assert coef[1] == pytest.approx((mu0[1] - mu0[0]).item(), abs=0.01)
    assert resid.var() == pytest.approx(var[0].item(), rel=0.02)


def test_predict_x0_inverts_q_sample() -> None:
    sch = DDPMSchedule.make("linear", 1000)
    g = gen(2)
    x0 = torch.randn(16, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (16,), generator=g)
    torch.testing.assert_close(sch.predict_x0(sch.q_sample(x0, t, eps), t, eps), x0)


# ---- loss -------------------------------------------------------------------------------------------
def test_loss_of_ideal_eps_predictor() -> None:
    """For x_0 ~ N(m, s^2) the ideal predictor's error per dimension at step t is
    Var(eps | x_t) = ab s^2 / (ab s^2 + 1 - ab); L_simple averages it over uniform t."""
    sch = DDPMSchedule.make("linear", 1000)
    m, s = 0.5, 0.3
    g = gen(3)
    x0 = m + s * torch.randn(100_000, 2, generator=g, dtype=torch.float64)
    loss = ddpm_loss(gaussian_eps(sch, m, s), x0, sch, g)
    assert loss.shape == (100_000,)
    ab = sch.alpha_bar
    expected = (ab * s**2 / (ab * s**2 + 1 - ab)).mean().item()
    # per-example std <= 1 (chi^2_2/2 scaled): 5 standard errors < 0.016
    assert abs(loss.mean().item() - expected) < 0.016
    zero = ddpm_loss(lambda x, t: torch.zeros_like(x), x0, sch, g)
    assert zero.mean().item() == pytest.approx(1.0, abs=0.02)  # E||eps||^2 / dim


# ---- samplers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ancestral_recovers_gaussian(kind: str) -> None:
    sch = DDPMSchedule.make(kind, 1000)
    m, s = torch.tensor([1.0, -0.5]), 0.4
    x_T = torch.randn(4000, 2, generator=gen(4), dtype=torch.float64)
    x = ddpm_ancestral_sample(gaussian_eps(sch, m, s), sch, x_T, gen(5))
    # mean: 5 standard errors (0.032) ; std: 5% (sampling error 1.1%)
    torch.testing.assert_close(x.mean(0), m.double(), atol=0.035, rtol=0)
    assert np.allclose(x.std(0).numpy(), s, rtol=0.05)


def test_ddim_timesteps() -> None:
    np.testing.assert_array_equal(ddim_timesteps(1000, 100, "uniform"), np.arange(0, 1000, 10))
    q = ddim_timesteps(1000, 100, "quadratic")
    ref = np.unique((np.linspace(0, np.sqrt(800), 100) ** 2).astype(int))
    np.testing.assert_array_equal(q, ref)
    assert q[0] == 0 and q[-1] == 800
    assert bool(np.all(np.diff(q) > 0)) and 90 <= len(q) <= 100
    # quadratic spacing: denser near the data
    assert np.diff(q)[:10].max() < np.diff(q)[-10:].min()
    with pytest.raises(ConfigError):
        ddim_timesteps(1000, 0)
    with pytest.raises(ConfigError):
        ddim_timesteps(1000, 10, "cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("skip", ["uniform", "quadratic"])
def test_ddim_eta0_is_deterministic_and_recovers_gaussian(skip: str) -> None:
    sch = DDPMSchedule.make("linear", 1000)
    m, s = torch.tensor([1.0, -0.5]), 0.4
    eps = gaussian_eps(sch, m, s)
    seq = ddim_timesteps(1000, 100, skip)
    t_top = int(seq[-1])
    x_T = torch.randn(4000, 2, generator=gen(6), dtype=torch.float64)
    x1 = ddim_sample(eps, sch, x_T, seq, gen(7), eta=0.0)
    x2 = ddim_sample(eps, sch, x_T, seq, gen(8), eta=0.0)
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    # the exact ODE map of a Gaussian is affine: x_0 = m + s (x_t - sqrt(ab) m) / sqrt(ab s^2 + 1 - ab)
    ab = sch.alpha_bar[t_top].item()
    exact = m + s * (x_T - math.sqrt(ab) * m) / math.sqrt(ab * s**2 + 1 - ab)
    # DDIM is a first-order solver; measured max errors at 100 steps: uniform 0.053,
    # quadratic 0.025 (quadratic spends its steps near the data, where the ODE bends)
    err = (x1 - exact).abs().max().item()
    assert err < {"uniform": 0.065, "quadratic": 0.032}[skip]
    x_coarse = ddim_sample(eps, sch, x_T, ddim_timesteps(1000, 50, skip), None)
    err_coarse = (x_coarse - exact).abs().max().item()
    assert 1.6 < err_coarse / err < 2.5  # halving the steps doubles the error (order 1)
    torch.testing.assert_close(x1.mean(0), m.double(), atol=0.04, rtol=0)
    assert np.allclose(x1.std(0).numpy(), s, rtol=0.05)


def test_ddim_eta1_on_all_steps_is_ancestral_sampling() -> None:
    """Song et al. §4.1: with eta = 1 and every step, DDIM is DDPM's ancestral sampler with
    sigma_t^2 = beta_tilde_t: same noise stream, same samples (to float64 round-off)."""
    sch = DDPMSchedule.make("cosine", 300)
    m, s = 0.3, 0.6
    eps = gaussian_eps(sch, m, s)
    x_T = torch.randn(1000, 1, generator=gen(9), dtype=torch.float64)
    x_ddim = ddim_sample(eps, sch, x_T, np.arange(300), gen(10), eta=1.0)
    x_anc = ddpm_ancestral_sample(eps, sch, x_T, gen(10))
    torch.testing.assert_close(x_ddim, x_anc, rtol=1e-9, atol=1e-9)
    x_other = ddim_sample(eps, sch, x_T, np.arange(300), gen(11), eta=1.0)
    assert (x_ddim - x_other).abs().max().item() > 0.1  # fresh noise at every step
    assert abs(x_ddim.mean().item() - m) < 5 * s / math.sqrt(1000)
    assert x_ddim.std().item() == pytest.approx(s, rel=0.08)
    with pytest.raises(ConfigError):
        ddim_sample(eps, sch, x_T, np.array([5, 3]), None)


# ---- the registered family ------------------------------------------------------------------------
from genloop.models import make_model  # noqa: E402
from genloop.models.io import load_model, save_model  # noqa: E402

TINY = dict(network={"hidden": 16, "depth": 1, "embed_dim": 8}, train={"samples": 256, "batch_size": 64})


def test_ddpm_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="sampler"):
        make_model("ddpm", sampler="euler")
    with pytest.raises(ConfigError, match="sample_steps"):
        make_model("ddpm", T=50, sample_steps=100)
    with pytest.raises(ConfigError, match="unknown option 'steps'"):
        make_model("ddpm", steps=10)
    with pytest.raises(ConfigError, match="eta"):
        make_model("ddpm", eta=-0.5)
    m = make_model("ddpm", **TINY, clip_denoised=True)
    with pytest.raises(ConfigError, match="images"):
        m.fit(np.zeros((10, 2)), rng=np.random.default_rng(0))


@pytest.mark.parametrize("sampler,nfe", [("ddim", 10), ("ancestral", 50)])
def test_ddpm_fit_sample_reproducible_and_saved(tmp_path, sampler: str, nfe: int) -> None:
    X = np.random.default_rng(0).normal(size=(128, 3)) * [1.0, 2.0, 0.5] + 3.0
    m = make_model("ddpm", **TINY, T=50, sampler=sampler, sample_steps=10, skip="uniform")
    m.fit(X, rng=np.random.default_rng(1))
    a = m.sample(20, rng=np.random.default_rng(2))
    assert a.shape == (20, 3) and np.all(np.isfinite(a))
    assert m.last_nfe_ == nfe
    np.testing.assert_array_equal(a, m.sample(20, rng=np.random.default_rng(2)))
    assert not np.allclose(a, m.sample(20, rng=np.random.default_rng(3)))
    # refitting with the same rng reproduces the network exactly (CPU)
    m2 = make_model("ddpm", **TINY, T=50, sampler=sampler, sample_steps=10, skip="uniform").fit(X, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, m2.sample(20, rng=np.random.default_rng(2)))
    back = load_model(save_model(m, tmp_path / "m"))
    np.testing.assert_allclose(back.sample(20, rng=np.random.default_rng(2)), a, rtol=1e-6, atol=1e-6)


def test_ddpm_images_shape_and_clipping() -> None:
    X = np.random.default_rng(0).uniform(-1, 1, size=(32, 1, 8, 8))
    net = {"channels": 8, "channel_mult": [1, 2], "attn_resolutions": [], "embed_dim": 8, "norm_groups": 4}
    m = make_model("ddpm", network=net, train={"samples": 64, "batch_size": 32}, T=20, sample_steps=5, clip_denoised=True)
    m.fit(X, rng=np.random.default_rng(0))
    S = m.sample(4, rng=np.random.default_rng(1))
    assert S.shape == (4, 1, 8, 8)
    # with clipping and eta = 0 the last DDIM step returns the clipped x0_hat
    assert np.abs(S).max() <= 1.0 + 1e-6




@pytest.mark.slow
def test_ddpm_learns_two_moons() -> None:
    """Generation 0 on two moons (2,000 points, noise 0.05): W2 of 1,000 samples to 1,000
    held-out points is at the level of two real samples (measured 0.10 vs 0.155; a Gaussian
    fit scores 0.33). About 25 s on one CPU thread."""
    from sklearn.datasets import make_moons

    X, _ = make_moons(3000, noise=0.05, random_state=0)
    train, heldout = X[:2000], X[2000:]
    m = make_model(
        "ddpm",
        network={"hidden": 128, "depth": 3},
        train={"samples": 1_500_000, "batch_size": 256, "lr": 2e-3, "warmup_samples": 2000, "ema_halflife_samples": 50_000},
        beta_schedule="cosine",
    )
    m.fit(train, rng=np.random.default_rng(1))
    S = m.sample(1000, rng=np.random.default_rng(2))
    real = _w2(train[:1000], heldout)
    assert _w2(S, heldout) < 1.3 * real
